"""``csvae serve``, ``serving.client`` and the TF Serving deployment files.

One tiny image CSVAE (16x16x3, labels glasses/smile/facial_hair) is exported
once (``shared_export``); a second model is added as SavedModel version 2.
Servers run in background threads on free 127.0.0.1 ports, or as ``csvae
serve`` subprocesses for the start-up and SIGTERM tests. Everything has a
timeout. The contract tests check the exact JSON shapes of TF Serving's REST
API (https://www.tensorflow.org/tfx/serving/api_rest); where a real ``tensorflow_model_server`` is on
PATH, the same client checks run against it too.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import SIGNATURES, TINY_IMAGE

from serving import backends
from serving.client import ClientError, TFServingClient, b64
from serving.runtime.images import decode_image, encode_png
from serving.runtime.sessions import onnx_session
from serving.server import ServerConfig, ServerThread

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("glasses", "smile", "facial_hair")
SIZE = 16
TEST_CONFIG = dict(
    port=0, max_batch_size=32, batch_timeout_ms=2.0, max_body_bytes=1 << 20, read_timeout_s=1.0, timeout_s=20.0
)

# The first lines of a fresh interpreter that must run without TensorFlow: a
# finder that makes TensorFlow, Keras, TFP and tf2onnx unimportable, installed
# before anything else is imported (and checked that none of them is loaded yet).
BLOCKED = ("tensorflow", "keras", "tensorflow_probability", "tf2onnx")
BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
assert not [m for m in sys.modules if m.partition(".")[0] in BLOCKED], "imported before the blocker"
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: this process must run without TensorFlow")
        return None
sys.meta_path.insert(0, Blocker())
"""
# `csvae ARGS` with the blocker: any import of TensorFlow & co. fails loudly.
BLOCKED_CSVAE = (
    BLOCKER
    + """
from keras_csvae import cli
sys.exit(cli.main(sys.argv[1:]))
"""
)


def csvae_command(*args) -> list[str]:
    """``csvae ARGS`` in a fresh interpreter where TensorFlow, Keras, TFP and tf2onnx cannot be imported."""
    return [sys.executable, "-c", BLOCKED_CSVAE, *map(str, args)]


# -- the export ---------------------------------------------------------------------------------
def _tiny_model(seed):
    import keras

    from keras_csvae.models import CSVAE

    keras.utils.set_random_seed(seed)
    # edit_strength != 1, one per label: every comparison of an exported edit with the Keras model checks it travels
    return CSVAE(
        data_shape=(SIZE, SIZE, 3), num_labels=3, label_names=LABELS, edit_strength=[1.25, 1.0, 1.5], **TINY_IMAGE
    )


def shared_export(tmp_path_factory) -> Path:
    """``EXPORT_DIR`` of a tiny CSVAE (ONNX + SavedModel version 1) with a second,
    differently initialised model as SavedModel version 2; built once per session."""
    from export.pipeline import export_model

    out = tmp_path_factory.getbasetemp() / "serving-export"
    if (out / "metadata.json").exists():
        return out
    scratch = tmp_path_factory.mktemp("serving-export-build")
    export_model(_tiny_model(0), scratch / "v1", int8=False, verify_export=False, log=lambda line: None)
    export_model(
        _tiny_model(1), scratch / "v2", formats=("savedmodel",), int8=False, verify_export=False, log=lambda line: None
    )
    shutil.copytree(scratch / "v2" / "savedmodel" / "csvae" / "1", scratch / "v1" / "savedmodel" / "csvae" / "2")
    os.replace(scratch / "v1", out)
    return out


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory)


@pytest.fixture(scope="module")
def onnx_server(export_dir):
    with ServerThread(backends.load(export_dir, "onnx"), ServerConfig(**TEST_CONFIG)) as server:
        yield server


@pytest.fixture(scope="module")
def savedmodel_server(export_dir):
    with ServerThread(backends.load(export_dir, "savedmodel"), ServerConfig(**TEST_CONFIG)) as server:
        yield server


@pytest.fixture(scope="module")
def servers(onnx_server, savedmodel_server):
    return {"onnx": onnx_server, "savedmodel": savedmodel_server}


@pytest.fixture(scope="module")
def reference(export_dir):
    """Direct results: onnxruntime sessions and TensorFlow's loaded SavedModel versions."""
    import tensorflow as tf

    sessions = {
        n: onnx_session(export_dir / "onnx" / f"{n}.onnx") for n in ("encode", "decode", "manipulate", "edit_at")
    }
    saved = {v: tf.saved_model.load(str(export_dir / "savedmodel" / "csvae" / str(v))) for v in (1, 2)}

    def onnx(name, **feeds):
        session = sessions[name]
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    def savedmodel(version, signature, **feeds):
        outputs = saved[version].signatures[signature](**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    return {"onnx": onnx, "savedmodel": savedmodel}


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, SIZE, SIZE, 3), dtype=np.float32), rng.integers(0, 2, (n, 3)).astype(np.float32)


def png_of(pixels) -> bytes:
    return encode_png(pixels)


