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
from test_serving import SIGNATURES, SIZE, TEST_CONFIG, call, decode_pngs, images, png_of, shared_export
from tritonclient.utils import InferenceServerException

from serving import backends
from serving.client import TFServingClient, b64
from serving.server import ServerConfig, ServerThread, v2_name

BACKENDS = ("onnx", "savedmodel")
V2_NAMES = {v2_name("csvae", s): s for s in SIGNATURES}
BATCH = 2


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory)


@pytest.fixture(scope="module")
def servers(export_dir):
    with (
        ServerThread(backends.load(export_dir, "onnx"), ServerConfig(**TEST_CONFIG)) as onnx,
        ServerThread(backends.load(export_dir, "savedmodel"), ServerConfig(**TEST_CONFIG)) as savedmodel,
    ):
        yield {"onnx": onnx, "savedmodel": savedmodel}


def metadata_of(url: str, name: str) -> dict:
    status, metadata = call(url, "GET", f"/v2/models/{name}")
    assert status == 200, metadata
    return metadata


def example_inputs(metadata: dict, seed: int, batch: int = BATCH, pictures=None) -> dict[str, np.ndarray]:
    """Values for every input a v2 model declares: float32 in [0, 1) at its
    shape, raw PNG bytes (or ``pictures``) for BYTES inputs."""
    rng = np.random.default_rng(seed)
    values = {}
    for spec in metadata["inputs"]:
        shape = [batch if d == -1 else d for d in spec["shape"]]
        if spec["datatype"] == "BYTES":
            if pictures is None:
                faces, _ = images(int(np.prod(shape)), seed=seed)
                pictures = [png_of(p) for p in faces]
            array = np.empty(len(pictures), dtype=object)
            array[:] = pictures
            values[spec["name"]] = array.reshape(shape)
        else:
            assert spec["datatype"] == "FP32", spec
            values[spec["name"]] = rng.random(shape, dtype=np.float32)
    return values


def triton_inputs(metadata: dict, values: dict, binary: bool = True) -> list:
    inputs = []
    for spec in metadata["inputs"]:
        tensor = triton.InferInput(spec["name"], list(values[spec["name"]].shape), spec["datatype"])
        tensor.set_data_from_numpy(values[spec["name"]], binary_data=binary)
        inputs.append(tensor)
    return inputs


def v1_answer(url: str, signature: str, values: dict, version: int | None = None) -> dict[str, np.ndarray]:
    """The same request through TF Serving REST v1 (columnar), as arrays (PNG outputs as bytes)."""
    inputs = {name: [b64(v) for v in value] if value.dtype == object else value for name, value in values.items()}
    client = TFServingClient(url, version=version)
    outputs = client.predict(inputs=inputs, signature_name=signature)
    if not isinstance(outputs, dict):  # one output: the tensor itself
        (output,) = [spec for spec in client.signatures()[signature]["outputs"]]
        outputs = {output: outputs}
    return {
        name: np.array([base64.b64decode(v["b64"]) for v in value], object)
        if value and isinstance(value[0], dict)
        else np.array(value, np.float32)
        for name, value in outputs.items()
    }


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
        sent = dict(values)
        if not binary:  # JSON: pictures as base64 text
            for spec in metadata["inputs"]:
                if spec["datatype"] == "BYTES":
                    value = values[spec["name"]]
                    sent[spec["name"]] = np.array([base64.b64encode(v) for v in value.ravel()], object).reshape(
                        value.shape
                    )
        inputs = triton_inputs(metadata, sent, binary)
        # Default: no outputs named (tritonclient then asks for all of them in binary).
        outputs = (
            None if binary else [triton.InferRequestedOutput(o["name"], binary_data=False) for o in metadata["outputs"]]
        )
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
    metadata = metadata_of(server.url, "csvae.manipulate")
    (output,) = [o["name"] for o in metadata["outputs"]]
    values = example_inputs(metadata, seed=40, batch=1)
    inputs = triton_inputs(metadata, values)
    answers = {v: client.infer("csvae.manipulate", inputs, model_version=v).as_numpy(output) for v in ("1", "2")}
    for version, answer in answers.items():
        np.testing.assert_allclose(
            answer, v1_answer(server.url, "manipulate", values, version=int(version))[output], atol=1e-6
        )
    assert np.abs(answers["1"] - answers["2"]).max() > 1e-5  # two different models behind one name
    np.testing.assert_array_equal(client.infer("csvae", inputs).as_numpy(output), answers["2"])  # the newest by default
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
            metadata = metadata_of(url, name)
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
    return text + b"".join(blobs), {
        "Inference-Header-Content-Length": str(length),
        "Content-Type": "application/octet-stream",
    }


