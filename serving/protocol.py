"""Request parsing and response writing for the two HTTP contracts.

TF Serving REST API v1 (https://www.tensorflow.org/tfx/serving/api_rest), following
``tensorflow_serving/util/json_tensor.cc``:

- ``{"signature_name"?, "instances": [...]}`` (row format: one entry per
  example; an object keyed by input name per entry when there are several
  inputs) or ``{"signature_name"?, "inputs": ...}`` (columnar: a tensor, or an
  object of name -> tensor), never both;
- DT_STRING values as plain strings or ``{"b64": "..."}``;
- answers ``{"predictions": ...}`` (row) / ``{"outputs": ...}`` (columnar);
  with several outputs a list of per-row objects / an object of tensors;
  DT_STRING outputs named ``*_bytes`` as ``{"b64": "..."}``;
- errors with TF Serving's messages where it has one.

Stricter than TF Serving in one way, on purpose: non-finite floats are
refused (400), since no model answer to NaN means anything. (orjson already
refuses ``NaN``/``Infinity`` literals and numbers beyond float64.)

Open Inference Protocol v2 (KServe, Triton, MLServer): server and model
metadata, ``infer`` with ``{"id"?, "inputs": [{"name", "shape",
"datatype", "data"}], "outputs"?: [{"name"}], "parameters"?}``, and Triton's
binary tensor data extension (``Inference-Header-Content-Length``: raw
little-endian tensors after the JSON header, BYTES elements each prefixed by
their 4-byte little-endian length; outputs in binary on request). Other
details: ``parameters.signature_name`` picks a signature for the plain model
name; JSON BYTES data are UTF-8 strings, or base64 when the input's
``parameters.content_type`` is ``"base64"``; ``*_bytes`` outputs answered in
JSON are base64 with that same parameter. Each signature is also its own v2
model (``serving.server`` maps the names).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import uuid

import numpy as np
import orjson

from serving.errors import InvalidArgument
from serving.runtime.contract import SERVING_DEFAULT
from serving.signatures import FLOAT32, STRING, Signature, TensorSpec

INSTANCES, INPUTS, B64 = "instances", "inputs", "b64"
# Largest integer a float32 holds exactly (TF Serving refuses larger ones as lossy).
MAX_EXACT_INT = (1 << 24) - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclasses.dataclass
class Request:
    """A parsed inference request.

    Attributes:
      signature: the signature asked for.
      inputs: ``{name: array [rows, ...]}`` (float32, or object arrays of bytes).
      rows: the batch size.
      row_format: v1 ``instances`` (else ``inputs``); unused by v2.
      outputs: v2 outputs asked for (all when ``None``).
      request_id: v2 ``id``.
      binary_outputs: v2: answer outputs as binary tensor data; a bool for all,
        or one per entry of ``outputs``.
    """

    signature: Signature
    inputs: dict
    rows: int
    row_format: bool = True
    outputs: tuple[str, ...] | None = None
    request_id: str | None = None
    binary_outputs: bool | tuple[bool, ...] = False


def _short(value, limit: int = 120) -> str:
    """A JSON value for an error message, cut to ``limit`` characters."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dumps(value) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTIONS)


def parse_json(body: bytes) -> dict:
    """The request body as a JSON object; 400 with TF Serving's messages otherwise."""
    if not body or not body.strip():
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidArgument(f"JSON Parse error: {err}") from err
    if not isinstance(document, dict):
        raise InvalidArgument(f"JSON Value: {_short(document)} Is not object")
    return document


# -- tensors from JSON --------------------------------------------------------------------------------
def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


def _b64decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidArgument(f"{where}: Unable to base64 decode") from err


