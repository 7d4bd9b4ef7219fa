"""What is exported: the model's ``serving_functions()``, checked against the
contract and wrapped to float32 outputs, plus ``manipulate_image``.

Every function here takes float32 (or, for ``manipulate_image``, string)
tensors in the order of its ``input_specs`` and returns a dict of named
tensors. The same objects feed the SavedModel, the ONNX converter and the
verification, so all three see one definition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from export.errors import ExportError
from serving.runtime.contract import DEFAULT_EDIT_SIGNATURE, IMAGE_INPUT, IMAGE_OUTPUT, IMAGE_SIGNATURE, SERVING_DEFAULT


@dataclasses.dataclass(frozen=True)
class ServingFunction:
    """One exported function.

    Attributes:
      name: signature / file name (``manipulate``).
      fn: ``fn(*tensors) -> {output_name: tensor}``.
      input_specs: ``tf.TensorSpec`` per positional input, named, batch dim ``None``.
      output_specs: ``tf.TensorSpec`` per output of ``fn``'s dict, named by
        its key, sorted by name.
    """

    name: str
    fn: Callable
    input_specs: tuple
    output_specs: tuple

    @property
    def input_names(self):
        return tuple(spec.name for spec in self.input_specs)

    @property
    def output_names(self):
        return tuple(spec.name for spec in self.output_specs)

    def describe(self):
        """JSON-able ``{"inputs": {name: {dtype, shape}}, "outputs": {...}}``, unknown dims -1."""

        def tensors(specs):
            return {
                spec.name: {"dtype": spec.dtype.name, "shape": [-1 if d is None else int(d) for d in spec.shape]}
                for spec in specs
            }

        return {"inputs": tensors(self.input_specs), "outputs": tensors(self.output_specs)}


def is_image_model(model) -> bool:
    return len(model.data_shape) == 3


def _float32_outputs(fn):
    """Wraps ``fn`` so that every floating output is float32 (a mixed-precision
    model may return float16 from a layer that was not pinned to float32)."""

    def wrapped(*args):
        outputs = fn(*args)
        return {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v for k, v in outputs.items()}

    return wrapped


def _check_contract(model, name, fn, specs) -> tuple:
    """Checks one ``serving_functions()`` entry; returns its output specs (float32), sorted by name."""
    owner = f"{type(model).__name__}.serving_functions()[{name!r}]"
    specs = list(specs)
    names = [spec.name for spec in specs]
    if not all(isinstance(spec, tf.TensorSpec) for spec in specs):
        raise ExportError(f"{owner}: input specs must be tf.TensorSpec.")
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ExportError(f"{owner}: every input spec needs a distinct name, got {names}.")
    for spec in specs:
        if spec.dtype != tf.float32 or spec.shape.rank is None or spec.shape.rank < 1 or spec.shape[0] is not None:
            raise ExportError(f"{owner}: input {spec.name!r} must be float32 with batch dim None, got {spec}.")
    # One eager call at batch 1 gives the output names and shapes, several
    # times faster than tracing (the SavedModel export traces anyway).
    outputs = fn(*[tf.zeros([1, *spec.shape[1:]], spec.dtype) for spec in specs])
    if not isinstance(outputs, dict) or not outputs:
        raise ExportError(f"{owner}: must return a non-empty dict of named tensors, got {type(outputs).__name__}.")
    clashes = set(outputs) & set(names)
    if clashes:
        # tf2onnx breaks when an output is named like an input.
        raise ExportError(f"{owner}: output name(s) {sorted(clashes)} are also input names; rename them.")
    return tuple(
        tf.TensorSpec(
            [None, *outputs[key].shape[1:]],
            tf.float32 if outputs[key].dtype.is_floating else outputs[key].dtype,
            name=key,
        )
        for key in sorted(outputs)
    )


def model_functions(model) -> dict[str, ServingFunction]:
    """The model's ``serving_functions()``, checked and with float32 outputs."""
    raw = model.serving_functions()
    if DEFAULT_EDIT_SIGNATURE not in raw:
        raise ExportError(
            f"{type(model).__name__}.serving_functions() has no {DEFAULT_EDIT_SIGNATURE!r}, which {SERVING_DEFAULT} "
            "serves."
        )
    functions = {}
    for name, (fn, specs) in raw.items():
        output_specs = _check_contract(model, name, fn, specs)
        functions[name] = ServingFunction(name, _float32_outputs(fn), tuple(specs), output_specs)
    return functions


def image_function(model, manipulate: ServingFunction) -> ServingFunction:
    """``manipulate_image(image_bytes [None] string, <manipulate's other inputs>)
    -> edited_image_bytes [None] string``.

    Each PNG/JPEG/BMP/GIF picture is decoded to the model's channel count,
    resized (bilinear, aspect ratio not kept) to the model's ``H×W`` when it
    differs, scaled to [0, 1], edited by ``manipulate`` and encoded as PNG at
    the model's size. The image replaces ``manipulate``'s data input (the one
    shaped ``[None, *data_shape]``); its other inputs (``y_target``, or
    ``y, y_target`` for a conditional VAE) pass through unchanged.
    """
    height, width, channels = model.data_shape
    image_positions = [i for i, spec in enumerate(manipulate.input_specs) if tuple(spec.shape[1:]) == model.data_shape]
    if not image_positions:
        raise ExportError(
            f"{type(model).__name__}: manipulate has no input shaped [None, {height}, {width}, {channels}]."
        )
    if len(manipulate.output_names) != 1:
        raise ExportError(
            f"manipulate returns {list(manipulate.output_names)}; manipulate_image needs exactly one output."
        )
    (output,) = manipulate.output_names
    position = image_positions[0]
    specs = list(manipulate.input_specs)
    specs[position] = tf.TensorSpec([None], tf.string, name=IMAGE_INPUT)

    def decode_one(data):
        image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False)
        image = tf.cast(image, tf.float32) / 255.0
        same_size = tf.logical_and(tf.shape(image)[0] == height, tf.shape(image)[1] == width)
        image = tf.cond(same_size, lambda: image, lambda: tf.image.resize(image, [height, width], antialias=True))
        return tf.reshape(image, [height, width, channels])

    def encode_one(image):
        # round, not truncate: the decoded PNG is then within 0.5/255 of the edit
        pixels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
        return tf.io.encode_png(pixels)

    def manipulate_image(*args):
        args = list(args)
        args[position] = tf.map_fn(
            decode_one, args[position], fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32)
        )
        edited = manipulate.fn(*args)
        return {IMAGE_OUTPUT: tf.map_fn(encode_one, edited[output], fn_output_signature=tf.TensorSpec([], tf.string))}

    return ServingFunction(
        IMAGE_SIGNATURE, manipulate_image, tuple(specs), (tf.TensorSpec([None], tf.string, name=IMAGE_OUTPUT),)
    )


def signature_functions(model) -> dict[str, ServingFunction]:
    """Every SavedModel signature: ``serving_default`` (= ``manipulate``), each
    of ``serving_functions()`` and, for image models, ``manipulate_image``."""
    functions = model_functions(model)
    default = functions[DEFAULT_EDIT_SIGNATURE]
    signatures = {SERVING_DEFAULT: dataclasses.replace(default, name=SERVING_DEFAULT)}
    signatures.update(functions)
    if is_image_model(model):
        signatures[IMAGE_SIGNATURE] = image_function(model, default)
    return signatures
