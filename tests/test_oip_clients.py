"""Open Inference Protocol v2 with the stock clients: ``tritonclient.http`` and
the KServe SDK's ``InferenceRESTClient``, against ``csvae serve`` on both backends.

Reuses ``test_serving``'s export (a tiny 16x16x3 CSVAE, SavedModel versions 1
and 2) and servers. Every request is built from the metadata each v2 model
publishes (names, datatypes, shapes), never from a list of input names, so a
signature that gains an input is tested as it is. The reference answer for
each request is the same server's TF Serving REST v1 answer on the same
values, which ``test_serving`` checks against onnxruntime and TensorFlow.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json

import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from serving import backends
from serving.client import TFServingClient, b64
from serving.server import ServerConfig, ServerThread, v2_name
from test_serving import SIGNATURES, SIZE, TEST_CONFIG, call, decode_pngs, images, png_of, shared_export

BACKENDS = ("onnx", "savedmodel")
V2_NAMES = {v2_name("csvae", s): s for s in SIGNATURES}
BATCH = 2


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory)


@pytest.fixture(scope="module")
def servers(export_dir):
    with ServerThread(backends.load(export_dir, "onnx"), ServerConfig(**TEST_CONFIG)) as onnx, \
            ServerThread(backends.load(export_dir, "savedmodel"), ServerConfig(**TEST_CONFIG)) as savedmodel:
        yield {"onnx": onnx, "savedmodel": savedmodel}


def example_inputs(metadata: dict, seed: int) -> dict[str, np.ndarray]:
    """Values for every input a v2 model declares: float32 in [0, 1) at its
    shape (batch ``BATCH``), raw PNG bytes for BYTES inputs."""
    rng = np.random.default_rng(seed)
    values = {}
    for spec in metadata["inputs"]:
        shape = [BATCH if d == -1 else d for d in spec["shape"]]
        if spec["datatype"] == "BYTES":
            pictures, _ = images(int(np.prod(shape)), seed=seed)
            array = np.empty(len(pictures), dtype=object)
            array[:] = [png_of(p) for p in pictures]
            values[spec["name"]] = array.reshape(shape)
        else:
            assert spec["datatype"] == "FP32", spec
            values[spec["name"]] = rng.random(shape, dtype=np.float32)
    return values


def v1_answer(url: str, signature: str, values: dict) -> dict[str, np.ndarray]:
    """The same request through TF Serving REST v1 (columnar), as arrays (PNG outputs as bytes)."""
    inputs = {name: [b64(v) for v in value] if value.dtype == object else value for name, value in values.items()}
    outputs = TFServingClient(url).predict(inputs=inputs, signature_name=signature)
    if not isinstance(outputs, dict):  # one output: the tensor itself
        (output,) = [spec for spec in TFServingClient(url).signatures()[signature]["outputs"]]
        outputs = {output: outputs}
    return {name: np.array([base64.b64decode(v["b64"]) for v in value], object) if value and isinstance(value[0], dict) else np.array(value, np.float32)
            for name, value in outputs.items()}


def assert_same_answer(name: str, got: np.ndarray, expected: np.ndarray):
    if expected.dtype == object:  # PNGs: the same picture, up to the last rounding of another batch's arithmetic
        assert got.shape == expected.shape, name
        assert np.abs(decode_pngs(list(got.ravel())) - decode_pngs(list(expected.ravel()))).max() <= 1, name
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5, err_msg=name)


# -- tritonclient.http -------------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_tritonclient_discovers_and_runs_every_signature(servers, backend, binary):
    """Only tritonclient's public API: the repository index lists every signature
    as a v2 model; each has metadata, is ready and answers ``infer``, with the
    client's default binary tensors (raw PNG bytes for the picture) or with
    ``binary_data=False`` (JSON; pictures as base64 text, since raw picture
    bytes are not UTF-8). Answers equal the server's v1 answers."""
    server = servers[backend]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=60.0)
    versions = {"onnx": {"1"}, "savedmodel": {"1", "2"}}[backend]
    index = client.get_model_repository_index()
    assert {(entry["name"], entry["version"]) for entry in index} == {(n, v) for n in V2_NAMES for v in versions}
    assert {entry["state"] for entry in index} == {"READY"}
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    for seed, (name, signature) in enumerate(sorted(V2_NAMES.items())):
        metadata = client.get_model_metadata(name)
        assert metadata["name"] == name and set(metadata["versions"]) == versions
        assert client.is_model_ready(name)
        values = example_inputs(metadata, seed)
        inputs = []
        for spec in metadata["inputs"]:
            value = values[spec["name"]]
            if spec["datatype"] == "BYTES" and not binary:
                value = np.array([base64.b64encode(v) for v in value.ravel()], object).reshape(value.shape)
            tensor = triton.InferInput(spec["name"], list(value.shape), spec["datatype"])
            tensor.set_data_from_numpy(value, binary_data=binary)
            inputs.append(tensor)
        # Default: no outputs named (tritonclient then asks for all of them in binary).
        outputs = None if binary else [triton.InferRequestedOutput(o["name"], binary_data=False) for o in metadata["outputs"]]
        result = client.infer(name, inputs, outputs=outputs, request_id=f"r{seed}")
        response = result.get_response()
        assert response["model_name"] == name and response["id"] == f"r{seed}"
        assert all(("data" in o) != binary for o in response["outputs"]), response["outputs"]
        expected = v1_answer(server.url, signature, values)
        assert {o["name"] for o in metadata["outputs"]} == set(expected)
        for output in metadata["outputs"]:
            got = result.as_numpy(output["name"])
            if output["datatype"] == "BYTES" and not binary:  # JSON: base64 text, as the output's content_type says
                got = np.array([base64.b64decode(v) for v in got.ravel()], object).reshape(got.shape)
            assert_same_answer(output["name"], got, expected[output["name"]])
    client.close()