def call(server_or_url, method, path, body=None, headers=None, timeout=30):
    """One raw HTTP request; returns ``(status, decoded JSON or raw bytes)``."""
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data


def decode_pngs(items) -> np.ndarray:
    import io

    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(item))) for item in items]).astype(np.int16)


# -- TF Serving REST v1 contract ------------------------------------------------------------------
@pytest.mark.parametrize("backend, versions", [("onnx", ["1"]), ("savedmodel", ["1", "2"])])
def test_model_status(servers, backend, versions):
    server = servers[backend]
    expected = [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}} for v in versions
    ]
    assert call(server, "GET", "/v1/models/csvae") == (200, {"model_version_status": expected})
    assert call(server, "GET", "/V1/Models/csvae/versions/1") == (
        200,
        {"model_version_status": expected[:1]},
    )  # case-insensitive
    assert call(server, "GET", "/v1/models/csvae/versions/7") == (
        404,
        {"error": "Could not find version 7 of model csvae"},
    )
    assert call(server, "GET", "/v1/models/nope") == (404, {"error": "Could not find any versions of model nope"})
    assert TFServingClient(server.url).status() == {"model_version_status": expected}


def test_metadata_shape_and_signatures(servers):
    metadata = {}
    for backend, server in servers.items():
        status, body = call(server, "GET", "/v1/models/csvae/metadata")
        assert status == 200 and set(body) == {"model_spec", "metadata"}
        assert body["model_spec"] == {
            "name": "csvae",
            "signature_name": "",
            "version": "1" if backend == "onnx" else "2",
        }
        defs = body["metadata"]["signature_def"]["signature_def"]
        assert set(defs) == SIGNATURES
        for signature in defs.values():
            assert set(signature) == {"inputs", "outputs", "method_name"}
            assert signature["method_name"] == "tensorflow/serving/predict"
            for info in [*signature["inputs"].values(), *signature["outputs"].values()]:
                assert set(info) == {"dtype", "tensor_shape", "name"} and info["dtype"] in {"DT_FLOAT", "DT_STRING"}
                assert info["tensor_shape"]["unknown_rank"] is False
                assert info["tensor_shape"]["dim"][0] == {"size": "-1", "name": ""}
                assert all(isinstance(d["size"], str) for d in info["tensor_shape"]["dim"])  # int64 as strings
        assert defs["manipulate"]["inputs"]["x"]["tensor_shape"]["dim"] == [
            {"size": s, "name": ""} for s in ("-1", "16", "16", "3")
        ]
        assert defs["manipulate_image"]["outputs"]["edited_image_bytes"]["dtype"] == "DT_STRING"
        metadata[backend] = defs
    assert metadata["savedmodel"]["serving_default"]["inputs"]["x"]["name"] == "serving_default_x:0"

    def without_tensor_names(defs):
        return {
            s: {k: {n: {**i, "name": ""} for n, i in v.items()} if k != "method_name" else v for k, v in d.items()}
            for s, d in defs.items()
        }

    # The ONNX backend offers the same signatures as the SavedModel, tensor for tensor.
    assert without_tensor_names(metadata["onnx"]) == without_tensor_names(metadata["savedmodel"])
    assert call(servers["savedmodel"], "GET", "/v1/models/csvae/versions/1/metadata")[1]["model_spec"]["version"] == "1"


@pytest.mark.parametrize("backend", ["onnx", "savedmodel"])
def test_predict_row_and_columnar(servers, reference, backend):
    x, y = images(3, seed=1)
    if backend == "onnx":
        expected = reference["onnx"]("manipulate", x=x, y=1 - y, y_target=y)["x_edited"]
    else:
        expected = reference["savedmodel"](2, "serving_default", x=x, y=1 - y, y_target=y)["x_edited"]
    server = servers[backend]
    status, body = call(
        server,
        "POST",
        "/v1/models/csvae:predict",
        {"instances": [{"x": x[i].tolist(), "y": (1 - y[i]).tolist(), "y_target": y[i].tolist()} for i in range(3)]},
    )
    assert status == 200 and set(body) == {"predictions"}
    np.testing.assert_array_equal(
        np.array(body["predictions"], np.float32), expected
    )  # float32 text round-trips exactly
    status, body = call(
        server,
        "POST",
        "/v1/models/csvae:predict",
        {"signature_name": "manipulate", "inputs": {"x": x.tolist(), "y": (1 - y).tolist(), "y_target": y.tolist()}},
    )
    assert status == 200 and set(body) == {"outputs"}
    np.testing.assert_array_equal(np.array(body["outputs"], np.float32), expected)


