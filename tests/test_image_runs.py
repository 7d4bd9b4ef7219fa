"""End to end on images: `csvae train --dataset synthetic_faces --image-size 32`,
`csvae evaluate` with edit metrics and figures, and the benchmark table."""

import json
import os
from pathlib import Path

import pytest
from helpers import csvae_cli

from keras_csvae.evaluation import benchmark, report
from keras_csvae.evaluation.evaluate import evaluate_run
from keras_csvae.training.runs import load_run

REPO = Path(__file__).resolve().parents[1]
TINY = '{"conv_filters": [4, 8, 8], "dense_units": 16, "decoder_filters": [8, 8, 4], "z_dim": 4}'


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("faces") / "run"
    result = csvae_cli(
        "train",
        "--dataset",
        "synthetic_faces",
        "--image-size",
        "32",
        "--num-examples",
        "256",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--model-config",
        TINY,
        "--validation-examples",
        "40",
        "--out",
        run,
        "--verbose",
        "0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "validating on 2 batch(es) per epoch" in result.stdout  # 40 of the 256 validation faces
    return run


def test_synthetic_faces_trains_end_to_end_from_the_cli(faces_run):
    history = json.loads((faces_run / "history.json").read_text())
    assert len(history) == 1 and history[0]["reconstruction_mse"] < 1.0
    config = json.loads((faces_run / "config.json").read_text())
    assert config["dataset_options"] == {"image_size": 32, "num_examples": 256}
    assert config["validation_examples"] == 40


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """One cache for the module's small judge: trained by the first test that needs it."""
    return tmp_path_factory.mktemp("judges")


@pytest.fixture
def small_judge(judge_dir, monkeypatch):
    """A small judge keeps the tests fast; the real one sees 20,000 faces. Returns its cache."""
    monkeypatch.setattr(report, "JUDGE_TRAIN_EXAMPLES", 1000)
    monkeypatch.setattr(report, "JUDGE_EPOCHS", 2)
    monkeypatch.setattr(report, "JUDGE_MIN_STEPS", 0)
    return judge_dir


def test_evaluate_scores_edits_and_draws_figures(faces_run, small_judge):
    metrics = evaluate_run(faces_run, max_examples=300, edit_examples=40, judge_dir=small_judge, edit_strength=1.25)
    assert metrics["edit_strength"] == 1.25  # recorded beside the edits it produced
    edits = metrics["edits"]
    for key in (
        "manipulation_accuracy",
        "preservation_accuracy",
        "style_coverage",
        "judge_accuracy",
        "reconstruction_label_accuracy",
    ):
        assert 0.0 <= edits[key] <= 1.0, key
    assert edits["counterfactual_mse"] > 0 and edits["identity_mse"] >= 0
    assert set(edits["per_label"]) == {"glasses", "smile", "facial_hair"}
    for name in ("edit_grid.png", "traversal_glasses.png", "w_subspace.png"):
        assert (faces_run / name).stat().st_size > 500, name


def test_edit_strength_scores_each_label_at_each_point(faces_run, small_judge, monkeypatch, capsys):
    # bench/edit_strength.py: the RESULTS.md table of off -> on as W_i moves past the prior mean.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import edit_strength

    tables = edit_strength.main(
        [str(faces_run), "--points", "3", "6", "--examples", "60", "--judge-dir", str(small_judge)]
        + ["--strengths", "1", "2", "--split", "validation"]
    )
    assert list(tables["points"]) == ["glasses", "smile", "facial_hair"]
    for cells in tables["points"].values():
        assert [p for p, _, _ in cells] == [3.0, 6.0]
        assert all(0.0 <= on <= 1.0 and identity > 0 for _, on, identity in cells)
    # Per style: every face that has an attribute counted once, rates in [0, 1], a 2-D mean w.
    _, y, _, _ = report.test_examples(load_run(faces_run)[0], 60, "validation")
    for i, name in enumerate(["glasses", "smile", "facial_hair"]):
        styles = tables["styles"][name]
        assert sum(n for _, n, _, _, _, _ in styles) == int(y[:, i].sum())
        assert all(
            0 <= real <= 1 and 0 <= recon <= 1 and len(w) == 2 and 0 <= on <= 1 for _, _, real, recon, w, on in styles
        )
    # The model's own edits at each strength, both directions: on -> off does not depend on it.
    assert list(tables["strengths"]) == [1.0, 2.0]
    one, two = tables["strengths"][1.0], tables["strengths"][2.0]
    assert 0 <= one["manipulation_accuracy_on"] <= 1 and one["identity_mse"] > 0 and one["counterfactual_mse"] > 0
    assert one["manipulation_accuracy_off"] == two["manipulation_accuracy_off"]
    assert one["identity_mse"] != two["identity_mse"]  # switching on moved further
    printed = capsys.readouterr().out
    assert printed.count("3: ") == 3 and "facial_hair" in printed and "moustache" in printed
    assert "validation faces" in printed and "  2: " in printed


@pytest.mark.parametrize("command", [["evaluate"], ["export", "--out", "exports"]])
def test_a_bad_edit_strength_is_refused_before_loading(tmp_path, command):
    result = csvae_cli(*command, "--run", tmp_path / "no-run", "--edit-strength", "0")
    assert result.returncode == 2 and "edit_strength must be a finite number > 0" in result.stderr
    assert not (tmp_path / "exports").exists()


def test_load_run_sets_the_edit_strength(faces_run):
    assert load_run(faces_run)[1].edit_strength == (1.0, 1.0, 5 / 3)  # the model's own: the faces preset's
    assert load_run(faces_run, 1.5)[1].edit_strength == 1.5
    assert load_run(faces_run, [1.5, 1, 2])[1].edit_strength == (1.5, 1.0, 2.0)
    with pytest.raises(ValueError, match="edit_strength has 2 values; expected 3"):
        load_run(faces_run, [1.5, 1])
    with pytest.raises(ValueError, match="edit_strength must be"):
        load_run(faces_run.parent / "missing", -1)  # checked before the files


def test_reconstruction_regions_split_the_error_by_mask(faces_run, monkeypatch, capsys):
    # bench/reconstruction_regions.py: RESULTS.md's error outside the attribute masks.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import reconstruction_regions

    errors = reconstruction_regions.main([str(faces_run), "--examples", "20"])[str(faces_run)]
    identity = errors.pop("identity")
    change = errors.pop("change")
    assert set(errors) == {"outside", "glasses", "smile", "facial_hair"}
    assert all(0 < e < 1 for e in errors.values())
    # the regions of a face are not all reconstructed equally well by an untrained-ish model
    assert len({round(e, 6) for e in errors.values()}) > 1
    out = capsys.readouterr().out
    assert "outside the masks" in out and "identity MSE, reconstruction / edit" in out
    # per attribute: the reconstruction's identity MSE and the edits'; an edit
    # that switches a label changes the image, so the two differ
    assert set(identity) == {"glasses", "smile", "facial_hair"}
    for split in identity.values():
        assert 0 < split["reconstruction"] < 1 and 0 < split["edit"] < 1
        assert split["edit"] != split["reconstruction"]
    # what the edits move outside each mask, per direction: non-negative, and
    # not all zero (an edit changes the decoder's output somewhere)
    assert set(change) == set(identity)
    values = [v for c in change.values() for v in (c["on"], c["off"], c["top_third"])]
    assert all(0 <= v < 1 for v in values) and max(values) > 0
    assert "edit's change outside the mask" in out


def test_w_nuisance_r_squared_matches_closed_forms(monkeypatch):
    # bench/w_nuisance.py: R² of a factor from a quadratic in w_i.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import numpy as np
    import w_nuisance

    rng = np.random.default_rng(0)
    w = rng.normal(size=(500, 2))
    assert w_nuisance.quadratic_features(w).shape == (500, 6)  # 1, w0, w1, w0², w0·w1, w1²
    # a quadratic of w is explained exactly; independent noise hardly at all
    # (expected R² of 5 free features on 500 points: about 5/499 = 0.01)
    assert w_nuisance.r_squared(w, 1 + 2 * w[:, 0] - w[:, 1] ** 2) == pytest.approx(1.0)
    assert w_nuisance.r_squared(w, rng.normal(size=500)) < 0.05
    # channels pool: one explained channel of two with equal variance gives 1/2
    both = np.column_stack([w[:, 0], rng.permutation(w[:, 0])])
    assert w_nuisance.r_squared(w, both) == pytest.approx(0.5, abs=0.05)
    assert np.isnan(w_nuisance.r_squared(w, np.ones(500)))


def test_w_nuisance_scores_every_factor_of_a_csvae_run(faces_run, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import w_nuisance

    from keras_csvae.data.synthetic_faces import NUISANCE_NAMES

    scores = w_nuisance.main([str(faces_run), "--examples", "60"])[str(faces_run)]
    assert set(scores) == {"glasses", "smile", "facial_hair"}
    for label, by_factor in scores.items():
        assert set(NUISANCE_NAMES) | {f"{label}_style"} <= set(by_factor)
        assert all(-1e-9 <= r2 <= 1 + 1e-9 for r2 in by_factor.values())
    assert "nuisances" in capsys.readouterr().out


def test_edit_z_offset_fits_the_part_of_w_that_z_predicts(monkeypatch):
    # bench/edit_z_offset.py: the probe's linear map from z to w_i.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import edit_z_offset
    import numpy as np

    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 5))
    a, b = rng.normal(size=(5, 2)), np.array([3.0, 2.5])
    offset, r2 = edit_z_offset.fit_offset(z, z @ a + b)  # w_i an exact affine map of z
    assert r2 == pytest.approx(1.0)
    z_new = rng.normal(size=(7, 5))
    np.testing.assert_allclose(offset(z_new), z_new @ a + b - (z @ a + b).mean(axis=0), atol=1e-9)
    _, r2_noise = edit_z_offset.fit_offset(z, rng.normal(size=(400, 2)))  # w_i independent of z
    assert r2_noise < 0.05