def float_tensor(value, where: str) -> np.ndarray:
    """Nested JSON numbers -> float32 array; 400 for ragged lists, other types,
    non-finite values and numbers float32 cannot hold."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as err:
        raise InvalidArgument(f"{where}: nested lists of different lengths or values of mixed types ({err})") from err
    kind = array.dtype.kind
    if kind == "f":
        if array.size and not np.all(np.isfinite(array)):
            raise InvalidArgument(f"{where}: NaN or infinite values are not accepted")
        if array.size and np.max(np.abs(array)) > FLOAT32_MAX:
            raise InvalidArgument(
                f"{where}: Cannot convert JSON value: {np.max(np.abs(array))} to float without loss of precision."
            )
    elif kind in "iu":
        if array.size and np.max(np.abs(array.astype(np.float64))) > MAX_EXACT_INT:
            raise InvalidArgument(
                f"{where}: Cannot convert JSON value: {np.max(np.abs(array))} to float without loss of precision."
            )
    elif kind == "b":
        raise InvalidArgument(f"{where}: JSON Value: {_short(value, 40)} Type: Bool is not of expected type: float")
    elif kind in "US":
        raise InvalidArgument(f"{where}: JSON Value: {_short(value, 40)} Type: String is not of expected type: float")
    else:
        raise InvalidArgument(
            f"{where}: JSON Value: {_short(value, 60)} is not of expected type: float "
            "(expected numbers; found null, objects, or lists of different lengths)"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


def _dense_shape(value) -> list[int]:
    """The shape TF Serving reads off a nested list: the lengths along the first elements."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def string_tensor(value, where: str, base64_strings: bool = False) -> np.ndarray:
    """Nested JSON strings / ``{"b64": ...}`` -> object array of bytes.

    ``base64_strings``: plain strings are base64 too (OIP ``content_type: base64``).
    """
    shape = _dense_shape(value)
    flat: list[bytes] = []

    def fill(item, level):
        if isinstance(item, list):
            if level >= len(shape) or len(item) != shape[level]:
                raise InvalidArgument(f"{where}: Encountered list at unexpected size: {len(item)} at level: {level}")
            for element in item:
                fill(element, level + 1)
            return
        if level != len(shape):
            raise InvalidArgument(f"{where}: JSON Value: {_short(item, 40)} found at incorrect level: {level + 1}")
        if isinstance(item, str):
            flat.append(_b64decode(item, where) if base64_strings else item.encode("utf-8"))
        elif _is_b64(item):
            flat.append(_b64decode(item[B64], where))
        else:
            kind = type(item).__name__ if item is not None else "null"
            raise InvalidArgument(f"{where}: JSON Value: {_short(item, 40)} ({kind}) is not of expected type: string")

    fill(value, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def tensor(value, spec: TensorSpec, where: str, base64_strings: bool = False) -> np.ndarray:
    """A JSON value for ``spec`` -> a checked array (dtype and non-batch dims)."""
    array = float_tensor(value, where) if spec.dtype == FLOAT32 else string_tensor(value, where, base64_strings)
    if not spec.accepts(array.shape):
        raise InvalidArgument(
            f"{where}: input {spec.name!r} has shape {list(array.shape)}; the signature expects "
            f"{spec.shape_text()} (-1: any size, the first dimension is the batch)"
        )
    return array


def _batch_size(inputs: dict) -> int:
    sizes = {name: array.shape[0] for name, array in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise InvalidArgument(f"Batching Run() input tensors must have equal 0th-dimension size; got {sizes}")
    rows = next(iter(sizes.values()))
    if rows < 1:
        raise InvalidArgument("The batch is empty: send at least one example")
    return int(rows)


# -- TF Serving REST v1 ------------------------------------------------------------------------------------
def signature_name(document: dict) -> str:
    name = document.get("signature_name", SERVING_DEFAULT)
    if not isinstance(name, str):
        raise InvalidArgument(
            f"JSON Value: {_short(document)} not formatted correctly. 'signature_name' key must be a string value."
        )
    return name or SERVING_DEFAULT


def find_signature(signatures: dict[str, Signature], name: str) -> Signature:
    if name not in signatures:
        raise InvalidArgument(
            f'Serving signature name: "{name}" not found in signature def (signatures: {", ".join(sorted(signatures))})'
        )
    return signatures[name]


def _check_rows(rows: int, max_rows: int | None) -> None:
    # Checked before the values are converted: a huge batch is refused cheaply.
    if max_rows is not None and rows > max_rows:
        raise InvalidArgument(f"Task size {rows} is larger than maximum batch size {max_rows}")


def parse_predict(document: dict, signature: Signature, max_rows: int | None = None) -> Request:
    """A ``:predict`` body (already ``parse_json``-ed) for ``signature`` -> ``Request``.

    ``max_rows``: larger batches are refused (400) before their values are converted.
    """
    has_instances, has_inputs = INSTANCES in document, INPUTS in document
    if has_instances and has_inputs:
        raise InvalidArgument(
            f"JSON Value: {_short(document)} Not formatted correctly expecting only one of 'inputs' or 'instances' "
            "keys to exist"
        )
    if has_instances:
        columns = _instance_columns(document[INSTANCES], signature)
        row_format = True
    elif has_inputs:
        columns = _input_columns(document[INPUTS], signature)
        row_format = False
    else:
        raise InvalidArgument("Missing 'inputs' or 'instances' key")
    for column in columns.values():
        if isinstance(column, list):
            _check_rows(len(column), max_rows)
    inputs = {}
    for spec in signature.inputs:
        where = f"'{INSTANCES}' input {spec.name!r}" if row_format else f"'{INPUTS}' input {spec.name!r}"
        inputs[spec.name] = tensor(columns[spec.name], spec, where)
    return Request(signature, inputs, _batch_size(inputs), row_format)


def _instance_columns(instances, signature: Signature) -> dict:
    if not isinstance(instances, list):
        raise InvalidArgument(f"JSON Value: {_short(instances)} Excepting 'instances' to be an list/array")
    if not instances:
        raise InvalidArgument("JSON Value: [] No values in 'instances' array")
    names = signature.input_names
    objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not objects:
        if len(names) > 1:
            raise InvalidArgument(
                "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
                f"tensorinfo_map (inputs: {', '.join(names)})"
            )
        for i, item in enumerate(instances):
            if isinstance(item, dict) and not _is_b64(item):
                raise InvalidArgument(f"Expecting value/list but got object at item {i} of input list")
        return {names[0]: instances}
    columns = {name: [] for name in names}
    for i, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise InvalidArgument(f"Expecting object but got list at item {i} of input list")
        unknown = sorted(set(item) - set(names))
        if unknown:
            raise InvalidArgument(
                f"Failed to process element: {i} key: {unknown[0]} of 'instances' list. "
                f"Error: JSON object: does not have named input: {unknown[0]}"
            )
        if len(item) != len(names):
            raise InvalidArgument(
                f"Failed to process element: {i} of 'instances' list. JSON object: {_short(item, 60)} "
                f"must only have keys: {','.join(sorted(names))}"
            )
        for name in names:
            columns[name].append(item[name])
    return columns


def _input_columns(value, signature: Signature) -> dict:
    names = signature.input_names
    if not isinstance(value, dict) or _is_b64(value):
        if len(names) > 1:
            raise InvalidArgument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                f"tensorinfo_map (inputs: {', '.join(names)})"
            )
        return {names[0]: value}
    for name in names:
        if name not in value:
            raise InvalidArgument(f"Missing named input: {name} in 'inputs' object.")
    return {name: value[name] for name in names}  # other keys are ignored, as TF Serving does


def _json_strings(array: np.ndarray, as_b64: bool):
    """Object array of bytes -> nested lists of ``{"b64": ...}`` or of text."""
    if as_b64:
        items = [{B64: base64.b64encode(item).decode("ascii")} for item in array.ravel()]
    else:
        items = [bytes(item).decode("utf-8", errors="replace") for item in array.ravel()]
    flat = np.empty(len(items), dtype=object)
    flat[:] = items
    return flat.reshape(array.shape).tolist()


def _json_tensor(spec: TensorSpec, array: np.ndarray):
    if spec.dtype == STRING:
        return _json_strings(array, spec.is_bytes)
    return np.ascontiguousarray(array, dtype=np.float32)  # orjson writes float32 in its shortest form


def predict_response(request: Request, outputs: dict) -> bytes:
    """``{"predictions": ...}`` for row requests, ``{"outputs": ...}`` for columnar ones."""
    specs = [request.signature.output(name) for name in sorted(outputs)]
    if request.row_format:
        if len(specs) == 1:
            return dumps({"predictions": _json_tensor(specs[0], outputs[specs[0].name])})
        columns = {spec.name: _json_tensor(spec, outputs[spec.name]) for spec in specs}
        return dumps(
            {"predictions": [{name: column[i] for name, column in columns.items()} for i in range(request.rows)]}
        )
    if len(specs) == 1:
        return dumps({"outputs": _json_tensor(specs[0], outputs[specs[0].name])})
    return dumps({"outputs": {spec.name: _json_tensor(spec, outputs[spec.name]) for spec in specs}})


def status_response(versions: list[int]) -> bytes:
    """``GetModelStatusResponse`` JSON: every listed version AVAILABLE."""
    return dumps(
        {
            "model_version_status": [
                {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                for v in versions
            ]
        }
    )


def _tensor_info(spec: TensorSpec) -> dict:
    return {
        "dtype": spec.tf_dtype,
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False},
        "name": spec.tensor_name or spec.name,
    }


def metadata_response(name: str, version: int, signatures: dict[str, Signature]) -> bytes:
    """``GetModelMetadataResponse`` JSON with the ``signature_def`` map, int64 sizes as strings."""
    return dumps(
        {
            "model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        sig_name: {
                            "inputs": {spec.name: _tensor_info(spec) for spec in signature.inputs},
                            "outputs": {spec.name: _tensor_info(spec) for spec in signature.outputs},
                            "method_name": signature.method_name,
                        }
                        for sig_name, signature in sorted(signatures.items())
                    }
                }
            },
        }
    )