@pytest.mark.parametrize("backend", ["onnx", "savedmodel"])
def test_several_outputs_and_composed_signatures(servers, reference, backend):
    """``encode`` has four outputs: per-row objects / an object of tensors. The ONNX
    backend's ``reconstruct`` and ``sample`` (composed from encode/decode.onnx) equal the SavedModel's."""
    x, y = images(2, seed=2)
    client = TFServingClient(servers[backend].url, version=1)
    rows = client.predict([{"x": x[i], "y": y[i]} for i in range(2)], signature_name="encode")
    assert [set(row) for row in rows] == [{"z_mean", "z_log_var", "w_mean", "w_log_var"}] * 2
    columns = client.predict(inputs={"x": x, "y": y}, signature_name="encode")
    expected = reference["savedmodel"](1, "encode", x=x, y=y)
    for name, value in expected.items():
        np.testing.assert_allclose(np.array(columns[name]), value, atol=1e-5)
        np.testing.assert_array_equal(np.array([row[name] for row in rows]), np.array(columns[name]))
    rng = np.random.default_rng(3)
    eps_z, eps_w = rng.standard_normal((2, 4), dtype=np.float32), rng.standard_normal((2, 6), dtype=np.float32)
    sample = client.predict(inputs={"eps_z": eps_z, "eps_w": eps_w, "y": y}, signature_name="sample")
    np.testing.assert_allclose(
        np.array(sample), reference["savedmodel"](1, "sample", eps_z=eps_z, eps_w=eps_w, y=y)["x_sample"], atol=1e-5
    )
    reconstruction = client.predict(inputs={"x": x, "y": y}, signature_name="reconstruct")
    np.testing.assert_allclose(
        np.array(reconstruction), reference["savedmodel"](1, "reconstruct", x=x, y=y)["x_reconstruction"], atol=1e-5
    )


@pytest.mark.parametrize("backend", ["onnx", "savedmodel"])
def test_manipulate_image_b64_in_and_out(servers, reference, backend):
    x, y = images(2, seed=4)
    pngs = [png_of(p) for p in x]
    request = {
        "signature_name": "manipulate_image",
        "instances": [
            {"image_bytes": {"b64": base64.b64encode(p).decode()}, "y": (1 - t).tolist(), "y_target": t.tolist()}
            for p, t in zip(pngs, y)
        ],
    }
    status, body = call(servers[backend], "POST", "/v1/models/csvae:predict", request)
    assert status == 200 and [set(p) for p in body["predictions"]] == [{"b64"}, {"b64"}]
    edited = decode_pngs([base64.b64decode(p["b64"]) for p in body["predictions"]])
    assert edited.shape == (2, SIZE, SIZE, 3)
    if backend == "onnx":
        pixels = np.stack([decode_image(p, (SIZE, SIZE, 3)) for p in pngs])
        expected = decode_pngs(
            [png_of(e) for e in reference["onnx"]("manipulate", x=pixels, y=1 - y, y_target=y)["x_edited"]]
        )
    else:
        expected = decode_pngs(
            reference["savedmodel"](2, "manipulate_image", image_bytes=np.array(pngs, object), y=1 - y, y_target=y)[
                "edited_image_bytes"
            ]
        )
    assert np.abs(edited - expected).max() <= 1  # same pixels but for the last rounding
    # the client, with targets by label name; and the columnar form
    client = TFServingClient(servers[backend].url, label_names=LABELS)
    assert (
        decode_pngs([client.manipulate_image(pngs[0], {"glasses": y[0, 0], "smile": y[0, 1], "facial_hair": y[0, 2]})])[
            0
        ].tolist()
        == edited[0].tolist()
    )
    status, body = call(
        servers[backend],
        "POST",
        "/v1/models/csvae:predict",
        {
            "signature_name": "manipulate_image",
            "inputs": {"image_bytes": [b64(p) for p in pngs], "y": (1 - y).tolist(), "y_target": y.tolist()},
        },
    )
    assert (
        status == 200 and decode_pngs([base64.b64decode(o["b64"]) for o in body["outputs"]]).tolist() == edited.tolist()
    )


def test_versions_side_by_side(savedmodel_server, reference):
    x, y = images(2, seed=5)
    outputs = {}
    for version in (1, 2, None):
        client = TFServingClient(savedmodel_server.url, version=version)
        outputs[version] = np.array(client.predict(inputs={"x": x, "y": 1 - y, "y_target": y}), np.float32)
    np.testing.assert_allclose(
        outputs[1], reference["savedmodel"](1, "manipulate", x=x, y=1 - y, y_target=y)["x_edited"], atol=1e-6
    )
    np.testing.assert_allclose(
        outputs[2], reference["savedmodel"](2, "manipulate", x=x, y=1 - y, y_target=y)["x_edited"], atol=1e-6
    )
    np.testing.assert_array_equal(outputs[None], outputs[2])  # the newest answers without a version
    assert np.abs(outputs[1] - outputs[2]).max() > 1e-3  # two different models
    with pytest.raises(ClientError) as error:
        TFServingClient(savedmodel_server.url, version=3).predict(inputs={"x": x, "y": 1 - y, "y_target": y})
    assert error.value.status == 404 and error.value.message == "Servable not found for request: Specific(csvae, 3)"