def _binary_items(metadata: dict, values: dict) -> tuple[list[dict], list[bytes]]:
    """Every input of ``values`` as a binary tensor: the JSON items and their raw bytes."""
    items, blobs = [], []
    for spec in metadata["inputs"]:
        value = values[spec["name"]]
        if spec["datatype"] == "BYTES":
            raw = b"".join(len(v).to_bytes(4, "little") + v for v in value.ravel())
        else:
            raw = value.astype("<f4").tobytes()
        items.append(
            {
                "name": spec["name"],
                "shape": list(value.shape),
                "datatype": spec["datatype"],
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        blobs.append(raw)
    return items, blobs


def _malformed_requests(default: dict, picture: dict):
    """``(description, path, body, headers)`` of badly framed binary requests, built
    from the metadata of the default model and of the picture model."""
    path, picture_path = f"/v2/models/{default['name']}/infer", f"/v2/models/{picture['name']}/infer"
    items, blobs = _binary_items(default, example_inputs(default, seed=42, batch=1))
    first, rest = items[0], items[1:]
    size = first["parameters"]["binary_data_size"]
    nan = np.full(int(np.prod(first["shape"])), np.nan, "<f4").tobytes()
    png = png_of(images(1, seed=42)[0][0])
    picture_inputs = [s for s in picture["inputs"]]
    (bytes_index,) = [i for i, s in enumerate(picture_inputs) if s["datatype"] == "BYTES"]

    def with_picture(element: bytes, shape=(1,)):
        """The picture model's request with ``element`` as the BYTES input's data."""
        p_items, p_blobs = _binary_items(
            picture, example_inputs(picture, seed=43, batch=shape[0], pictures=[png] * shape[0])
        )
        p_items[bytes_index] = {
            **p_items[bytes_index],
            "shape": list(shape),
            "parameters": {"binary_data_size": len(element)},
        }
        p_blobs[bytes_index] = element
        return _framed({"inputs": p_items}, *p_blobs)

    return [
        ("header length beyond the body", path, *_framed({"inputs": items}, *blobs, header_length=10**6)),
        ("header length not a number", path, *_framed({"inputs": items}, *blobs, header_length="12abc")),
        ("header length cuts the JSON", path, *_framed({"inputs": items}, *blobs, header_length=20)),
        (
            "byte count does not match the shape",
            path,
            *_framed(
                {"inputs": [{**first, "parameters": {"binary_data_size": size - 4}}, *rest]}, blobs[0][:-4], *blobs[1:]
            ),
        ),
        ("sizes add up to less than the body", path, *_framed({"inputs": items}, *blobs, b"\0" * 8)),
        ("sizes add up to more than the body", path, *_framed({"inputs": items}, *blobs[:-1], blobs[-1][:-4])),
        ("unknown datatype", path, *_framed({"inputs": [{**first, "datatype": "FP8"}, *rest]}, *blobs)),
        (
            "datatype other than the model's",
            path,
            *_framed({"inputs": [{**first, "datatype": "INT32"}, *rest]}, *blobs),
        ),
        (
            "a huge dimension in the shape",
            path,
            *_framed({"inputs": [{**first, "shape": [1, 2**62, *first["shape"][2:]]}, *rest]}, *blobs),
        ),
        (
            "negative binary_data_size",
            path,
            *_framed({"inputs": [{**first, "parameters": {"binary_data_size": -4}}, *rest]}, *blobs),
        ),
        ("both data and binary_data_size", path, *_framed({"inputs": [{**first, "data": [0.5]}, *rest]}, *blobs)),
        ("NaN in binary data", path, *_framed({"inputs": items}, nan, *blobs[1:])),
        ("binary data without the header", path, json.dumps({"inputs": items}).encode() + b"".join(blobs), {}),
        (
            "shared memory",
            path,
            *_framed(
                {
                    "inputs": [
                        {**first, "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 4}},
                        *rest,
                    ]
                },
                *blobs[1:],
            ),
        ),
        (
            "classification output",
            path,
            *_framed(
                {
                    "inputs": items,
                    "outputs": [{"name": default["outputs"][0]["name"], "parameters": {"classification": 3}}],
                },
                *blobs,
            ),
        ),
        ("BYTES length prefix beyond the data", picture_path, *with_picture(len(png).to_bytes(4, "little") + png[:10])),
        (
            "BYTES elements fewer than the shape",
            picture_path,
            *with_picture(len(png).to_bytes(4, "little") + png, shape=(2,)),
        ),
        ("BYTES not a picture", picture_path, *with_picture((5).to_bytes(4, "little") + b"hello")),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_binary_requests_get_400_and_the_server_survives(servers, backend):
    server = servers[backend]
    default = metadata_of(server.url, "csvae")
    cases = _malformed_requests(default, metadata_of(server.url, "csvae.manipulate_image"))
    assert len(cases) >= 15
    for description, path, body, headers in cases:
        status, answer = call(server, "POST", path, body, headers)
        assert status == 400, (description, status, answer)
        assert isinstance(answer, dict) and set(answer) == {"error"} and answer["error"], description
    assert not any(code >= 500 for (_, code) in server.server.counts), server.server.counts
    # still right afterwards, on the same connection pool
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    values = example_inputs(default, seed=44)
    result = client.infer("csvae", triton_inputs(default, values))
    expected = v1_answer(server.url, "serving_default", values)
    for name, value in expected.items():
        np.testing.assert_allclose(result.as_numpy(name), value, atol=1e-5)
    client.close()


def test_binary_and_json_outputs_mixed(servers):
    """Per-output ``binary_data`` wins over ``binary_data_output``; the binary part
    holds exactly the binary outputs, in the order asked."""
    metadata = metadata_of(servers["onnx"].url, "csvae.encode")
    values = example_inputs(metadata, seed=45, batch=1)
    names = sorted(o["name"] for o in metadata["outputs"])[:3]
    assert len(names) == 3
    header = {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {"name": n, "shape": list(v.shape), "datatype": "FP32", "data": v.ravel().tolist()}
            for n, v in values.items()
        ],
        "outputs": [{"name": names[0]}, {"name": names[1], "parameters": {"binary_data": False}}, {"name": names[2]}],
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
    assert [o["name"] for o in outputs] == names
    assert ["data" in o for o in outputs] == [False, True, False]
    expected = v1_answer(servers["onnx"].url, "encode", values)
    for name in names:
        np.testing.assert_allclose(result.as_numpy(name), expected[name], atol=1e-6)


# -- metrics ------------------------------------------------------------------------------------------------------
def test_metrics_label_errors_by_api(export_dir):
    """Requests that fail to route are counted under the API their path names."""
    requests = [
        ("GET", "/v1/models/csvae", 200),
        ("GET", "/v1/models/nope", 404),
        ("POST", "/v1/foo", 400),
        ("GET", "/v2/models/csvae", 200),
        ("GET", "/v2/models/nope", 404),
        ("GET", "/v2/models/csvae/versions/x", 400),
        ("GET", "/v2/models/nope", 404),
        ("GET", "/index.html", 404),
    ]
    with ServerThread(backends.load(export_dir, "onnx", warm_up=False), ServerConfig(**TEST_CONFIG)) as server:
        for method, path, status in requests:
            assert call(server, method, path, b"{}" if method == "POST" else None)[0] == status, path
        status, text = call(server, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    counted = {
        (s.labels["api"], s.labels["code"]): s.value
        for s in families["csvae_serving_requests"].samples
        if s.name.endswith("_total")
    }
    assert counted == {
        ("v1", "200"): 1,
        ("v1", "404"): 1,
        ("v1", "400"): 1,
        ("v2", "200"): 1,
        ("v2", "404"): 2,
        ("v2", "400"): 1,
        ("other", "404"): 1,
    }
    assert families["csvae_serving_in_flight"].samples[0].value == 1  # the scrape itself
    assert {"csvae_serving_batches", "csvae_serving_batched_rows", "csvae_serving_queue_waiting"} <= set(families)


# -- camera photos through the picture signature ------------------------------------------------------------------
def test_camera_photos_on_both_backends(servers, export_dir):
    """A 20 MP JPEG (over the former 16.7 MP limit) and an EXIF-rotated one, as raw
    bytes: both backends edit the upright, reduced picture that ``decode_image``
    makes (the SavedModel gets it as a PNG), as onnxruntime does on it directly."""
    import io

    from PIL import Image

    from serving.backends.savedmodel import graph_pictures
    from serving.runtime.contract import IMAGE_INPUT
    from serving.runtime.images import EXIF_ORIENTATION, decode_image
    from serving.runtime.sessions import onnx_session

    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    photos = []
    for size, extra in (((5472, 3648), {}), ((96, 48), {"exif": exif.tobytes()})):
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[:, : size[0] // 2] = (220, 40, 40)
        pixels[:, size[0] // 2 :] = (40, 40, 220)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, **extra)
        photos.append(buffer.getvalue())
    metadata = metadata_of(servers["onnx"].url, "csvae.manipulate_image")
    values = example_inputs(metadata, seed=46, pictures=photos)
    (picture,) = [s["name"] for s in metadata["inputs"] if s["datatype"] == "BYTES"]
    (output,) = [o["name"] for o in metadata["outputs"]]
    decoded = np.stack([decode_image(p, (SIZE, SIZE, 3)) for p in photos])
    session = onnx_session(export_dir / "onnx" / "manipulate.onnx")
    # manipulate.onnx's inputs: the picture's pixels, and the picture signature's other inputs
    feeds = {i.name: decoded if list(i.shape[1:]) == [SIZE, SIZE, 3] else values[i.name] for i in session.get_inputs()}
    (edited,) = session.run(None, feeds)
    expected = decode_pngs([png_of(e) for e in edited])
    for backend in BACKENDS:
        client = triton.InferenceServerClient(servers[backend].url.removeprefix("http://"))
        answer = client.infer("csvae.manipulate_image", triton_inputs(metadata, values), model_version="1").as_numpy(
            output
        )
        assert np.abs(decode_pngs(list(answer)) - expected).max() <= 1, backend
        client.close()
    # The edits of an untrained model barely depend on their input, so check what
    # the SavedModel's graph is given: the upright picture (red on top), at the
    # model's size; a picture already as stored goes unchanged.
    assert picture == IMAGE_INPUT
    given = graph_pictures(np.array(photos + [png_of(decoded[0])], object), (SIZE, SIZE, 3))
    upright = decode_pngs([given[1]])[0]
    assert upright.shape == (SIZE, SIZE, 3) and upright[:4, :, 0].mean() > 200 and upright[-4:, :, 2].mean() > 200
    assert decode_pngs([given[0]]).shape == (1, SIZE, SIZE, 3) and given[2] == png_of(decoded[0])
