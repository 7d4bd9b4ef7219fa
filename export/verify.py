"""Verification of an export the way the servers load it.

- SavedModel: loaded through TensorFlow's C++ loader path (what TF Serving's
  ``LoadSavedModel`` runs): ``tf.compat.v1.saved_model.loader.load`` in a
  fresh ``tf.Graph`` session, then ``sess.run`` on the tensor names of each
  ``SignatureDef``. Every signature must match the Keras model's function
  within ``SAVEDMODEL_TOLERANCE`` at batch 1 and 7; signature dtypes must be
  float32 (or string), batch dims -1; the graph must hold no random or TFP
  ops (tf2onnx cannot convert them).
- ONNX: ``onnx.checker`` full check, a CPU onnxruntime session (tf2onnx may
  write files onnxruntime refuses: loading is the test), and outputs within
  ``ONNX_TOLERANCE`` of the SavedModel's on the same inputs.

Errors are measured as ``max |a - b| / max(1, |b|)``: absolute for values of
magnitude ≤ 1 (pixels, codes), relative above (log-variances can be large).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from export.errors import VerificationError
from export.savedmodel import SERVE_TAG
from export.signatures import IMAGE_INPUT, IMAGE_OUTPUT, IMAGE_SIGNATURE, ServingFunction

BATCH_SIZES = (1, 7)
SAVEDMODEL_TOLERANCE = 1e-5
ONNX_TOLERANCE = 1e-4
# The edited PNG holds round(255 · x): within 0.5/255 of the edit; 1/255 leaves
# room for the PNG decoder's and TF's float rounding on both sides.
IMAGE_TOLERANCE = 1.0 / 255.0 + 1e-4
ALLOWED_SIGNATURE_DTYPES = {"DT_FLOAT", "DT_STRING"}
# Random ops (tf2onnx cannot convert them; exports must be deterministic) and
# BroadcastArgs (what TFP's .mean()/.sample() leave in a graph).
FORBIDDEN_OPS = re.compile(r"Random|Rng|Multinomial|BroadcastArgs|ParameterizedTruncatedNormal")


@dataclasses.dataclass
class Case:
    """One test input of one function: ``feeds`` by input name, and outputs."""

    function: str
    batch: int
    feeds: dict
    keras: dict
    savedmodel: dict | None = None


def scaled_error(actual, expected) -> float:
    """``max |actual - expected| / max(1, |expected|)`` over all elements (0 for empty)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    if actual.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected) / np.maximum(1.0, np.abs(expected))))


# -- inputs -------------------------------------------------------------------------------
def random_input(model, spec, batch: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``[batch, ...]`` array of the right kind for ``spec``: data
    (images uniform in [0, 1], vectors standard normal), labels in {0, 1}
    (inputs named ``y...``), or standard normal noise / codes (anything else)."""
    shape = [batch, *spec.shape[1:]]
    if tuple(spec.shape[1:]) == tuple(model.data_shape) and not spec.name.startswith("y"):
        if len(model.data_shape) == 3:
            return rng.random(shape, dtype=np.float32)
        return rng.standard_normal(shape, dtype=np.float32)
    if spec.name.startswith("y"):
        return rng.integers(0, 2, shape).astype(np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


def encode_png(pixels: np.ndarray) -> np.ndarray:
    """``[n, H, W, C]`` uint8 -> ``[n]`` object array of PNG bytes."""
    return np.array([tf.io.encode_png(image).numpy() for image in pixels], dtype=object)


def decode_png(data: np.ndarray) -> np.ndarray:
    """``[n]`` PNG bytes -> ``[n, H, W, C]`` uint8."""
    return np.stack([tf.io.decode_png(item).numpy() for item in data])


def _eager(function: ServingFunction, feeds: dict) -> dict:
    outputs = function.fn(*[tf.constant(feeds[name]) for name in function.input_names])
    return {name: np.asarray(value) for name, value in outputs.items()}


def make_cases(model, functions: dict[str, ServingFunction], batch_sizes=BATCH_SIZES, seed=0) -> list[Case]:
    """Random inputs for every function at every batch size, with the Keras
    model's outputs (eager). ``manipulate_image`` gets PNGs of random pixels
    and, as reference, ``manipulate`` on exactly those pixels."""
    rng = np.random.default_rng(seed)
    cases = []
    for name, function in functions.items():
        for batch in batch_sizes:
            feeds = {
                spec.name: random_input(model, spec, batch, rng)
                for spec in function.input_specs
                if spec.dtype == tf.float32
            }
            if name == IMAGE_SIGNATURE:
                pixels = rng.integers(0, 256, [batch, *model.data_shape], dtype=np.uint8)
                manipulate = functions["manipulate"]
                image_position = function.input_names.index(IMAGE_INPUT)
                reference_feeds = dict(feeds)
                reference_feeds[manipulate.input_names[image_position]] = pixels.astype(np.float32) / 255.0
                (output,) = manipulate.output_names
                reference = {IMAGE_OUTPUT: _eager(manipulate, reference_feeds)[output]}
                feeds[IMAGE_INPUT] = encode_png(pixels)
                cases.append(Case(name, batch, feeds, reference))
            else:
                cases.append(Case(name, batch, feeds, _eager(function, feeds)))
    return cases


# -- SavedModel -------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_tf_logger():
    """The v1 loader logs a deprecation warning on every call."""
    logger = tf.get_logger()
    previous = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(previous)


@contextlib.contextmanager
def savedmodel_session(path):
    """Yields ``(session, meta_graph)`` of the SavedModel at ``path`` loaded
    with the ``serve`` tag the way TF Serving loads it."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session, _quiet_tf_logger():
        try:
            meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], os.fspath(path))
        except Exception as err:
            raise VerificationError(
                f"TensorFlow's SavedModel loader refuses {path}: {type(err).__name__}: {err}"
            ) from err
        yield session, meta_graph