def test_version_policy_of_models_config(tmp_path):
    config = tmp_path / "models.config"
    assert backends.version_policy(config, "csvae") == ("latest", (1,))  # TF Serving's default
    for policy, expected in [
        ("all {}", ("all", ())),
        ("latest { num_versions: 2 }", ("latest", (2,))),
        ("specific { versions: 1 versions: 3 }", ("specific", (1, 3))),
    ]:
        config.write_text(
            f'model_config_list {{ config {{ name: "csvae" base_path: "/m" model_version_policy {{ {policy} }} }} }}'
        )
        assert backends.version_policy(config, "csvae") == expected
    assert backends.served_versions([1, 2, 3], ("latest", (2,))) == [2, 3]
    assert backends.served_versions([1, 2, 3], ("specific", (1, 3))) == [1, 3]
    assert backends.version_policy(ROOT / "serving" / "models.config", "csvae") == ("latest", (2,))


# -- Open Inference Protocol v2 ----------------------------------------------------------------------
def test_open_inference_protocol(onnx_server, reference):
    server = onnx_server
    assert call(server, "GET", "/v2/health/live") == (200, {"live": True})
    assert call(server, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert call(server, "GET", "/v2")[1]["name"] == "keras-csvae"
    assert call(server, "GET", "/v2/models/csvae/ready") == (200, {"name": "csvae", "ready": True})
    assert call(server, "GET", "/v2/models/csvae/versions/1") == (
        200,
        {
            "name": "csvae",
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [-1, 16, 16, 3]},
                {"name": "y", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "y_target", "datatype": "FP32", "shape": [-1, 3]},
            ],
            "outputs": [{"name": "x_edited", "datatype": "FP32", "shape": [-1, 16, 16, 3]}],
        },
    )
    x, y = images(2, seed=6)
    request = {
        "id": "r1",
        "inputs": [
            {"name": "x", "shape": [2, 16, 16, 3], "datatype": "FP32", "data": x.ravel().tolist()},
            {"name": "y", "shape": [2, 3], "datatype": "FP32", "data": (1 - y).ravel().tolist()},
            {
                "name": "y_target",
                "shape": [2, 3],
                "datatype": "FP32",
                "data": y.tolist(),
            },  # nested data is accepted too
        ],
    }
    status, body = call(server, "POST", "/v2/models/csvae/infer", request)
    assert status == 200 and set(body) == {"model_name", "model_version", "id", "outputs"}
    assert (body["model_name"], body["model_version"], body["id"]) == ("csvae", "1", "r1")
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("x_edited", "FP32", [2, 16, 16, 3])
    np.testing.assert_array_equal(
        np.array(output["data"], np.float32).reshape(2, 16, 16, 3),
        reference["onnx"]("manipulate", x=x, y=1 - y, y_target=y)["x_edited"],
    )
    # a picture through BYTES (base64 content type), asking for one output
    png = png_of(x[0])
    request = {
        "parameters": {"signature_name": "manipulate_image"},
        "outputs": [{"name": "edited_image_bytes"}],
        "inputs": [
            {
                "name": "image_bytes",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(png).decode()],
                "parameters": {"content_type": "base64"},
            },
            {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": (1 - y[0]).tolist()},
            {"name": "y_target", "shape": [1, 3], "datatype": "FP32", "data": y[0].tolist()},
        ],
    }
    status, body = call(server, "POST", "/v2/models/csvae/versions/1/infer", request)
    assert status == 200 and body["outputs"][0]["parameters"] == {"content_type": "base64"}
    edited = decode_pngs([base64.b64decode(body["outputs"][0]["data"][0])])
    v1 = TFServingClient(server.url).manipulate_image(png, y[0].tolist(), source=(1 - y[0]).tolist())
    assert edited.tolist() == decode_pngs([v1]).tolist()


# -- hostile input -------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _bomb_png() -> bytes:
    """A PNG header claiming 60000x60000 pixels (a decompression bomb), with a tiny IDAT."""
    header = (60000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + _png_chunk(b"IEND", b"")
    )


