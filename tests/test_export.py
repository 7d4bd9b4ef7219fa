"""``csvae export``: SavedModel for TF Serving and ONNX for onnxruntime,
verified the way the servers load them.

Tiny models on fake run directories (``config.json`` + ``model.keras``, as
``csvae train`` leaves them), so the whole file runs in about a minute and a half.
Fresh-process tests prove that the artefacts need neither this package nor
TFP (SavedModel) nor TensorFlow (ONNX).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import SIGNATURES, TINY_IMAGE, run_python

from export import command, metadata, precision, quantize, verify
from export.errors import ExportError, VerificationError
from export.pipeline import export_model
from export.signatures import IMAGE_INPUT, IMAGE_OUTPUT, model_functions, signature_functions
from keras_csvae.data import registry
from keras_csvae.models import MODELS
from keras_csvae.training import TrainConfig, build_model, compile_model
from keras_csvae.training.runs import load_run, split_arrays

TINY_MLP = dict(architecture="mlp", hidden_units=[16, 16], z_dim=2, w_dim=2, adversary_units=[8])
ONNX_FILES = ("encode", "decode", "manipulate", "edit_at")


# -- helpers --------------------------------------------------------------------------------------
def make_run(run_dir, dataset, model_kwargs, dataset_options=None, model_name="csvae"):
    """A finished-looking run directory: the resolved ``config.json`` and an (untrained) ``model.keras``."""
    config = TrainConfig(
        dataset=dataset,
        model=model_name,
        precision="float32",
        model_kwargs=dict(model_kwargs),
        dataset_options=dataset_options or {},
    ).resolved()
    model = compile_model(build_model(config, registry.info(dataset, **config.dataset_options)), config)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    model.save(run_dir / "model.keras")
    return run_dir


@contextlib.contextmanager
def export_subcommand():
    """``keras_csvae.cli.main`` with ``export`` registered (a no-op once cli.py registers it)."""
    from keras_csvae import cli

    original = cli.build_parser

    def build_parser():
        parser = original()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "export" not in subparsers.choices:
            command.add_parser(subparsers)
        return parser

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "build_parser", build_parser)
        yield cli.main


def csvae(*args) -> int:
    """Runs ``csvae ARGS`` in this process; returns the exit status."""
    with export_subcommand() as main:
        return main([str(a) for a in args])


def quiet(line):
    pass


def keras_outputs(model, name, feeds):
    """The Keras model's exported function ``name`` on numpy ``feeds``, eagerly."""
    function = model_functions(model)[name]
    return {k: np.asarray(v) for k, v in function.fn(*[tf.constant(feeds[n]) for n in function.input_names]).items()}


def staging_leftovers(parent):
    return [p.name for p in parent.iterdir() if ".staging-" in p.name or ".replaced-" in p.name]


# -- fixtures: one image export through the CLI, one vector export through the API ----------------------
@pytest.fixture(scope="module")
def digits_export(tmp_path_factory):
    """``csvae export`` of a tiny conv CSVAE on ``digits`` (16x16x1, 10 labels), int8 included."""
    root = tmp_path_factory.mktemp("digits")
    run = make_run(root / "run", "digits", TINY_IMAGE)
    out = root / "export"
    assert csvae("export", "--run", run, "--out", out, "--calibration-examples", 64) == 0
    config, model = load_run(run)
    return {
        "run": run,
        "out": out,
        "config": config,
        "model": model,
        "metadata": metadata.read_json(out / "metadata.json"),
    }


@pytest.fixture(scope="module")
def roll_export(tmp_path_factory):
    """An MLP CSVAE on the swiss roll (x in R^3, 1 label), exported with ``export_run``."""
    from export import export_run

    root = tmp_path_factory.mktemp("roll")
    run = make_run(root / "run", "swiss_roll", TINY_MLP, dataset_options={"num_examples": 256})
    out = root / "export"
    content = export_run(run, out, calibration_examples=64, log=quiet)
    return {"run": run, "out": out, "metadata": content}