# -- Open Inference Protocol v2 --------------------------------------------------------------------------------------
# The binary tensor data extension (Triton's "binary_tensor_data", the default of
# tritonclient.http and the KServe SDK): the body is the JSON header, whose byte
# length this header gives, followed by the raw tensors of the inputs that carry
# parameters.binary_data_size, in the order of "inputs".
HEADER_LENGTH = "Inference-Header-Content-Length"
V2_EXTENSIONS = ("binary_tensor_data", "model_repository")
# Bytes per element of each OIP datatype (BYTES: 4-byte little-endian length + bytes each).
V2_ITEM_SIZES = {
    "BOOL": 1,
    "UINT8": 1,
    "INT8": 1,
    "UINT16": 2,
    "INT16": 2,
    "FP16": 2,
    "BF16": 2,
    "UINT32": 4,
    "INT32": 4,
    "FP32": 4,
    "UINT64": 8,
    "INT64": 8,
    "FP64": 8,
    "BYTES": None,
}
_UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "the shared memory extensions are not supported: send the data in the request",
    "classification": "the classification extension is not supported",
}


@dataclasses.dataclass(frozen=True)
class InferBody:
    """An ``infer`` body split per the binary extension: the JSON header and the bytes after it."""

    document: dict
    binary: bytes = b""
    header_length: int | None = None