def _hostile_requests():
    """``(description, method, path, body, expected status)``; bodies are bytes or JSON-able."""
    x, y = images(1, seed=7)
    good_x, good_y = x[0].tolist(), y[0].tolist()
    predict = "/v1/models/csvae:predict"

    def image_request(data):
        return {
            "signature_name": "manipulate_image",
            "instances": [{"image_bytes": data, "y": good_y, "y_target": good_y}],
        }

    nested = b"[" * 5000 + b"]" * 5000
    return [
        ("empty body", "POST", predict, b"", 400),
        ("bad JSON", "POST", predict, b"{instances: [1, 2]", 400),
        ("JSON not an object", "POST", predict, b"[1, 2, 3]", 400),
        ("deeply nested JSON", "POST", predict, b'{"instances": ' + nested + b"}", 400),
        ("NaN literal", "POST", predict, b'{"instances": [{"x": NaN, "y": [0, 0, 0], "y_target": [0, 0, 0]}]}', 400),
        (
            "infinite number",
            "POST",
            predict,
            b'{"inputs": {"x": [[[[1e999]]]], "y": [[0, 0, 0]], "y_target": [[0, 0, 0]]}}',
            400,
        ),
        (
            "number beyond float32",
            "POST",
            predict,
            {"inputs": {"x": (np.ones((1, 16, 16, 3)) * 1e39).tolist(), "y": [good_y], "y_target": [good_y]}},
            400,
        ),
        (
            "integer beyond float32's exact range",
            "POST",
            predict,
            {"inputs": {"x": [good_x], "y": [good_y], "y_target": [[2**40, 0, 0]]}},
            400,
        ),
        ("missing instances and inputs", "POST", predict, {"signature_name": "manipulate"}, 400),
        (
            "both instances and inputs",
            "POST",
            predict,
            {
                "instances": [{"x": good_x, "y": good_y, "y_target": good_y}],
                "inputs": {"x": [good_x], "y": [good_y], "y_target": [good_y]},
            },
            400,
        ),
        ("instances not a list", "POST", predict, {"instances": {"x": good_x}}, 400),
        ("empty instances", "POST", predict, {"instances": []}, 400),
        ("plain list for two inputs", "POST", predict, {"instances": [good_x]}, 400),
        ("missing input in an instance", "POST", predict, {"instances": [{"x": good_x}]}, 400),
        (
            "unknown input in an instance",
            "POST",
            predict,
            {"instances": [{"x": good_x, "y": good_y, "y_target": good_y, "z": 1}]},
            400,
        ),
        ("missing named input (columnar)", "POST", predict, {"inputs": {"x": [good_x]}}, 400),
        (
            "wrong image shape",
            "POST",
            predict,
            {"instances": [{"x": np.zeros((8, 8, 3)).tolist(), "y": good_y, "y_target": good_y}]},
            400,
        ),
        ("wrong label count", "POST", predict, {"instances": [{"x": good_x, "y": good_y, "y_target": [1, 0]}]}, 400),
        (
            "ragged rows",
            "POST",
            predict,
            {"instances": [{"x": good_x, "y": good_y, "y_target": good_y}, {"x": good_x[:3], "y_target": good_y}]},
            400,
        ),
        (
            "strings for floats",
            "POST",
            predict,
            {"instances": [{"x": good_x, "y": good_y, "y_target": ["a", "b", "c"]}]},
            400,
        ),
        (
            "booleans for floats",
            "POST",
            predict,
            {"instances": [{"x": good_x, "y": good_y, "y_target": [True, False, True]}]},
            400,
        ),
        (
            "nulls for floats",
            "POST",
            predict,
            {"instances": [{"x": good_x, "y": good_y, "y_target": [None, 0, 1]}]},
            400,
        ),
        (
            "batch sizes that differ",
            "POST",
            predict,
            {"inputs": {"x": [good_x, good_x], "y": [good_y], "y_target": [good_y]}},
            400,
        ),
        (
            "huge batch",
            "POST",
            predict,
            {"inputs": {"x": [good_x] * 33, "y": [good_y] * 33, "y_target": [good_y] * 33}},
            400,
        ),
        (
            "signature_name not a string",
            "POST",
            predict,
            {"signature_name": 7, "instances": [{"x": good_x, "y": good_y, "y_target": good_y}]},
            400,
        ),
        (
            "unknown signature",
            "POST",
            predict,
            {"signature_name": "nope", "instances": [{"x": good_x, "y": good_y, "y_target": good_y}]},
            400,
        ),
        (
            "unknown model",
            "POST",
            "/v1/models/nope:predict",
            {"instances": [{"x": good_x, "y": good_y, "y_target": good_y}]},
            404,
        ),
        (
            "unknown version",
            "POST",
            "/v1/models/csvae/versions/9:predict",
            {"instances": [{"x": good_x, "y": good_y, "y_target": good_y}]},
            404,
        ),
        (
            "unknown version label",
            "POST",
            "/v1/models/csvae/labels/stable:predict",
            {"instances": [{"x": good_x, "y": good_y, "y_target": good_y}]},
            400,
        ),
        ("version beyond int64", "GET", "/v1/models/csvae/versions/99999999999999999999999", None, 400),
        ("version of 5000 digits", "POST", "/v1/models/csvae/versions/" + "9" * 5000 + ":predict", b"{}", 400),
        ("v2 version not a number", "GET", "/v2/models/csvae/versions/x1", None, 400),
        ("GET on predict", "GET", predict, None, 400),
        ("classify on a predict model", "POST", "/v1/models/csvae:classify", {"examples": []}, 400),
        ("no model name", "GET", "/v1/models", None, 400),
        ("malformed v1 path", "POST", "/v1/foo", b"{}", 400),
        ("unknown path", "GET", "/index.html", None, 404),
        ("not base64", "POST", predict, image_request({"b64": "not base64!!"}), 400),
        ("not a picture", "POST", predict, image_request({"b64": base64.b64encode(b"hello world").decode()}), 400),
        ("truncated PNG", "POST", predict, image_request({"b64": base64.b64encode(png_of(x[0])[:60]).decode()}), 400),
        ("TIFF picture", "POST", predict, image_request({"b64": base64.b64encode(_tiff()).decode()}), 400),
        ("decompression bomb", "POST", predict, image_request({"b64": base64.b64encode(_bomb_png()).decode()}), 400),
        ("number for picture bytes", "POST", predict, image_request(5), 400),
        ("oversized body", "POST", predict, b'{"instances": [' + b"0," * (1 << 20) + b"0]}", 413),
        (
            "v2 wrong datatype",
            "POST",
            "/v2/models/csvae/infer",
            {
                "inputs": [
                    {"name": "x", "shape": [1, 16, 16, 3], "datatype": "INT32", "data": [0] * 768},
                    {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                    {"name": "y_target", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                ]
            },
            400,
        ),
        (
            "v2 data size and shape disagree",
            "POST",
            "/v2/models/csvae/infer",
            {
                "inputs": [
                    {"name": "x", "shape": [1, 16, 16, 3], "datatype": "FP32", "data": [0.5] * 10},
                    {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                    {"name": "y_target", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                ]
            },
            400,
        ),
        (
            "v2 missing input",
            "POST",
            "/v2/models/csvae/infer",
            {
                "inputs": [
                    {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                    {"name": "y_target", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                ]
            },
            400,
        ),
        (
            "v2 unknown output",
            "POST",
            "/v2/models/csvae/infer",
            {
                "outputs": [{"name": "nope"}],
                "inputs": [
                    {"name": "x", "shape": [1, 16, 16, 3], "datatype": "FP32", "data": x.ravel().tolist()},
                    {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                    {"name": "y_target", "shape": [1, 3], "datatype": "FP32", "data": good_y},
                ],
            },
            400,
        ),
        ("v2 unknown model", "POST", "/v2/models/nope/infer", {"inputs": []}, 404),
    ]


def _tiff() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="TIFF")
    return buffer.getvalue()


def raw_response(sock) -> tuple[int, dict | bytes]:
    """Reads one HTTP response from ``sock``: ``(status, JSON or bytes)``."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    payload = response.read()
    try:
        return response.status, json.loads(payload)
    except ValueError:
        return response.status, payload


def _slow_client(server, seconds: float) -> tuple[int, dict]:
    """Sends the headers and half the body, then stalls: the server must give up (408)."""
    body = b'{"instances": [{"x": 1, "y": [0, 0, 0], "y_target": [0, 0, 0]}]}'
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=seconds + 10) as sock:
        sock.sendall(
            b"POST /v1/models/csvae:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        started = time.monotonic()
        answer = raw_response(sock)
    assert time.monotonic() - started < seconds + 5
    return answer


def test_hostile_input_gets_4xx_and_the_server_survives(onnx_server, reference):
    cases = _hostile_requests()
    assert len(cases) >= 25
    for description, method, path, body, expected in cases:
        status, answer = call(onnx_server, method, path, body)
        assert status == expected, (description, status, answer)
        assert (
            isinstance(answer, dict)
            and set(answer) == {"error"}
            and isinstance(answer["error"], str)
            and answer["error"]
        ), description
    # an oversized body announced in Content-Length is refused before it is read
    with socket.create_connection(("127.0.0.1", onnx_server.server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/csvae:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        status, answer = raw_response(sock)
    assert status == 413 and set(answer) == {"error"}
    status, answer = _slow_client(onnx_server, TEST_CONFIG["read_timeout_s"])
    assert status == 408 and "did not arrive" in answer["error"]
    # still right afterwards
    x, y = images(2, seed=8)
    answer = TFServingClient(onnx_server.url).predict(inputs={"x": x, "y": 1 - y, "y_target": y})
    np.testing.assert_array_equal(
        np.array(answer, np.float32), reference["onnx"]("manipulate", x=x, y=1 - y, y_target=y)["x_edited"]
    )
    counts = onnx_server.server.counts
    assert not any(code >= 500 for (_, code) in counts), counts


def _slowed(export_dir, seconds, started=None):
    """The ONNX repository with every batch taking ``seconds`` longer; ``started``
    (a ``threading.Event``) is set when a batch begins."""
    repository = backends.load(export_dir, "onnx", warm_up=False)
    (servable,) = repository.servables()
    run_batch = servable.run_batch

    def slow(signature, requests):
        if started is not None:
            started.set()
        time.sleep(seconds)
        return run_batch(signature, requests)

    servable.run_batch = slow
    return repository


def test_deadline_504_and_full_queue_503(export_dir):
    x, y = images(1, seed=9)
    body = {"inputs": {"x": x.tolist(), "y": (1 - y).tolist(), "y_target": y.tolist()}}
    with ServerThread(_slowed(export_dir, 0.6), ServerConfig(**{**TEST_CONFIG, "timeout_s": 0.2})) as server:
        status, answer = call(server, "POST", "/v1/models/csvae:predict", body)
        assert status == 504 and "Deadline exceeded" in answer["error"]
    started = threading.Event()
    with ServerThread(
        _slowed(export_dir, 0.3, started),
        ServerConfig(**{**TEST_CONFIG, "workers": 1, "max_queue": 2, "batching": False}),
    ) as server:
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(call(server, "POST", "/v1/models/csvae:predict", body)))
            for _ in range(8)
        ]
        # The worker busy with the first request before the other seven arrive: then
        # one runs, two wait and the rest are refused, whatever the scheduling.
        threads[0].start()
        assert started.wait(30)
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join(30)
        codes = sorted(status for status, _ in results)
        assert codes.count(200) >= 3 and 503 in codes and set(codes) <= {200, 503}, codes
        assert all("queue" in answer["error"] for status, answer in results if status == 503)
        assert call(server, "POST", "/v1/models/csvae:predict", body)[0] == 200


# -- concurrency ------------------------------------------------------------------------------------------
async def _load(url: str, requests: list, clients: int) -> list:
    import aiohttp

    answers = [None] * len(requests)
    queue = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)

    async def client(session):
        while not queue.empty():
            i = queue.get_nowait()
            async with session.post(
                url, data=json.dumps(requests[i]).encode(), timeout=aiohttp.ClientTimeout(total=60)
            ) as response:
                answers[i] = (response.status, await response.json())

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return answers


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_clients_get_their_own_answers(export_dir, reference, batching):
    """208 requests from 16 concurrent clients, each with its own input (float
    tensors and PNGs mixed): every answer equals onnxruntime's on that input
    alone. Every 26th request carries a broken picture: it alone gets a 400,
    whatever batch it landed in."""
    n = 208
    x, y = images(n, seed=10)
    requests = []
    for i in range(n):
        if i % 26 == 4:
            requests.append(
                {
                    "signature_name": "manipulate_image",
                    "instances": [{"image_bytes": b64(b"broken"), "y": (1 - y[i]).tolist(), "y_target": y[i].tolist()}],
                }
            )
        elif i % 2:
            requests.append({"instances": [{"x": x[i].tolist(), "y": (1 - y[i]).tolist(), "y_target": y[i].tolist()}]})
        else:
            requests.append(
                {
                    "signature_name": "manipulate_image",
                    "instances": [
                        {"image_bytes": b64(png_of(x[i])), "y": (1 - y[i]).tolist(), "y_target": y[i].tolist()}
                    ],
                }
            )
    with ServerThread(
        backends.load(export_dir, "onnx"), ServerConfig(**{**TEST_CONFIG, "batching": batching})
    ) as server:
        answers = asyncio.run(
            asyncio.wait_for(_load(server.url + "/v1/models/csvae:predict", requests, clients=16), 120)
        )
        stats = server.server.batcher.stats
    for i, (status, answer) in enumerate(answers):
        if i % 26 == 4:
            assert status == 400 and "image_bytes[0]: not a PNG/JPEG/GIF/BMP picture" in answer["error"]
            continue
        assert status == 200, answer
        pixels = np.stack([decode_image(png_of(x[i]), (SIZE, SIZE, 3))]) if i % 2 == 0 else x[i : i + 1]
        expected = reference["onnx"]("manipulate", x=pixels, y=1 - y[i : i + 1], y_target=y[i : i + 1])["x_edited"]
        if i % 2:
            np.testing.assert_allclose(np.array(answer["predictions"], np.float32), expected, rtol=0, atol=1e-6)
        else:
            edited = decode_pngs([base64.b64decode(answer["predictions"][0]["b64"])])
            assert np.abs(edited - decode_pngs([png_of(expected[0])])).max() <= 1
    assert stats.requests == n
    if batching:
        assert stats.batches < n and stats.mean_batch_rows > 1.0  # requests did share model calls
    else:
        assert stats.batches == n


# -- csvae serve as a process ----------------------------------------------------------------------------------
def _start_serve(export_dir, *args):
    process = subprocess.Popen(
        csvae_command("serve", "--export", export_dir, "--port", 0, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"csvae serve exited: {process.wait(10)}\n{''.join(lines)}{process.stderr.read()}")
        lines.append(line)
        match = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return process, f"http://127.0.0.1:{match.group(1)}", lines
    process.kill()
    raise AssertionError("csvae serve did not start within 60 s")


def test_csvae_serve_sigterm_finishes_requests_in_flight(export_dir, reference):
    """``csvae serve --backend onnx`` starts without TensorFlow (it cannot import it:
    ``csvae_command``) in well under a second after imports; on SIGTERM it stops
    listening but answers the request in flight."""
    process, url, lines = _start_serve(export_dir, "--backend", "onnx")
    try:
        load_seconds = float(re.search(r"in ([\d.]+) s", lines[0]).group(1))
        assert load_seconds < 2.0, lines  # typically ~0.2 s on a quiet machine
        rss_mb = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{process.pid}/status").read_text()).group(1)) / 1024
        assert rss_mb < 400, rss_mb
        assert TFServingClient(url).status()["model_version_status"][0]["state"] == "AVAILABLE"
        x, y = images(1, seed=11)
        body = json.dumps({"inputs": {"x": x.tolist(), "y": (1 - y).tolist(), "y_target": y.tolist()}}).encode()
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /v1/models/csvae:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:100]
            )
            deadline = time.monotonic() + 10
            while "csvae_serving_in_flight 2" not in call(url, "GET", "/monitoring/prometheus/metrics")[1].decode():
                assert time.monotonic() < deadline, "the request never started"
                time.sleep(0.02)  # until the server handles it (the metrics request is the other one)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            with pytest.raises(OSError):  # no new connections once SIGTERM arrived
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            sock.sendall(body[100:])
            status, answer = raw_response(sock)
        assert status == 200, answer
        np.testing.assert_array_equal(
            np.array(answer["outputs"], np.float32),
            reference["onnx"]("manipulate", x=x, y=1 - y, y_target=y)["x_edited"],
        )
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Stopped." in out, out


def test_csvae_serve_user_errors(tmp_path, capsys):
    from serving import command

    for args, message in [
        (["--export", tmp_path / "nope"], "does not exist"),
        (["--export", tmp_path, "--max-batch-size", "0"], "--max-batch-size must be ≥ 1"),
    ]:
        assert command.main([str(a) for a in args]) == 2
        error = capsys.readouterr().err
        assert error.startswith("csvae serve: error: ") and message in error and error.count("\n") == 1
    (tmp_path / "metadata.json").write_text("{}")
    with pytest.raises(backends.LoadError, match="no ONNX export"):
        backends.load(tmp_path, "onnx")
    with pytest.raises(backends.LoadError, match="no SavedModel"):
        backends.load(tmp_path, "savedmodel")


# -- the real TF Serving -------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_start_tf_serving_script_without_the_binary(export_dir):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", ROOT / "serving" / "start_tf_serving.sh", export_dir],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    if shutil.which("tensorflow_model_server", path=env["PATH"]):
        pytest.skip("tensorflow_model_server is installed in /usr/bin: the missing-binary message cannot be shown")
    assert (
        result.returncode == 127
        and "tensorflow_model_server is not installed" in result.stderr
        and "csvae serve" in result.stderr
    )


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="tensorflow_model_server is not on PATH (no Debian/PyPI package; see the README's "
    "'Production: TensorFlow Serving'): real TF Serving contract test skipped",
)
def test_real_tf_serving_with_the_same_client(export_dir, reference):
    rest, grpc = _free_port(), _free_port()
    process = subprocess.Popen(
        ["bash", ROOT / "serving" / "start_tf_serving.sh", export_dir, str(rest), str(grpc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = TFServingClient(f"http://127.0.0.1:{rest}", timeout=10)
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.status()["model_version_status"][0]["state"] == "AVAILABLE":
                    break
            except (OSError, ClientError):
                pass
            assert time.monotonic() < deadline and process.poll() is None, "TF Serving did not load the model"
            time.sleep(0.5)
        assert {s["version"] for s in client.status()["model_version_status"]} == {"1", "2"}
        assert set(client.signatures()) >= SIGNATURES
        x, y = images(2, seed=12)
        for version in (1, 2):
            answer = TFServingClient(client.url, version=version).predict(inputs={"x": x, "y": 1 - y, "y_target": y})
            np.testing.assert_allclose(
                np.array(answer),
                reference["savedmodel"](version, "manipulate", x=x, y=1 - y, y_target=y)["x_edited"],
                atol=1e-5,
            )
        assert decode_pngs([client.manipulate_image(png_of(x[0]), y[0].tolist())]).shape == (1, SIZE, SIZE, 3)
        with pytest.raises(ClientError) as error:
            client.predict(inputs={"x": x}, signature_name="nope")
        assert error.value.status == 400
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


# -- deployment files ----------------------------------------------------------------------------------------
def _config_values(text: str) -> list[str]:
    """A text-proto file's content without comments and whitespace, for comparison."""
    return re.sub(r"\s+", "", re.sub(r"#[^\n]*", "", text))


def test_deployment_files_agree():
    import yaml

    serving = ROOT / "serving"
    compose = yaml.safe_load((serving / "docker-compose.yml").read_text())["services"]["tf-serving"]
    assert (
        "--enable_batching" in compose["command"]
        and "--batching_parameters_file=/config/batching_parameters.txt" in compose["command"]
    )
    assert compose["ports"][0].startswith("127.0.0.1:8501:")
    config_map, deployment = list(yaml.safe_load_all((serving / "k8s" / "deployment.yaml").read_text()))
    service = yaml.safe_load((serving / "k8s" / "service.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/v1/models/csvae", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8501, "grpc": 8500}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    # the ConfigMap carries the same settings as the commented files
    assert _config_values(config_map["data"]["batching_parameters.txt"]) == _config_values(
        (serving / "batching_parameters.txt").read_text()
    )
    assert _config_values(config_map["data"]["models.config"]) == _config_values(
        (serving / "models.config").read_text()
    )
    params = _config_values((serving / "batching_parameters.txt").read_text())
    sizes = [int(n) for n in re.findall(r"allowed_batch_sizes:(\d+)", params)]
    assert sizes[-1] == int(re.search(r"max_batch_size\{value:(\d+)\}", params).group(1)) == 32