# -- what an export holds -------------------------------------------------------------------------------
def test_export_layout_models_config_and_metadata(digits_export):
    out, content = digits_export["out"], digits_export["metadata"]
    version_dir = out / "savedmodel" / "csvae" / "1"
    assert (version_dir / "saved_model.pb").exists() and (version_dir / "variables").is_dir()
    assert json.loads((version_dir / "assets.extra" / "metadata.json").read_text())["version"] == 1
    config_text = (out / "savedmodel" / "models.config").read_text()
    for line in ('name: "csvae"', 'base_path: "/models/csvae"', 'model_platform: "tensorflow"', "model_version_policy"):
        assert line in config_text
    for name in ONNX_FILES:
        assert (out / "onnx" / f"{name}.onnx").exists()

    model = content["model"]
    assert model["model_type"] == "csvae" and model["label_names"] == [f"digit_{d}" for d in range(10)]
    assert model["image_shape"] == [16, 16, 1] and model["w_dim"] == 2 and model["z_dim"] == 4
    assert set(model["prior"]) == {"mean_absent", "scale_absent", "mean_present", "scale_present"}
    assert content["training_config_digest"] == digits_export["config"].digest()
    assert content["training_config"]["dataset"] == "digits"
    assert {"keras-csvae", "tensorflow", "keras", "tf2onnx", "onnxruntime"} <= set(content["versions"])
    signatures = content["savedmodel"]["signatures"]
    assert set(signatures) == SIGNATURES
    assert signatures["serving_default"] == signatures["manipulate"]
    labels = {"dtype": "float32", "shape": [-1, 10]}
    # The per-label edit needs the source labels y beside the targets.
    assert signatures["manipulate"]["inputs"] == {
        "x": {"dtype": "float32", "shape": [-1, 16, 16, 1]},
        "y": labels,
        "y_target": labels,
    }
    assert signatures["manipulate_image"] == {
        "inputs": {"image_bytes": {"dtype": "string", "shape": [-1]}, "y": labels, "y_target": labels},
        "outputs": {"edited_image_bytes": {"dtype": "string", "shape": [-1]}},
    }
    assert content["verification"]["verified"]
    assert set(content["verification"]["onnx"]) == set(ONNX_FILES)


def test_savedmodel_signatures_as_tf_serving_loads_them(digits_export):
    """What ``saved_model_cli show --all`` shows: float32 (or string) tensors, batch dims -1."""
    with verify.savedmodel_session(digits_export["out"] / "savedmodel" / "csvae" / "1") as (_, meta_graph):
        signatures = verify.describe_signatures(meta_graph)
        ops = verify.graph_op_types(meta_graph)
    assert set(signatures) == SIGNATURES
    for name, signature in signatures.items():
        assert signature["method_name"] == "tensorflow/serving/predict"
        for tensor in [*signature["inputs"].values(), *signature["outputs"].values()]:
            assert tensor["dtype"] in {"DT_FLOAT", "DT_STRING"}, (name, tensor)
            assert tensor["shape"][0] == -1
    assert not [op for op in ops if verify.FORBIDDEN_OPS.search(op)]


