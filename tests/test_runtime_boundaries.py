"""The walls of the tree: the runtime runs without TensorFlow, and imports go one way.

- In fresh interpreters where TensorFlow, Keras, TFP and tf2onnx cannot be
  imported (``test_serving.BLOCKER``: a ``sys.meta_path`` finder installed
  before anything else is imported), on the export of
  ``test_serving.shared_export`` (built once, in this process): every module
  of the runtime imports and reads the export, ``csvae edit`` edits and
  reports its errors, and ``csvae serve --backend onnx`` answers status, v1
  predict and Open Inference Protocol v2 infer.
- With ``ast``, lazy imports included: no file under ``serving/`` imports
  ``keras_csvae``, nothing under ``export/`` imports ``keras_csvae.evaluation``,
  and in ``serving/`` only the SavedModel backend imports TensorFlow & co.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_serving import BLOCKED, BLOCKER, ROOT, SIZE, _start_serve, call, csvae_command, images, png_of, shared_export

from serving.client import TFServingClient

TIMEOUT = 120
TF_BACKEND = ROOT / "serving" / "backends" / "savedmodel.py"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


# -- without TensorFlow ------------------------------------------------------------------------------------
RUNTIME_SCRIPT = (
    BLOCKER
    + r"""
import importlib, json
from pathlib import Path
modules, export_dir = json.loads(sys.argv[1]), Path(sys.argv[2])
for name in modules:
    importlib.import_module(name)
try:
    importlib.import_module("serving.backends.savedmodel")
    savedmodel = "imported"
except ImportError as err:
    savedmodel = str(err)
