"""`csvae train` / `csvae evaluate`: run directories, resuming, bad input."""

import json
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from helpers import csvae_cli

from keras_csvae.data import registry
from keras_csvae.evaluation.evaluate import evaluate_run
from keras_csvae.models import InputError
from keras_csvae.training import RunDirError, TrainConfig, TrainingDivergedError, train
from keras_csvae.training.runs import RunError
from keras_csvae.training.train import dataset_for

SMALL = {"num_examples": 512}


def small_config(**kwargs):
    values = dict(
        dataset="swiss_roll",
        epochs=2,
        batch_size=64,
        precision="float32",
        strategy="default",
        dataset_options=dict(SMALL),
    )
    values.update(kwargs)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "swiss"
    train(small_config(), run_dir, verbose=0)
    return run_dir


def test_run_directory_layout_and_history(finished_run):
    for name in ("config.json", "model.keras", "history.json", "checkpoint/state.json"):
        assert (finished_run / name).exists(), name
    assert any((finished_run / "logs").rglob("*tfevents*")), "TensorBoard logs"
    history = json.loads((finished_run / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2]
    for term in ("loss", "kl_w", "kl_z", "reconstruction_log_likelihood", "adversary_loss", "val_loss"):
        assert all(np.isfinite(e[term]) for e in history), term


def test_evaluate_writes_metrics_and_figure(finished_run):
    metrics = evaluate_run(finished_run)
    stored = json.loads((finished_run / "metrics.json").read_text())
    assert stored["w_label_accuracy"] == metrics["w_label_accuracy"]
    for key in ("reconstruction_mse", "w_label_accuracy", "z_label_accuracy", "z_majority_rate"):
        assert 0.0 <= stored[key] < 10.0, key
    # Labels are balanced: the majority rate is near one half.
    assert 0.4 < stored["z_majority_rate"] < 0.6
    assert (finished_run / "w_subspace.png").stat().st_size > 1000


def test_rerunning_a_finished_run_changes_nothing(finished_run):
    before = (finished_run / "history.json").read_text()
    train(small_config(), finished_run, verbose=0)
    assert (finished_run / "history.json").read_text() == before


def test_resume_after_sigkill_keeps_one_entry_per_epoch(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "swiss_roll",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--num-examples",
        "2048",
        "--precision",
        "float32",
        "--strategy",
        "default",
        "--out",
        run_dir,
        "--verbose",
        "0",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_csvae.cli", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = run_dir / "checkpoint" / "state.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("training never reached epoch 2")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = json.loads(state.read_text())["epoch"]
    assert killed_at < 6, "the run finished before it was killed; make epochs longer"
    assert not (run_dir / "model.keras").exists()

    result = csvae_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Resuming {run_dir} after epoch {killed_at}" in result.stdout
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["epoch"] for e in history] == list(range(1, 7))
    # Only the newest checkpoint is kept.
    assert len(list((run_dir / "checkpoint").glob("*.keras"))) == 1


def test_one_seed_trains_the_same_weights_and_another_seed_others(tmp_path):
    first, again = (train(small_config(epochs=1), tmp_path / name, verbose=0) for name in ("a", "b"))
    other = train(small_config(epochs=1, seed=1), tmp_path / "c", verbose=0)
    for w1, w2 in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    assert any(not np.array_equal(w1, w3) for w1, w3 in zip(first.get_weights(), other.get_weights()))


@pytest.mark.parametrize("steps_per_execution", [1, 4, 3, 32])
def test_every_epoch_runs_one_pass_of_the_training_split(tmp_path, steps_per_execution):
    # 500 examples in batches of 64: 8 steps per epoch, whether the data are
    # repeated (steps_per_execution divides 8) or not (3, 32).
    config = small_config(steps_per_execution=steps_per_execution, dataset_options={"num_examples": 500})
    model = train(config, tmp_path / "run", verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2 * 8


def test_every_epoch_validates_on_the_first_validation_examples(tmp_path):
    config = small_config(epochs=3, steps_per_execution=1, validation_examples=100)
    model = train(config, tmp_path / "run", verbose=0)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    first = dataset_for(config.resolved(), model, "validation", shuffle=False, limit=100)
    expected = model.evaluate(first, return_dict=True, verbose=0)
    np.testing.assert_allclose(history[-1]["val_loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(history[-1]["val_reconstruction_mse"], expected["reconstruction_mse"], rtol=1e-5)


def test_unknown_dataset_lists_known_ones_and_writes_nothing(tmp_path):
    result = csvae_cli("train", "--dataset", "nope", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert "Unknown dataset 'nope'" in result.stderr and "swiss_roll" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_validation_examples_flag_takes_a_count_or_all(tmp_path):
    result = csvae_cli("train", "--validation-examples", "0", "--out", tmp_path / "run")
    assert result.returncode == 2 and "expected a positive integer or 'all', got '0'" in result.stderr
    assert not (tmp_path / "run").exists()
    result = csvae_cli(
        "train", "--epochs", "1", "--num-examples", "64", "--validation-examples", "all", "--out", tmp_path / "run"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["validation_examples"] is None


@pytest.fixture
def broken_dataset():
    """Registers a dataset whose arrays come from a callable the test sets."""
    holder = {}

    def arrays(split, num_examples=None):
        return holder["arrays"]()

    registry.register_dataset(
        "broken_for_test",
        registry.Dataset(
            info_fn=lambda **_: registry.DatasetInfo("broken_for_test", (3,), ("a",)),
            arrays_fn=arrays,
            options=("num_examples",),
        ),
    )
    yield holder
    registry._REGISTRY.pop("broken_for_test")


@pytest.mark.parametrize(
    "arrays, message",
    [
        (lambda: (np.full((8, 3), np.nan, np.float32), np.zeros((8, 1), np.float32)), "NaN"),
        (lambda: (np.zeros((8, 3), np.float32), np.full((8, 1), 2.0, np.float32)), "0 or 1"),
        (lambda: (np.zeros((8, 3), np.float32), np.zeros((8, 2), np.float32)), "2 label"),
        (lambda: (np.zeros((8, 4), np.float32), np.zeros((8, 1), np.float32)), "expects \\[batch, 3\\]"),
    ],
)
def test_bad_training_data_fails_before_writing(tmp_path, broken_dataset, arrays, message):
    broken_dataset["arrays"] = arrays
    with pytest.raises(InputError, match=message):
        train(small_config(dataset="broken_for_test", dataset_options={}), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_diverging_training_stops_with_a_message(tmp_path, broken_dataset):
    rng = np.random.default_rng(0)
    broken_dataset["arrays"] = lambda: (
        (rng.standard_normal((64, 3)) * 1e19).astype(np.float32),
        (rng.random((64, 1)) < 0.5).astype(np.float32),
    )
    with pytest.raises(TrainingDivergedError, match="became"):
        train(small_config(dataset="broken_for_test", dataset_options={}), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()
    assert not (tmp_path / "run" / "checkpoint" / "state.json").exists()


def test_existing_run_with_other_config_is_refused(finished_run):
    with pytest.raises(RunDirError, match="different configuration"):
        train(small_config(seed=1), finished_run, verbose=0)


def test_corrupt_and_mismatched_model_files_give_clear_errors(finished_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((finished_run / "config.json").read_text())
    (broken / "model.keras").write_bytes((finished_run / "model.keras").read_bytes()[:200])
    result = csvae_cli("evaluate", "--run", broken)
    assert result.returncode == 2 and "corrupt" in result.stderr and "Traceback" not in result.stderr

    # A model of another dataset (digits: 16x16x1, 10 labels) in a swiss-roll run.
    from helpers import tiny_csvae

    tiny_csvae(data_shape=(16, 16, 1), num_labels=10).save(broken / "model.keras")
    with pytest.raises(RunError, match="do not belong together"):
        evaluate_run(broken)
    assert zipfile.is_zipfile(broken / "model.keras")
    assert not (broken / "metrics.json").exists()


def test_the_json_writer_is_atomic(tmp_path):
    """A failed write leaves the old file whole and no temporary file behind."""
    from keras_csvae.io import write_json

    path = tmp_path / "sub" / "metrics.json"
    write_json(path, {"b": 1, "a": [1.5, None]})
    assert path.read_text() == '{\n  "b": 1,\n  "a": [\n    1.5,\n    null\n  ]\n}\n'
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"b": 1, "a": [1.5, None]}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_cosine_schedule_decays_both_step_sizes_to_zero_over_the_run(tmp_path):
    config = small_config(learning_rate_schedule="cosine")
    assert config.resolved().digest() != small_config().resolved().digest()
    run_dir = tmp_path / "run"
    model = train(config, run_dir, verbose=0)
    steps = 2 * (512 // 64)  # epochs × batches of the training split
    for optimizer in (model.optimizer, model.adversary_optimizer):
        assert int(optimizer.iterations) == steps
        assert float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
        schedule = optimizer.get_config()["learning_rate"]["config"]
        assert schedule["decay_steps"] == steps and schedule["initial_learning_rate"] == pytest.approx(1e-3)
    # Its step size is 0 now: extending it would train nothing, so it is refused, and nothing is lost.
    history = (run_dir / "history.json").read_text()
    with pytest.raises(ValueError, match="decays to 0 over 2 epochs .* cannot be resumed for 3 epochs"):
        train(small_config(learning_rate_schedule="cosine", epochs=3), run_dir, verbose=0)
    assert (run_dir / "history.json").read_text() == history
    with pytest.raises(ValueError, match="Unknown learning_rate_schedule 'linear'"):
        small_config(learning_rate_schedule="linear").resolved()