def test_onnx_files_have_metadata_and_dynamic_batch(digits_export):
    import onnx

    proto = onnx.load(digits_export["out"] / "onnx" / "manipulate.onnx")
    assert proto.opset_import[0].version >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["label_names"]) == [f"digit_{d}" for d in range(10)]
    assert json.loads(props["image_shape"]) == [16, 16, 1] and props["w_dim"] == "2"
    assert json.loads(props["prior"])["mean_present"] == 3.0
    for value in [*proto.graph.input, *proto.graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"


# -- the artefacts in the processes that will serve them -----------------------------------------------------
def test_savedmodel_in_a_process_with_only_tensorflow(digits_export, tmp_path):
    model = digits_export["model"]
    rng = np.random.default_rng(3)
    feeds = {
        "x": rng.random((5, 16, 16, 1), dtype=np.float32),
        "y": rng.integers(0, 2, (5, 10)).astype(np.float32),
        "y_target": rng.integers(0, 2, (5, 10)).astype(np.float32),
    }
    np.savez(tmp_path / "in.npz", **feeds)
    code = f"""
import sys
import numpy as np
import tensorflow as tf
data = np.load({str(tmp_path / "in.npz")!r})
loaded = tf.saved_model.load({str(digits_export["out"] / "savedmodel" / "csvae" / "1")!r})
out = {{sig: loaded.signatures[sig](**{{k: tf.constant(v) for k, v in data.items()}})["x_edited"].numpy()
       for sig in ("serving_default", "manipulate")}}
leaked = sorted(m for m in sys.modules if m.startswith(("keras_csvae", "tensorflow_probability", "export")))
assert not leaked, leaked
np.savez({str(tmp_path / "out.npz")!r}, **out)
"""
    run_python(code)
    expected = keras_outputs(model, "manipulate", feeds)["x_edited"]
    result = np.load(tmp_path / "out.npz")
    for signature in ("serving_default", "manipulate"):
        np.testing.assert_allclose(result[signature], expected, atol=1e-5)


def test_onnx_in_a_process_with_only_onnxruntime(digits_export, tmp_path):
    model, onnx_dir = digits_export["model"], digits_export["out"] / "onnx"
    functions = model_functions(model)
    rng = np.random.default_rng(4)
    feeds = {}
    for name in ONNX_FILES:
        for spec in functions[name].input_specs:
            feeds[f"{name}:{spec.name}"] = verify.random_input(model, spec, 3, rng)
    int8_written = (onnx_dir / quantize.INT8_FILE).exists()
    np.savez(tmp_path / "in.npz", **feeds)
    code = f"""
import json, sys
import numpy as np
import onnxruntime as ort
data = np.load({str(tmp_path / "in.npz")!r})
out, props = {{}}, {{}}
names = {list(ONNX_FILES)!r} + (["manipulate.int8"] if {int8_written} else [])
for name in names:
    session = ort.InferenceSession({str(onnx_dir)!r} + f"/{{name}}.onnx", providers=["CPUExecutionProvider"])
    source = name.split(".")[0]
    feeds = {{i.name: data[f"{{source}}:{{i.name}}"] for i in session.get_inputs()}}
    for o, value in zip(session.get_outputs(), session.run(None, feeds)):
        out[f"{{name}}:{{o.name}}"] = value
    props[name] = session.get_modelmeta().custom_metadata_map
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "keras_csvae", "tf2onnx"))
assert not leaked, leaked
np.savez({str(tmp_path / "out.npz")!r}, **out)
print(json.dumps(props))
"""
    props = json.loads(run_python(code).strip().splitlines()[-1])
    result = np.load(tmp_path / "out.npz")
    for name in ONNX_FILES:
        expected = keras_outputs(
            model, name, {spec.name: feeds[f"{name}:{spec.name}"] for spec in functions[name].input_specs}
        )
        for output, value in expected.items():
            np.testing.assert_allclose(result[f"{name}:{output}"], value, atol=1e-4, err_msg=f"{name}:{output}")
        assert json.loads(props[name]["label_names"])[0] == "digit_0"
    if int8_written:
        error = np.abs(result["manipulate.int8:x_edited"] - result["manipulate:x_edited"]).mean()
        assert error < quantize.MEAN_ERROR_THRESHOLD


def test_manipulate_image_round_trip(digits_export):
    """PNG in, PNG out: the decoded edit equals ``manipulate`` on the same pixels
    within PNG quantisation; a larger RGB JPEG is converted and resized first."""
    model = digits_export["model"]
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    y_target = rng.integers(0, 2, (3, 10)).astype(np.float32)
    y = rng.integers(0, 2, (3, 10)).astype(np.float32)
    rgb = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    jpeg, png = tf.io.encode_jpeg(rgb).numpy(), verify.encode_png(pixels)  # eager, before the graph session
    path = digits_export["out"] / "savedmodel" / "csvae" / "1"
    with verify.savedmodel_session(path) as (session, meta_graph):
        edited = verify.run_signature(
            session, meta_graph, "manipulate_image", {IMAGE_INPUT: png, "y": y, "y_target": y_target}
        )[IMAGE_OUTPUT]
        edited_jpeg = verify.run_signature(
            session,
            meta_graph,
            "manipulate_image",
            {IMAGE_INPUT: np.array([jpeg], object), "y": y[:1], "y_target": y_target[:1]},
        )[IMAGE_OUTPUT]
    assert edited.dtype == object and all(item.startswith(b"\x89PNG") for item in edited)
    expected = keras_outputs(model, "manipulate", {"x": pixels / np.float32(255), "y": y, "y_target": y_target})[
        "x_edited"
    ]
    np.testing.assert_allclose(verify.decode_png(edited) / 255.0, expected, atol=1 / 255 + 1e-5)

    gray = tf.image.resize(tf.io.decode_image(jpeg, channels=1)[None] / 255, [16, 16], antialias=True).numpy()
    expected = keras_outputs(model, "manipulate", {"x": gray.astype(np.float32), "y": y[:1], "y_target": y_target[:1]})[
        "x_edited"
    ]
    decoded = verify.decode_png(edited_jpeg)
    assert decoded.shape == (1, 16, 16, 1)
    np.testing.assert_allclose(decoded / 255.0, expected, atol=1 / 255 + 1e-4)


# -- precision ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_model_exports_float32(policy, tmp_path):
    keras.mixed_precision.set_global_policy(policy)
    model = MODELS["csvae"](data_shape=(16, 16, 3), num_labels=2, **TINY_IMAGE)
    keras.mixed_precision.set_global_policy("float32")
    assert precision.compute_dtypes(model) > {"float32"}

    content = export_model(model, tmp_path / "out", int8=False, log=quiet)

    assert content["precision"]["float32_copy"] and content["precision"]["export_compute_dtype"] == "float32"
    # float16 keeps ~3 significant digits, bfloat16 ~2: the copy differs by rounding only
    assert content["precision"]["max_abs_difference_vs_trained_policy"] < 0.05
    with verify.savedmodel_session(tmp_path / "out" / "savedmodel" / "csvae" / "1") as (_, meta_graph):
        signatures = verify.describe_signatures(meta_graph)
    dtypes = {t["dtype"] for s in signatures.values() for t in [*s["inputs"].values(), *s["outputs"].values()]}
    assert dtypes == {"DT_FLOAT", "DT_STRING"}
    for name in ONNX_FILES:
        session = verify.onnx_session(tmp_path / "out" / "onnx" / f"{name}.onnx")
        assert {t.type for t in [*session.get_inputs(), *session.get_outputs()]} == {"tensor(float)"}


# -- every registered model (the baselines' hook) -------------------------------------------------------------
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_registered_model_exports(model_name, tmp_path):
    """Each model in ``keras_csvae.models.MODELS``, built with the same tiny
    arguments, exports and passes the full verification with no change to ``export/``."""
    model = MODELS[model_name](data_shape=(16, 16, 1), num_labels=2, **TINY_IMAGE)
    content = export_model(model, tmp_path / "out", int8=False, log=quiet)
    signatures = content["savedmodel"]["signatures"]
    assert {"serving_default", "manipulate", "manipulate_image"} <= set(signatures)
    assert signatures["serving_default"] == signatures["manipulate"]
    image_inputs = dict(signatures["manipulate"]["inputs"])
    image_inputs.pop("x")
    assert signatures["manipulate_image"]["inputs"] == {IMAGE_INPUT: {"dtype": "string", "shape": [-1]}, **image_inputs}
    assert {"encode", "decode", "manipulate"} <= set(content["onnx"])
    assert content["verification"]["verified"] and "manipulate" in content["verification"]["onnx"]


# -- vector data and int8 --------------------------------------------------------------------------------
def test_vector_model_export_and_int8_measurements(roll_export):
    out, content = roll_export["out"], roll_export["metadata"]
    assert "manipulate_image" not in content["savedmodel"]["signatures"]  # not an image model
    int8 = content["int8"]
    for key in ("mean_abs_error", "max_abs_error", "scaled_mean_abs_error", "latency_ms", "written"):
        assert key in int8
    assert set(int8["latency_ms"]["int8"]) == {"batch_1", "batch_32"}
    assert (out / "onnx" / quantize.INT8_FILE).exists() == int8["written"]
    assert int8["written"] == (int8["scaled_mean_abs_error"] < quantize.MEAN_ERROR_THRESHOLD)


def _quantize(digits_export, out_path, checks=()):
    model = digits_export["model"]
    calibration = split_arrays(digits_export["config"], "train", 32)
    evaluation = split_arrays(digits_export["config"], "validation", 32)
    return quantize.quantize_manipulate(
        model,
        model_functions(model)["manipulate"],
        digits_export["out"] / "onnx" / "manipulate.onnx",
        out_path,
        calibration,
        evaluation,
        checks=checks,
        log=quiet,
    )


def test_int8_is_written_only_when_it_keeps_quality(digits_export, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "MEAN_ERROR_THRESHOLD", 0.0)
    report = _quantize(digits_export, tmp_path / "strict.int8.onnx")
    assert not report["written"] and "scaled_mean_abs_error" in report["reason"]
    assert not (tmp_path / "strict.int8.onnx").exists()


def test_int8_quality_checks_are_passed_in(digits_export, tmp_path):
    """Where the evaluation side's judge check plugs in."""
    seen = []

    def judge(context: quantize.QualityContext):
        seen.append(context.int8["x_edited"].shape)
        return {"name": "judge_accuracy", "passed": len(seen) == 1}

    report = _quantize(digits_export, tmp_path / "a.int8.onnx", checks=[judge])
    assert report["written"] and report["checks"] == [{"name": "judge_accuracy", "passed": True}]
    assert seen[0] == (32, 16, 16, 1)
    report = _quantize(digits_export, tmp_path / "b.int8.onnx", checks=[judge])
    assert not report["written"] and "judge_accuracy" in report["reason"]
    assert not (tmp_path / "b.int8.onnx").exists()


# -- destinations, versions and failures ------------------------------------------------------------------
def test_failed_verification_leaves_no_export(roll_export, tmp_path, monkeypatch, capsys):
    def mismatch(path, function, cases, log=print):
        raise VerificationError(f"{function.name}.onnx output differs from the SavedModel by 0.5 (injected)")

    monkeypatch.setattr(verify, "verify_onnx", mismatch)
    exports = tmp_path / "exports"
    status = csvae("export", "--run", roll_export["run"], "--out", exports / "roll", "--no-int8")
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("csvae export: error: ") and "(injected)" in error and error.count("\n") == 1
    assert list(exports.iterdir()) == []  # neither the export nor its staging folder


def test_new_versions_and_failed_updates_of_an_existing_export(roll_export, tmp_path, monkeypatch, capsys):
    out = tmp_path / "export"
    shutil.copytree(roll_export["out"], out)
    run = roll_export["run"]

    assert csvae("export", "--run", run, "--out", out, "--version", 1) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err

    before = (out / "metadata.json").read_bytes()
    monkeypatch.setattr(
        verify, "check_graph_ops", lambda meta_graph: (_ for _ in ()).throw(VerificationError("injected"))
    )
    assert csvae("export", "--run", run, "--out", out, "--no-int8") == 2
    assert (out / "metadata.json").read_bytes() == before
    assert sorted(p.name for p in (out / "savedmodel" / "csvae").iterdir()) == ["1"]
    assert staging_leftovers(tmp_path) == []
    monkeypatch.undo()

    assert csvae("export", "--run", run, "--out", out, "--no-int8") == 0
    assert sorted(p.name for p in (out / "savedmodel" / "csvae").iterdir()) == ["1", "2"]
    assert metadata.read_json(out / "metadata.json")["version"] == 2
    assert not (out / "onnx" / quantize.INT8_FILE).exists()  # onnx/ describes the newest export
    assert staging_leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "savedmodel,tflite"], "choose from savedmodel,onnx"),
        (["--name", "my model"], "--name 'my model'"),
        (["--version", "0"], "--version must be a positive integer"),
    ],
)
def test_user_errors_are_one_line(roll_export, tmp_path, capsys, args, message):
    status = csvae("export", "--run", roll_export["run"], "--out", tmp_path / "out", *args)
    error = capsys.readouterr().err
    assert status == 2 and message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_run_and_foreign_destination(tmp_path, capsys):
    assert csvae("export", "--run", tmp_path / "nope", "--out", tmp_path / "out") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert csvae("export", "--run", tmp_path / "nope", "--out", tmp_path / "busy") == 2
    assert "holds no export" in capsys.readouterr().err