def split_infer_body(body: bytes, header_length: str | None) -> InferBody:
    """The JSON header and the binary part of an ``infer`` body (400 for bad framing).

    Without ``Inference-Header-Content-Length`` the whole body is JSON.
    """
    if header_length is None:
        try:
            return InferBody(parse_json(body))
        except InvalidArgument as err:
            if body and body.lstrip()[:1] == b"{":  # JSON followed by raw bytes: the header was forgotten
                raise InvalidArgument(f"{err.message} (binary tensor data needs the {HEADER_LENGTH} header)") from err
            raise
    text = header_length.strip()
    if not text.isdigit() or len(text) > 19:
        raise InvalidArgument(f"{HEADER_LENGTH} must be a byte count, got {header_length[:40]!r}")
    length = int(text)
    if length > len(body):
        raise InvalidArgument(f"{HEADER_LENGTH} is {length} but the body has only {len(body)} bytes")
    return InferBody(parse_json(body[:length]), body[length:], length)


def v2_model_metadata(name: str, versions: list[int], platform: str, signature: Signature) -> bytes:
    def tensors(specs):
        return [{"name": s.name, "datatype": s.v2_datatype, "shape": list(s.shape)} for s in specs]

    return dumps(
        {
            "name": name,
            "versions": [str(v) for v in versions],
            "platform": platform,
            "inputs": tensors(signature.inputs),
            "outputs": tensors(signature.outputs),
        }
    )


def _parameters(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}'parameters' must be an object")
    for key, message in _UNSUPPORTED_PARAMETERS.items():
        if key in value:
            raise InvalidArgument(f"{where}parameter '{key}': {message}")
    return value


def v2_signature_name(document: dict) -> str | None:
    """``parameters.signature_name`` of an ``infer`` body, ``None`` when not given."""
    name = _parameters(document.get("parameters"), "").get("signature_name")
    if name is not None and not isinstance(name, str):
        raise InvalidArgument("'parameters.signature_name' must be a string")
    return name