import numpy as np
from serving.runtime import contract, images, sessions
metadata = contract.read_metadata(export_dir)
model = metadata["model"]
session = sessions.onnx_session(export_dir / contract.onnx_files(metadata)[contract.DEFAULT_EDIT_SIGNATURE])
pixels = images.decode_image(images.encode_png(np.full(model["image_shape"], 0.5, np.float32)), model["image_shape"])
mean, _ = contract.prior_w([[1, 0, 0]], model["prior"], model["w_dim"])
print(json.dumps({
    "savedmodel": savedmodel,
    "inputs": sorted(i.name for i in session.get_inputs()),
    "pixels": float(pixels.mean()),
    "mean": mean.tolist(),
    "edit": contract.edit_w([[1, 0, 1]], model["prior"], model["w_dim"], model["edit_strength"]).tolist(),
    "styles": len(contract.style_grid(model["prior"], model["w_dim"])),
    "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED),
}))
"""
)


def test_every_runtime_module_imports_and_reads_an_export_without_tensorflow(export_dir):
    modules = [_module_name(p) for p in _python_files("serving") if p != TF_BACKEND]
    assert {
        "serving.runtime.contract",
        "serving.runtime.images",
        "serving.runtime.sessions",
        "serving.edge",
        "serving.backends.onnx",
        "serving.server",
    } <= set(modules)
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT, json.dumps(modules), str(export_dir)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "tensorflow is blocked" in report["savedmodel"]  # the blocker works: the TF backend cannot load
    assert report["inputs"] == ["x", "y", "y_target"] and report["styles"] == 9 and report["loaded"] == []
    assert abs(report["pixels"] - 128 / 255) < 1e-6
    assert report["mean"] == [[3.0, 3.0, 0.0, 0.0, 0.0, 0.0]]  # w_dim 2: glasses present, the others absent
    # the export's edit_strength per label ([1.25, 1, 1.5], test_serving._tiny_model) reaches
    # the runtime: glasses 1.25 · (3 − 0), smile off, facial hair 1.5 · (3 − 0)
    assert report["edit"] == [[3.75, 3.75, 0.0, 0.0, 4.5, 4.5]]


def _csvae(*args):
    return subprocess.run(
        csvae_command(*args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_csvae_edit_and_its_errors_without_tensorflow(export_dir, tmp_path):
    from serving.edge import Editor

    x, _ = images(1, seed=26)
    face = tmp_path / "face.png"
    face.write_bytes(png_of(x[0]))
    out = tmp_path / "edited.png"
    result = _csvae("edit", face, "--model", export_dir, "--set", "glasses=1", "--set", "smile=0", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "Wrote" in result.stdout and "glasses=1 smile=0 facial_hair=0" in result.stdout
    assert out.read_bytes() == Editor(export_dir).edit(face.read_bytes(), {"glasses": 1, "smile": 0})
    (tmp_path / "text.png").write_text("not a picture")
    errors = {
        "unknown label 'hat'; this model's labels are: glasses, smile, facial_hair": [face, "--set", "hat=1"],
        "not a PNG/JPEG/GIF/BMP picture": [tmp_path / "text.png", "--set", "glasses=1"],
        "--style must be an integer from 0 to 8": [face, "--set", "glasses=1", "--style", "9"],
    }
    for message, args in errors.items():
        result = _csvae("edit", args[0], "--model", export_dir, *args[1:], "--out", tmp_path / "x.png")
        assert result.returncode == 2, (message, result.stderr)
        assert result.stderr.startswith("csvae edit: error: ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    result = _csvae("edit", face, "--model", tmp_path, "--set", "glasses=1", "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "metadata.json is missing" in result.stderr, result.stderr
    assert not (tmp_path / "x.png").exists()


def test_onnx_server_without_tensorflow(export_dir):
    """``csvae serve --backend onnx`` under the blocker on a free 127.0.0.1 port;
    the answers are onnxruntime's on the same files."""
    from serving.runtime.sessions import onnx_session

    session = onnx_session(export_dir / "onnx" / "manipulate.onnx")
    x, y = images(2, seed=31)
    expected = session.run(None, {"x": x, "y": 1 - y, "y_target": y})[0]
    process, url, _ = _start_serve(export_dir, "--backend", "onnx")
    try:
        status = TFServingClient(url, timeout=30).status()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        code, body = call(
            url,
            "POST",
            "/v1/models/csvae:predict",
            {"inputs": {"x": x.tolist(), "y": (1 - y).tolist(), "y_target": y.tolist()}},
            timeout=30,
        )
        assert code == 200, body
        np.testing.assert_array_equal(np.array(body["outputs"], np.float32), expected)
        request = {
            "inputs": [
                {"name": "x", "shape": [2, SIZE, SIZE, 3], "datatype": "FP32", "data": x.ravel().tolist()},
                {"name": "y", "shape": [2, 3], "datatype": "FP32", "data": (1 - y).ravel().tolist()},
                {"name": "y_target", "shape": [2, 3], "datatype": "FP32", "data": y.ravel().tolist()},
            ]
        }
        code, body = call(url, "POST", "/v2/models/csvae/infer", request, timeout=30)
        assert code == 200, body
        (output,) = body["outputs"]
        np.testing.assert_array_equal(np.array(output["data"], np.float32).reshape(expected.shape), expected)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0 and "Stopped." in out, err


# -- imports go one way -----------------------------------------------------------------------------------
def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at any depth (functions included); relative imports
    resolved, and ``from a import b`` listed as ``a.b`` too (``b`` may be a module)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module
            if node.level:  # from . import x / from ..a import b
                base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".")
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_serving_imports_no_keras_csvae_and_only_its_savedmodel_backend_tensorflow():
    files = _python_files("serving")
    assert TF_BACKEND in files
    offences = set()
    for path in files:
        for name in _imports(path):
            if _within(name, "keras_csvae"):
                offences.add(f"{path.relative_to(ROOT)} imports {name}")
            if path != TF_BACKEND and any(_within(name, heavy) for heavy in BLOCKED):
                offences.add(f"{path.relative_to(ROOT)} imports {name} (only {TF_BACKEND.relative_to(ROOT)} may)")
    assert not offences, "\n".join(sorted(offences))


def test_export_imports_nothing_from_evaluation():
    files = _python_files("export")
    assert len(files) > 5
    offences = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in _imports(path)
        if _within(name, "keras_csvae.evaluation")
    }
    assert not offences, "\n".join(sorted(offences))