# -- the serving_functions() contract --------------------------------------------------------------------
class _StubModel:
    """Just enough of a ``LatentModel`` for ``signature_functions``."""

    data_shape, num_labels, label_names = (3,), 1, ("a",)

    def __init__(self, functions):
        self._functions = functions

    def serving_functions(self):
        return self._functions


def _spec(name, width=3):
    return tf.TensorSpec([None, width], tf.float32, name=name)


@pytest.mark.parametrize(
    "functions, message",
    [
        ({"encode": (lambda x: {"z": x}, [_spec("x")])}, "has no 'manipulate'"),
        ({"manipulate": (lambda x, y: {"x": x}, [_spec("x"), _spec("y", 1)])}, "also input names"),
        ({"manipulate": (lambda x: {"x_edited": x}, [tf.TensorSpec([None, 3], tf.float32)])}, "distinct name"),
        ({"manipulate": (lambda x: {"x_edited": x}, [tf.TensorSpec([2, 3], tf.float32, name="x")])}, "batch dim None"),
        ({"manipulate": (lambda x: x, [_spec("x")])}, "dict of named tensors"),
    ],
)
def test_contract_violations_are_clear_errors(functions, message):
    with pytest.raises(ExportError, match=message):
        signature_functions(_StubModel(functions))


class ThresholdJudge:
    """Labels an image 1 when its mean is above one half."""

    accuracy = {"labels": 1.0}

    def labels(self, images):
        return (images.reshape(len(images), -1).mean(axis=1, keepdims=True) > 0.5).astype(int)