def _flag(parameters: dict, key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidArgument(f"{where}parameter '{key}' must be true or false")
    return value


def _binary_float32(raw: bytes, count: int, where: str) -> np.ndarray:
    if len(raw) != 4 * count:
        raise InvalidArgument(
            f"{where}: {len(raw)} bytes of binary data, but its shape needs {count} FP32 values = {4 * count} bytes"
        )
    array = np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False)
    if array.size and not np.all(np.isfinite(array)):
        raise InvalidArgument(f"{where}: NaN or infinite values are not accepted")
    return array


def _binary_strings(raw: bytes, count: int, where: str) -> np.ndarray:
    """Length-prefixed BYTES elements (4-byte little-endian length, then the bytes) -> object array."""
    items, offset = [], 0
    view = memoryview(raw)
    for i in range(count):
        if offset + 4 > len(raw):
            raise InvalidArgument(
                f"{where}: binary BYTES data ends before element {i} of {count} (each is a 4-byte length, then the "
                "bytes)"
            )
        size = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            raise InvalidArgument(
                f"{where}: BYTES element {i} claims {size} bytes, but only {len(raw) - offset} remain"
            )
        items.append(bytes(view[offset : offset + size]))
        offset += size
    if offset != len(raw):
        raise InvalidArgument(
            f"{where}: {len(raw) - offset} bytes left after the {count} BYTES elements its shape holds"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def parse_infer(body: InferBody, signature: Signature, model: str, max_rows: int | None = None) -> Request:
    """An OIP v2 ``infer`` body -> ``Request`` (400 with a message naming the problem).

    Inputs come as JSON ``data`` or, with ``parameters.binary_data_size``, as raw
    little-endian bytes after the JSON header (BYTES elements length-prefixed).
    Outputs are answered in binary when ``outputs[i].parameters.binary_data`` or,
    for outputs that do not say, ``parameters.binary_data_output`` is true.
    """
    document = body.document
    parameters = _parameters(document.get("parameters"), "")
    binary_default = bool(_flag(parameters, "binary_data_output", ""))
    items = document.get("inputs")
    if not isinstance(items, list) or not items:
        raise InvalidArgument("'inputs' must be a non-empty list of {name, shape, datatype, data}")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidArgument("'id' must be a string")
    inputs, offset = {}, 0
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument(f"inputs[{i}] must be an object with a string 'name'")
        name = item["name"]
        where = f"input '{name}'"
        if name not in signature.input_names:
            raise InvalidArgument(
                f"unexpected inference input '{name}' for model '{model}' (inputs: {', '.join(signature.input_names)})"
            )
        if name in inputs:
            raise InvalidArgument(f"input '{name}' is given twice")
        spec = signature.input(name)
        shape, datatype = item.get("shape"), item.get("datatype")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise InvalidArgument(f"{where}: 'shape' must be a list of non-negative integers")
        if shape:
            _check_rows(shape[0], max_rows)
        if datatype not in V2_ITEM_SIZES:
            raise InvalidArgument(
                f"{where}: unknown datatype {_short(datatype, 40)} (one of {', '.join(V2_ITEM_SIZES)})"
            )
        if datatype != spec.v2_datatype:
            raise InvalidArgument(f"{where}: datatype {datatype!r} does not match the model's {spec.v2_datatype}")
        if len(shape) != len(spec.shape) or not spec.accepts(shape):
            raise InvalidArgument(f"{where}: shape {shape} does not match the model's {spec.shape_text()}")
        count = math.prod(shape)  # Python integers: a hostile shape cannot overflow
        item_parameters = _parameters(item.get("parameters"), f"{where}: ")
        size = item_parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgument(f"{where}: 'binary_data_size' must be a non-negative integer")
            if "data" in item:
                raise InvalidArgument(f"{where}: has both 'data' and 'binary_data_size'; send one")
            if offset + size > len(body.binary):
                raise InvalidArgument(
                    f"{where}: binary data ends at byte {offset + size} after the JSON header, but "
                    + (
                        f"only {len(body.binary)} bytes follow it"
                        if body.header_length is not None
                        else f"the request has no {HEADER_LENGTH} header"
                    )
                )
            raw = body.binary[offset : offset + size]
            offset += size
            if spec.dtype == FLOAT32:
                data = _binary_float32(raw, count, where)
            else:
                data = _binary_strings(raw, count, where)
        else:
            if "data" not in item:
                raise InvalidArgument(f"{where}: 'data' is missing (or 'parameters.binary_data_size' for binary data)")
            base64_strings = item_parameters.get("content_type") == "base64"
            flat_spec = dataclasses.replace(spec, shape=(-1,) * max(1, len(_dense_shape(item["data"]))))
            data = tensor(item["data"], flat_spec, where, base64_strings)
            if data.size != count:
                raise InvalidArgument(f"{where}: {data.size} values in 'data' for shape {shape}")
        data = data.reshape(shape)
        if not spec.accepts(data.shape):
            raise InvalidArgument(f"{where}: shape {shape} does not match the model's {spec.shape_text()}")
        inputs[name] = data
    if offset != len(body.binary):
        raise InvalidArgument(
            f"{len(body.binary)} bytes of binary data follow the JSON header, but the inputs' 'binary_data_size' add "
            f"up to {offset}"
        )
    missing = [n for n in signature.input_names if n not in inputs]
    if missing:
        raise InvalidArgument(
            f"expected {len(signature.input_names)} inputs but got {len(inputs)}; missing: {', '.join(missing)}"
        )
    outputs, binary = None, None
    if document.get("outputs") is not None:
        asked = document["outputs"]
        if not isinstance(asked, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in asked
        ):
            raise InvalidArgument("'outputs' must be a list of {\"name\": ...} objects")
        outputs = tuple(o["name"] for o in asked)
        unknown = [n for n in outputs if n not in signature.output_names]
        if unknown:
            raise InvalidArgument(
                f"unexpected inference output '{unknown[0]}' for model '{model}' (outputs: "
                f"{', '.join(signature.output_names)})"
            )
        binary = []
        for o in asked:
            flag = _flag(
                _parameters(o.get("parameters"), f"output '{o['name']}': "), "binary_data", f"output '{o['name']}': "
            )
            binary.append(binary_default if flag is None else flag)
        binary = tuple(binary)
    request = Request(signature, inputs, _batch_size(inputs), outputs=outputs, request_id=request_id)
    request.binary_outputs = binary if binary is not None else binary_default
    return request


def _length_prefixed(array: np.ndarray) -> bytes:
    return b"".join(len(item).to_bytes(4, "little") + bytes(item) for item in array.ravel())


def infer_response(model: str, version: int, request: Request, outputs: dict) -> tuple[bytes, int | None]:
    """The ``infer`` answer: ``(body, header length)``; the length is ``None`` for an all-JSON body.

    Binary outputs carry ``parameters.binary_data_size`` and no ``data``; their
    bytes follow the JSON header in the order of ``outputs``.
    """
    names = request.outputs or tuple(sorted(outputs))
    flags = request.binary_outputs
    binary_flags = flags if isinstance(flags, tuple) else (bool(flags),) * len(names)
    answers, blobs = [], []
    for name, binary in zip(names, binary_flags):
        spec, array = request.signature.output(name), outputs[name]
        answer = {"name": name, "shape": list(array.shape), "datatype": spec.v2_datatype}
        if binary:
            raw = (
                _length_prefixed(array) if spec.dtype == STRING else np.ascontiguousarray(array, dtype="<f4").tobytes()
            )
            answer["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif spec.dtype == STRING:
            if spec.is_bytes:
                answer["parameters"] = {"content_type": "base64"}
                answer["data"] = [base64.b64encode(item).decode("ascii") for item in array.ravel()]
            else:
                answer["data"] = [bytes(item).decode("utf-8", errors="replace") for item in array.ravel()]
        else:
            answer["data"] = np.ascontiguousarray(array, dtype=np.float32).ravel()
        answers.append(answer)
    header = dumps(
        {
            "model_name": model,
            "model_version": str(version),
            "id": request.request_id or str(uuid.uuid4()),
            "outputs": answers,
        }
    )
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def repository_index(entries: list[tuple[str, int, bool]], document: dict) -> bytes:
    """Triton's model repository index: ``[{"name", "version", "state"}]``; ``{"ready": true}`` keeps ready ones."""
    ready_only = document.get("ready") if isinstance(document, dict) else None
    if ready_only is not None and not isinstance(ready_only, bool):
        raise InvalidArgument("'ready' must be true or false")
    index = []
    for name, version, ready in entries:
        if ready_only and not ready:
            continue
        entry = {"name": name, "version": str(version), "state": "READY" if ready else "UNAVAILABLE"}
        if not ready:
            entry["reason"] = "the server is shutting down"
        index.append(entry)
    return dumps(index)