def test_tritonclient_versions_and_unknown_models(servers):
    server = servers["savedmodel"]
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    x, y = images(1, seed=40)
    inputs = []
    for name, value in (("x", x), ("y_target", y)):
        inputs.append(triton.InferInput(name, list(value.shape), "FP32"))
        inputs[-1].set_data_from_numpy(value)
    answers = {v: client.infer("csvae.manipulate", inputs, model_version=v).as_numpy("x_edited") for v in ("1", "2")}
    for version, answer in answers.items():
        v1 = TFServingClient(server.url, version=int(version)).predict(inputs={"x": x, "y_target": y}, signature_name="manipulate")
        np.testing.assert_allclose(answer, np.array(v1, np.float32), atol=1e-6)
    assert np.abs(answers["1"] - answers["2"]).max() > 1e-5  # two different models behind one name
    np.testing.assert_array_equal(client.infer("csvae", inputs).as_numpy("x_edited"), answers["2"])  # the newest by default
    for name in ("nope", "csvae.nope", "csvae.manipulate.x"):
        with pytest.raises(InferenceServerException) as error:
            client.get_model_metadata(name)
        assert error.value.status() == "404" and "is not served" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.load_model("csvae")
    assert error.value.status() == "400" and "not supported" in error.value.message()
    client.close()


# -- KServe SDK ------------------------------------------------------------------------------------------------
async def _kserve(url: str):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=60))
    answers = {}
    try:
        for name in ("csvae", "csvae.manipulate_image"):
            assert await client.is_model_ready(url, name)
            metadata = call(url, "GET", f"/v2/models/{name}")[1]
            values = example_inputs(metadata, seed=41)
            inputs = []
            for spec in metadata["inputs"]:
                tensor = InferInput(spec["name"], list(values[spec["name"]].shape), spec["datatype"])
                tensor.set_data_from_numpy(values[spec["name"]])  # binary_data=True: the SDK's default
                inputs.append(tensor)
            response = await client.infer(url, InferRequest(model_name=name, infer_inputs=inputs), model_name=name)
            answers[name] = (metadata, values, {o.name: o.as_numpy() for o in response.outputs})
    finally:
        await client.close()
    return answers


@pytest.mark.parametrize("backend", BACKENDS)
def test_kserve_inference_rest_client(servers, backend):
    """``InferenceRESTClient`` (protocol v2, binary inputs by default) gets answers
    from the default model and from the picture model (raw PNG bytes in; the
    SDK asks for JSON outputs, so the PNG comes back as base64 text)."""
    url = servers[backend].url
    answers = asyncio.run(asyncio.wait_for(_kserve(url), 120))
    for name, (metadata, values, outputs) in answers.items():
        expected = v1_answer(url, V2_NAMES[name], values)
        assert set(outputs) == set(expected)
        for output in metadata["outputs"]:
            got = outputs[output["name"]]
            if output["datatype"] == "BYTES":
                got = np.array([base64.b64decode(v) for v in got.ravel()], object).reshape(got.shape)
            assert_same_answer(output["name"], got, expected[output["name"]])


# -- malformed binary framing -------------------------------------------------------------------------------------
def _framed(header: dict, *blobs: bytes, header_length=None) -> tuple[bytes, dict]:
    text = json.dumps(header).encode()
    length = len(text) if header_length is None else header_length
    return text + b"".join(blobs), {"Inference-Header-Content-Length": str(length), "Content-Type": "application/octet-stream"}