def test_int8_is_judged_like_float32_when_a_judge_exists():
    """The judge check passes when int8 and float32 edits are judged alike, fails when not."""
    from keras_csvae.evaluation import judge_check

    check = judge_check.judge_agreement_check(ThresholdJudge())
    bright = np.full((10, 4, 4, 3), 0.9, np.float32)
    same = quantize.QualityContext(None, {}, {"x_edited": bright}, {"x_edited": bright - 0.01}, None)
    flipped = quantize.QualityContext(None, {}, {"x_edited": bright}, {"x_edited": bright - 0.6}, None)
    assert check(same)["passed"] and check(same)["agreement"] == 1.0
    assert not check(flipped)["passed"]


def test_csvae_export_hands_export_the_judge_check(tmp_path, monkeypatch):
    """The CLI builds the int8 checks on the evaluation side (the dataset's cached judge, image models
    only) and passes them to ``export_run``, which imports nothing from evaluation."""
    from export import pipeline
    from keras_csvae.evaluation import judge_check

    received = {}
    monkeypatch.setattr(pipeline, "export_run", lambda run, out, **options: received.update(options) or {})
    assert csvae("export", "--run", tmp_path / "run", "--out", tmp_path / "out") == 0
    make_checks = received["make_quality_checks"]

    judges = {"digits": ThresholdJudge()}
    monkeypatch.setattr(judge_check, "existing_judge", lambda dataset, options, judge_dir=None: judges.get(dataset))
    config = TrainConfig(dataset="digits")
    image_model, vector_model = argparse.Namespace(data_shape=(16, 16, 1)), argparse.Namespace(data_shape=(3,))
    (check,) = make_checks(config, image_model)
    bright = np.full((4, 16, 16, 1), 0.9, np.float32)
    assert check(quantize.QualityContext(None, {}, {"x_edited": bright}, {"x_edited": bright}, None))["passed"]
    assert make_checks(config, vector_model) == []
    assert make_checks(TrainConfig(dataset="celeba"), image_model) == []  # no judge cached: no check
