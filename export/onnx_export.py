"""Converting exported functions to ONNX with tf2onnx.

Each file has float32 inputs and outputs named like the SavedModel
signature's (``x``, ``y_target`` -> ``x_edited``), a symbolic batch dimension
named ``batch``, and the model's description in ``metadata_props``.

Strided ``Conv2DTranspose`` layers are converted as sub-pixel convolutions
(``Conv`` + ``DepthToSpace``, ``export.subpixel``), and the final RGB Conv
behind the last one is computed on the 4 pixel phases: the same function
(≤ 1e-6 apart), but onnxruntime's ``Conv`` is faster than its ``ConvTranspose``
and wastes less of its channel blocks (``manipulate`` of the 64×64 faces
model: 1.3× faster at batch 1, 1.5× at batch 16 and 256 in ``bench/bench_inference.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import onnx
import tensorflow as tf

from export.errors import ExportError
from export.signatures import ServingFunction
from export.subpixel import fold_depth_to_space, subpixel_conv_transpose

# tf2onnx 1.17 converts up to opset 18; 17 is the oldest that the brief
# allows and what onnxruntime, TensorRT and the web runtimes all accept.
DEFAULT_OPSET = 17
BATCH_DIM = "batch"


@contextlib.contextmanager
def _quiet_tf2onnx():
    """tf2onnx logs every rewrite at INFO; keep its errors only."""
    logger = logging.getLogger("tf2onnx")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _name_batch_dim(model: onnx.ModelProto) -> None:
    """Names dim 0 of every graph input and output ``batch`` (tf2onnx leaves ``unk__N``)."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def convert(
    function: ServingFunction, path, metadata_props: dict[str, str], opset: int = DEFAULT_OPSET, subpixel: bool = True
) -> onnx.ModelProto:
    """Converts ``function`` to ONNX at ``path`` and checks it with
    ``onnx.checker.check_model(full_check=True)``.

    ``subpixel``: strided "same" ``Conv2DTranspose`` layers become ``Conv`` +
    ``DepthToSpace``, and a ``DepthToSpace`` feeding a narrow Conv (the final
    RGB one) moves behind it (``export.subpixel``); ``False``: plain tf2onnx
    (``ConvTranspose``).

    Raises:
      ExportError: tf2onnx failed, or the ONNX checker refused the result.
    """
    import tf2onnx  # imported here: it costs a second and only export needs it

    try:
        rewrite = subpixel_conv_transpose() if subpixel else contextlib.nullcontext()
        with _quiet_tf2onnx(), rewrite:
            model, _ = tf2onnx.convert.from_function(
                tf.function(function.fn), input_signature=list(function.input_specs), opset=opset
            )
    except Exception as err:  # tf2onnx raises bare Exceptions for unsupported ops
        raise ExportError(f"tf2onnx could not convert {function.name!r}: {type(err).__name__}: {err}") from err
    if subpixel:
        fold_depth_to_space(model)
    _name_batch_dim(model)
    onnx.helper.set_model_props(model, {**metadata_props, "function": function.name})
    model.doc_string = f"{function.name}: inputs {list(function.input_names)} -> outputs {list(function.output_names)}"
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:  # ValidationError, InferenceError
        raise ExportError(f"{function.name}.onnx fails onnx.checker (full check): {err}") from err
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, os.fspath(path))
    return model