def _malformed_requests():
    x, y = images(1, seed=42)
    xb, yb = x.astype("<f4").tobytes(), y.astype("<f4").tobytes()

    def fp32(name, array, size=None, **extra):
        raw = array.astype("<f4").tobytes()
        return {"name": name, "shape": list(array.shape), "datatype": "FP32", "parameters": {"binary_data_size": len(raw) if size is None else size}, **extra}

    good = [fp32("x", x), fp32("y_target", y)]
    png = png_of(x[0])
    image_item = {"name": "image_bytes", "shape": [1], "datatype": "BYTES"}
    nan = y.copy()
    nan[0, 0] = np.nan
    return [
        ("header length beyond the body", *_framed({"inputs": good}, xb, yb, header_length=10 ** 6)),
        ("header length not a number", *_framed({"inputs": good}, xb, yb, header_length="12abc")),
        ("header length cuts the JSON", *_framed({"inputs": good}, xb, yb, header_length=20)),
        ("byte count does not match the shape", *_framed({"inputs": [fp32("x", x, size=len(xb) - 4), fp32("y_target", y)]}, xb[:-4], yb)),
        ("sizes add up to less than the body", *_framed({"inputs": good}, xb, yb, b"\0" * 8)),
        ("sizes add up to more than the body", *_framed({"inputs": good}, xb, yb[:-4])),
        ("unknown datatype", *_framed({"inputs": [{**good[0], "datatype": "FP8"}, good[1]]}, xb, yb)),
        ("datatype other than the model's", *_framed({"inputs": [{**good[0], "datatype": "INT32"}, good[1]]}, xb, yb)),
        ("negative binary_data_size", *_framed({"inputs": [fp32("x", x, size=-4), good[1]]}, xb, yb)),
        ("both data and binary_data_size", *_framed({"inputs": [{**good[0], "data": [0.5]}, good[1]]}, xb, yb)),
        ("NaN in binary data", *_framed({"inputs": [good[0], fp32("y_target", nan)]}, xb, nan.astype("<f4").tobytes())),
        ("binary data without the header", json.dumps({"inputs": good}).encode() + xb + yb, {}),
        ("shared memory", *_framed({"inputs": [{**good[0], "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}}, good[1]]}, yb)),
        ("classification output", *_framed({"inputs": good, "outputs": [{"name": "x_edited", "parameters": {"classification": 3}}]}, xb, yb)),
        ("BYTES length prefix beyond the data", "/v2/models/csvae.manipulate_image/infer",
         *_framed({"inputs": [{**image_item, "parameters": {"binary_data_size": 4 + 10}}, fp32("y_target", y)]}, (len(png)).to_bytes(4, "little") + png[:10], yb)),
        ("BYTES elements fewer than the shape", "/v2/models/csvae.manipulate_image/infer",
         *_framed({"inputs": [{**image_item, "shape": [2], "parameters": {"binary_data_size": 4 + len(png)}}, fp32("y_target", np.repeat(y, 2, 0))]},
                  len(png).to_bytes(4, "little") + png, np.repeat(y, 2, 0).astype("<f4").tobytes())),
        ("BYTES not a picture", "/v2/models/csvae.manipulate_image/infer",
         *_framed({"inputs": [{**image_item, "parameters": {"binary_data_size": 9}}, fp32("y_target", y)]}, (5).to_bytes(4, "little") + b"hello", yb)),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_binary_requests_get_400_and_the_server_survives(servers, backend):
    server = servers[backend]
    cases = [(c[0], "/v2/models/csvae/infer", *c[1:]) if len(c) == 3 else c for c in _malformed_requests()]
    for description, path, body, headers in cases:
        status, answer = call(server, "POST", path, body, headers)
        assert status == 400, (description, status, answer)
        assert isinstance(answer, dict) and set(answer) == {"error"} and answer["error"], description
    assert not any(code >= 500 for (_, code) in server.server.counts), server.server.counts
    # still right afterwards, on the same connection pool
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    x, y = images(2, seed=43)
    inputs = [triton.InferInput("x", list(x.shape), "FP32"), triton.InferInput("y_target", list(y.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(y)
    got = client.infer("csvae", inputs).as_numpy("x_edited")
    np.testing.assert_allclose(got, v1_answer(server.url, "serving_default", {"x": x, "y_target": y})["x_edited"], atol=1e-5)
    client.close()


def test_binary_and_json_outputs_mixed(servers):
    """Per-output ``binary_data`` wins over ``binary_data_output``; the binary part
    holds exactly the binary outputs, in the order asked."""
    x, y = images(1, seed=44)
    header = {
        "parameters": {"binary_data_output": True},
        "inputs": [{"name": "x", "shape": [1, SIZE, SIZE, 3], "datatype": "FP32", "data": x.ravel().tolist()},
                   {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": y.ravel().tolist()}],
        "outputs": [{"name": "w_mean"}, {"name": "z_mean", "parameters": {"binary_data": False}}, {"name": "z_log_var"}],
    }
    connection = http.client.HTTPConnection("127.0.0.1", servers["onnx"].server.port, timeout=30)
    connection.request("POST", "/v2/models/csvae.encode/infer", body=json.dumps(header))
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 200 and response.getheader("Content-Type") == "application/octet-stream"
    header_length = int(response.getheader("Inference-Header-Content-Length"))
    assert json.loads(body[:header_length])["model_name"] == "csvae.encode"
    result = triton.InferResult.from_response_body(body, header_length=header_length)
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["w_mean", "z_mean", "z_log_var"]
    assert ["data" in o for o in outputs] == [False, True, False]
    expected = TFServingClient(servers["onnx"].url).predict(inputs={"x": x, "y": y}, signature_name="encode")
    for name in ("w_mean", "z_mean", "z_log_var"):
        np.testing.assert_allclose(result.as_numpy(name), np.array(expected[name], np.float32), atol=1e-6)


# -- metrics ------------------------------------------------------------------------------------------------------
def test_metrics_label_errors_by_api(export_dir):
    """Requests that fail to route are counted under the API their path names."""
    requests = [
        ("GET", "/v1/models/csvae", 200), ("GET", "/v1/models/nope", 404), ("POST", "/v1/foo", 400),
        ("GET", "/v2/models/csvae", 200), ("GET", "/v2/models/nope", 404), ("GET", "/v2/models/csvae/versions/x", 400),
        ("GET", "/v2/models/nope", 404), ("GET", "/index.html", 404),
    ]
    with ServerThread(backends.load(export_dir, "onnx", warm_up=False), ServerConfig(**TEST_CONFIG)) as server:
        for method, path, status in requests:
            assert call(server, method, path, b"{}" if method == "POST" else None)[0] == status, path
        status, text = call(server, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    counted = {(s.labels["api"], s.labels["code"]): s.value for s in families["csvae_serving_requests"].samples if s.name.endswith("_total")}
    assert counted == {("v1", "200"): 1, ("v1", "404"): 1, ("v1", "400"): 1, ("v2", "200"): 1, ("v2", "404"): 2, ("v2", "400"): 1, ("other", "404"): 1}
    assert families["csvae_serving_in_flight"].samples[0].value == 1  # the scrape itself
    assert {"csvae_serving_batches", "csvae_serving_batched_rows", "csvae_serving_queue_waiting"} <= set(families)


# -- camera photos through the picture signature ------------------------------------------------------------------
def test_camera_photos_on_both_backends(servers, export_dir):
    """A 20 MP JPEG (over the former 16.7 MP limit) and an EXIF-rotated one, as raw
    bytes: both backends edit the upright, reduced picture that ``edge.decode_image``
    makes (the SavedModel gets it as a PNG), as onnxruntime does on it directly."""
    from PIL import Image
    import io

    from keras_csvae import edge

    exif = Image.Exif()
    exif[edge.EXIF_ORIENTATION] = 6
    photos = []
    for size, extra in (((5472, 3648), {}), ((96, 48), {"exif": exif.tobytes()})):
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[:, : size[0] // 2] = (220, 40, 40)
        pixels[:, size[0] // 2 :] = (40, 40, 220)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, **extra)
        photos.append(buffer.getvalue())
    y = np.array([[1, 0, 0], [0, 1, 1]], np.float32)
    decoded = np.stack([edge.decode_image(p, (SIZE, SIZE, 3)) for p in photos])
    (edited,) = edge.onnx_session(export_dir / "onnx" / "manipulate.onnx").run(None, {"x": decoded, "y_target": y})
    expected = decode_pngs([edge.encode_png(e) for e in edited])
    for backend in BACKENDS:
        client = triton.InferenceServerClient(servers[backend].url.removeprefix("http://"))
        inputs = [triton.InferInput("image_bytes", [2], "BYTES"), triton.InferInput("y_target", [2, 3], "FP32")]
        inputs[0].set_data_from_numpy(np.array(photos, object))
        inputs[1].set_data_from_numpy(y)
        answer = client.infer("csvae.manipulate_image", inputs, model_version="1").as_numpy("edited_image_bytes")
        assert np.abs(decode_pngs(list(answer)) - expected).max() <= 1, backend
        client.close()
    # The edits of an untrained model barely depend on their input, so check what
    # the SavedModel's graph is given: the upright picture (red on top), at the
    # model's size; a picture already as stored goes unchanged.
    given = backends.graph_pictures(np.array(photos + [png_of(decoded[0])], object), (SIZE, SIZE, 3))
    upright = decode_pngs([given[1]])[0]
    assert upright.shape == (SIZE, SIZE, 3) and upright[:4, :, 0].mean() > 200 and upright[-4:, :, 2].mean() > 200
    assert decode_pngs([given[0]]).shape == (1, SIZE, SIZE, 3) and given[2] == png_of(decoded[0])