def test_edit_z_offset_changes_only_the_edits_that_switch_on(faces_run, small_judge, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import edit_z_offset

    scores = edit_z_offset.main(
        [str(faces_run), "--examples", "40", "--fit-examples", "80", "--judge-dir", str(small_judge)]
    )
    assert set(scores["r2"]) == {"glasses", "smile", "facial_hair"}
    assert all(0 <= r2 <= 1 + 1e-9 for r2 in scores["r2"].values())
    moved = []
    for label in scores["r2"]:
        model, probe = scores["model"]["per_label"][label], scores["probe"]["per_label"][label]
        # switching off is the model's own edit in both; switching on moves W_i by the z offset
        assert probe["manipulation_accuracy_off"] == model["manipulation_accuracy_off"]
        moved.append(probe["identity_mse"] != model["identity_mse"])
    # The one-epoch decoder hardly depends on w: a small offset may change no
    # float32 pixel of one attribute's edits, but not of all three.
    assert any(moved)
    out = capsys.readouterr().out
    assert "model: manipulation" in out and "probe: manipulation" in out


def test_benchmark_summary_and_table():
    runs = {
        "csvae": [
            {"edits": {"manipulation_accuracy": 0.9, "counterfactual_mse_on": 0.004}, "reconstruction_mse": 0.01},
            {"edits": {"manipulation_accuracy": 0.8, "counterfactual_mse_on": 0.002}, "reconstruction_mse": 0.03},
        ],
        "vae": [{"edits": {"manipulation_accuracy": 0.5}, "reconstruction_mse": 0.02}],
    }
    summary = benchmark.summarise(runs)
    assert summary["csvae"]["manipulation_accuracy"]["mean"] == pytest.approx(0.85)
    assert summary["csvae"]["manipulation_accuracy"]["std"] == pytest.approx(0.05)
    # summarised for results.json, but kept out of the (already wide) table
    assert summary["csvae"]["counterfactual_mse_on"]["mean"] == pytest.approx(0.003)
    table = benchmark.markdown_table(summary)
    assert "| csvae | 0.850 ± 0.050 | 0.0200 ± 0.0100 |" in table
    assert table.splitlines()[0].startswith("| model | manipulation acc.")
    # A reference editor has one value per edit metric and none for what needs a model.
    references = benchmark.summarise_references(
        {"no edit": {"manipulation_accuracy": 0.01, "per_label": {"a": {"manipulation_accuracy": 0.02}}}}
    )
    assert references == {"no edit": {"manipulation_accuracy": {"value": 0.01, "per_label": {"a": 0.02}}}}
    table = benchmark.markdown_table(summary, references)
    assert table.splitlines()[-1] == "| *no edit* (reference) | 0.010 | – |"


def test_benchmark_reuses_trained_runs_and_counts_their_training_time(tmp_path, small_judge):
    options = dict(
        models=("vae",),
        seeds=(0,),
        epochs=1,
        image_size=32,
        num_examples=256,
        edit_examples=20,
        judge_dir=small_judge,
        extra_model_kwargs=json.loads(TINY),
    )
    first = benchmark.run_benchmark(tmp_path, **options)
    run = tmp_path / "vae-seed0"
    history = json.loads((run / "history.json").read_text())
    trained_at = (run / "model.keras").stat().st_mtime_ns
    cost = first["seconds_per_run"]["vae-seed0"]
    assert cost["train"] == pytest.approx(sum(entry["seconds"] for entry in history), abs=0.1) and cost["train"] > 0
    assert cost["evaluate"] > 0

    assert cost["metrics"] == "evaluated"
    evaluated_at = (run / "metrics.json").stat().st_mtime_ns

    # A second call (a resumed or split benchmark) neither retrains nor re-evaluates the finished run,
    # and still reports what its training cost.
    second = benchmark.run_benchmark(tmp_path, **options)
    assert (run / "model.keras").stat().st_mtime_ns == trained_at
    assert (run / "metrics.json").stat().st_mtime_ns == evaluated_at
    assert second["seconds_per_run"]["vae-seed0"]["train"] == cost["train"]
    assert second["seconds_per_run"]["vae-seed0"]["metrics"] == "reused"
    assert second["summary"] == first["summary"]
    report = (tmp_path / "results.md").read_text()
    assert "| vae |" in report
    # The reference editors, scored on the same faces by the same judge: the
    # input unchanged keeps everything; the true edit is the counterfactual
    # itself. (What the judge reads of them: tests/test_edit_metrics.py, with
    # a judge better than this test's small one.)
    references = first["references"]
    assert set(references) == {"no edit", "true edit"}
    assert references["no edit"]["identity_mse"]["value"] == 0.0
    assert references["no edit"]["preservation_accuracy"]["value"] == 1.0
    assert references["true edit"]["identity_mse"]["value"] < 1e-10
    assert references["true edit"]["counterfactual_mse"]["value"] < 1e-10
    assert set(references["true edit"]["counterfactual_mse"]["per_label"]) == {"glasses", "smile", "facial_hair"}
    assert "| *no edit* (reference) |" in report and "| *true edit* (reference) |" in report
    # The report's time is the runs' training, not only this (reusing) call's seconds.
    assert f"training {cost['train'] / 60:.1f} min summed over 1 run(s)" in report

    # Other evaluation settings evaluate again.
    third = benchmark.run_benchmark(tmp_path, **{**options, "edit_examples": 10})
    assert third["seconds_per_run"]["vae-seed0"]["metrics"] == "evaluated"
    assert json.loads((run / "metrics.json").read_text())["evaluated_with"]["edit_examples"] == 10


def _evaluated_run(directory, evaluated_with, edit_strength=None):
    """A run directory holding only a model file and, written after it, ``metrics.json``."""
    directory.mkdir()
    (directory / "model.keras").write_bytes(b"model")
    metrics = {"evaluated_with": evaluated_with}
    if edit_strength is not None:
        metrics["edit_strength"] = edit_strength
    (directory / "metrics.json").write_text(json.dumps(metrics))
    return directory


@pytest.mark.parametrize(
    "done_strength, used_strength, wanted_strength, reused",
    [
        (None, None, 1.25, True),  # a baseline: no strength of its own, any request fits
        (None, 7 / 6, 7 / 6, True),  # a CSVAE whose own strength is the one requested
        (None, 1.0, 7 / 6, False),  # a CSVAE scored at its own 1, requested 7/6
        (1.5, 1.5, None, False),  # scored at a requested 1.5, now at its own
        (1.5, 1.5, 1.5, True),
        # one per label: recorded as a JSON list, requested as a tuple
        ((1, 1, 5 / 3), [1.0, 1.0, 5 / 3], (1, 1, 5 / 3), True),
        (None, 1.25, (1, 1, 5 / 3), False),
        (None, [1.0, 1.0, 5 / 3], [1.0, 1.0, 1.5], False),
    ],
)
def test_benchmark_reuses_metrics_only_with_the_same_settings(
    tmp_path, done_strength, used_strength, wanted_strength, reused
):
    done = benchmark.evaluation_settings(None, 300, None, done_strength)
    run = _evaluated_run(tmp_path / "run", done, used_strength)
    wanted = benchmark.evaluation_settings(None, 300, None, wanted_strength)
    assert (benchmark.reusable_metrics(run, wanted) is not None) == reused
    assert benchmark.reusable_metrics(run, {**wanted, "edit_examples": 500}) is None


def test_benchmark_does_not_reuse_stale_old_or_broken_metrics(tmp_path):
    settings = benchmark.evaluation_settings(None, 300, None, None)
    fresh = _evaluated_run(tmp_path / "fresh", settings)
    assert benchmark.reusable_metrics(fresh, settings)["evaluated_with"] == settings
    stale = _evaluated_run(tmp_path / "stale", settings)
    later = (stale / "metrics.json").stat().st_mtime_ns + 10**9  # retrained after it was evaluated
    os.utime(stale / "model.keras", ns=(later, later))
    assert benchmark.reusable_metrics(stale, settings) is None
    older = _evaluated_run(tmp_path / "older", settings)
    (older / "metrics.json").write_text(json.dumps({"reconstruction_mse": 0.01}))  # before ``evaluated_with``
    assert benchmark.reusable_metrics(older, settings) is None
    broken = _evaluated_run(tmp_path / "broken", settings)
    (broken / "metrics.json").write_text('{"evaluated_with": ')
    assert benchmark.reusable_metrics(broken, settings) is None
    assert benchmark.reusable_metrics(tmp_path / "missing", settings) is None