def run_signature(session, meta_graph, signature: str, feeds: dict) -> dict:
    """``sess.run`` of one ``SignatureDef`` by its tensor names; outputs by name."""
    signature_def = meta_graph.signature_def[signature]
    feed_dict = {signature_def.inputs[name].name: value for name, value in feeds.items()}
    fetches = {name: tensor.name for name, tensor in signature_def.outputs.items()}
    return session.run(fetches, feed_dict)


def describe_signatures(meta_graph) -> dict:
    """``{signature: {"inputs": {name: {dtype, shape}}, "outputs": {...}}}`` as
    ``saved_model_cli show --all`` shows them (dtype names like ``DT_FLOAT``,
    unknown dims -1)."""
    from tensorflow.core.framework import types_pb2

    def tensors(infos):
        return {
            name: {
                "dtype": types_pb2.DataType.Name(info.dtype),
                "shape": None if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim],
            }
            for name, info in sorted(infos.items())
        }

    return {
        name: {"method_name": sig.method_name, "inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs)}
        for name, sig in sorted(meta_graph.signature_def.items())
        if not name.startswith("__")  # __saved_model_init_op is not a serving signature
    }


def check_signature_defs(signatures: dict, expected: dict[str, ServingFunction]) -> None:
    """Every expected signature present with its input and output names; only
    float32/string tensors (REST cannot carry DT_HALF or DT_BFLOAT16); batch dims -1."""
    missing = sorted(set(expected) - set(signatures))
    if missing:
        raise VerificationError(f"SavedModel lacks signature(s) {missing}; it has {sorted(signatures)}.")
    for name, function in expected.items():
        sig = signatures[name]
        if set(sig["inputs"]) != set(function.input_names) or set(sig["outputs"]) != set(function.output_names):
            raise VerificationError(
                f"SavedModel signature {name!r} has inputs {sorted(sig['inputs'])} and outputs "
                f"{sorted(sig['outputs'])}; "
                f"expected {sorted(function.input_names)} and {sorted(function.output_names)}."
            )
    for name, sig in signatures.items():
        for kind in ("inputs", "outputs"):
            for tensor, info in sig[kind].items():
                if info["dtype"] not in ALLOWED_SIGNATURE_DTYPES:
                    raise VerificationError(
                        f"SavedModel signature {name!r} {kind[:-1]} {tensor!r} is {info['dtype']}; "
                        "TF Serving's REST API needs DT_FLOAT (or DT_STRING)."
                    )
                if not info["shape"] or info["shape"][0] != -1:
                    raise VerificationError(
                        f"SavedModel signature {name!r} {kind[:-1]} {tensor!r} has shape {info['shape']}; "
                        "the batch dimension must be -1."
                    )


def graph_op_types(meta_graph) -> set[str]:
    """All op types in the graph and its function library."""
    ops = {node.op for node in meta_graph.graph_def.node}
    for function in meta_graph.graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def check_graph_ops(meta_graph) -> None:
    forbidden = sorted(op for op in graph_op_types(meta_graph) if FORBIDDEN_OPS.search(op))
    if forbidden:
        raise VerificationError(
            f"The SavedModel graph contains {forbidden}: random or TFP ops, which tf2onnx cannot convert and "
            "which make serving non-deterministic. Export plain TF on distribution parameters, noise as an input."
        )


def verify_savedmodel(path, functions: dict[str, ServingFunction], cases: list[Case], log=print) -> dict:
    """Loads ``path`` like TF Serving, checks its signatures and runs every case.

    Fills ``case.savedmodel``. Returns ``{"signatures": ..., "max_error": {signature: err}}``.

    Raises:
      VerificationError: on the first problem, naming signature, output and error.
    """
    log(
        f"Verifying the SavedModel through TensorFlow's loader ({len(functions)} signatures, batch "
        f"{'/'.join(map(str, BATCH_SIZES))})..."
    )
    with savedmodel_session(path) as (session, meta_graph):
        signatures = describe_signatures(meta_graph)
        check_signature_defs(signatures, functions)
        check_graph_ops(meta_graph)
        for case in cases:
            try:
                case.savedmodel = run_signature(session, meta_graph, case.function, case.feeds)
            except Exception as err:
                raise VerificationError(
                    f"SavedModel signature {case.function!r} fails at batch {case.batch}: {type(err).__name__}: {err}"
                ) from err
    # Compared after the session is closed: inside it, TF builds graph ops
    # instead of running them eagerly (the PNG decoding needs eager).
    errors = {}
    for case in cases:
        if case.function == IMAGE_SIGNATURE:
            got = {IMAGE_OUTPUT: decode_png(case.savedmodel[IMAGE_OUTPUT]).astype(np.float32) / 255.0}
            tolerance = IMAGE_TOLERANCE
        else:
            got, tolerance = case.savedmodel, SAVEDMODEL_TOLERANCE
        for output, expected in case.keras.items():
            error = scaled_error(got[output], expected)
            errors[case.function] = max(errors.get(case.function, 0.0), error)
            if not error <= tolerance:
                raise VerificationError(
                    f"SavedModel signature {case.function!r} output {output!r} differs from the Keras model by "
                    f"{error:.3g} at batch {case.batch} (tolerance {tolerance:.3g})."
                )
    return {
        "signatures": signatures,
        "max_error": errors,
        "tolerance": SAVEDMODEL_TOLERANCE,
        "image_tolerance": IMAGE_TOLERANCE,
    }


# -- ONNX ---------------------------------------------------------------------------------------
def onnx_session(path, threads: int | None = None):
    """A CPU onnxruntime session; raises ``VerificationError`` if onnxruntime refuses the file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        # Spinning threads cost more than they save for small models on 2 cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise VerificationError(f"onnxruntime refuses {os.path.basename(path)}: {type(err).__name__}: {err}") from err


def check_onnx(path) -> None:
    """``onnx.checker`` full check of the file as written."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load(os.fspath(path)), full_check=True)
    except Exception as err:
        raise VerificationError(f"{os.path.basename(path)} fails onnx.checker (full check): {err}") from err


def verify_onnx(path, function: ServingFunction, cases: list[Case], log=print) -> dict:
    """Checks and runs ``path`` on the cases of ``function``: outputs must match the
    SavedModel's (the Keras model's when no SavedModel was exported) within
    ``ONNX_TOLERANCE``. Returns ``{"max_error": err, "inputs": ..., "outputs": ...}``."""
    log(f"Verifying {os.path.basename(path)} in onnxruntime...")
    check_onnx(path)
    session = onnx_session(path)
    inputs = {
        i.name: {"dtype": i.type, "shape": [d if isinstance(d, int) else str(d) for d in i.shape]}
        for i in session.get_inputs()
    }
    outputs = {
        o.name: {"dtype": o.type, "shape": [d if isinstance(d, int) else str(d) for d in o.shape]}
        for o in session.get_outputs()
    }
    if set(inputs) != set(function.input_names) or set(outputs) != set(function.output_names):
        raise VerificationError(
            f"{os.path.basename(path)} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
            f"expected {sorted(function.input_names)} and {sorted(function.output_names)}."
        )
    for name, info in {**inputs, **outputs}.items():
        if info["dtype"] != "tensor(float)":
            raise VerificationError(f"{os.path.basename(path)}: {name!r} is {info['dtype']}, not float32.")
    worst = 0.0
    for case in (c for c in cases if c.function == function.name):
        reference = case.savedmodel if case.savedmodel is not None else case.keras
        try:
            got = dict(zip([o.name for o in session.get_outputs()], session.run(None, case.feeds)))
        except Exception as err:
            raise VerificationError(
                f"{os.path.basename(path)} fails in onnxruntime at batch {case.batch}: {err}"
            ) from err
        for output, expected in reference.items():
            error = scaled_error(got[output], expected)
            worst = max(worst, error)
            if not error <= ONNX_TOLERANCE:
                against = "SavedModel" if case.savedmodel is not None else "Keras model"
                raise VerificationError(
                    f"{os.path.basename(path)} output {output!r} differs from the {against} by {error:.3g} "
                    f"at batch {case.batch} (tolerance {ONNX_TOLERANCE:.3g})."
                )
    return {"max_error": worst, "tolerance": ONNX_TOLERANCE, "inputs": inputs, "outputs": outputs}
