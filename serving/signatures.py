"""What a served model offers: named signatures of typed tensors.

Both backends describe their signatures with these classes, so the HTTP
layer (``serving.protocol``) parses requests and writes metadata the same way
whatever runs the model. Shapes use -1 for a dimension of any size; dim 0 is
always the batch.
"""

from __future__ import annotations

import dataclasses

FLOAT32 = "float32"
STRING = "string"
DTYPES = (FLOAT32, STRING)
# TF Serving's REST API returns a DT_STRING output as {"b64": ...} only when
# its name ends in "_bytes" (raw bytes are not JSON).
BYTES_SUFFIX = "_bytes"
PREDICT_METHOD = "tensorflow/serving/predict"

_TF_DTYPES = {FLOAT32: "DT_FLOAT", STRING: "DT_STRING"}
_V2_DATATYPES = {FLOAT32: "FP32", STRING: "BYTES"}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output.

    Attributes:
      name: the key clients use (``x``, ``y_target``, ``image_bytes``).
      dtype: ``"float32"`` or ``"string"`` (bytes).
      shape: dims, ``-1`` where any size goes; ``shape[0]`` is the batch (-1).
      tensor_name: the graph tensor (``serving_default_x:0``), shown in metadata.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    tensor_name: str = ""

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"{self.name}: dtype {self.dtype!r} is not one of {DTYPES}")

    @property
    def tf_dtype(self) -> str:
        """``DT_FLOAT`` / ``DT_STRING``, as TF Serving's metadata names them."""
        return _TF_DTYPES[self.dtype]

    @property
    def v2_datatype(self) -> str:
        """``FP32`` / ``BYTES``, as the Open Inference Protocol names them."""
        return _V2_DATATYPES[self.dtype]

    @property
    def is_bytes(self) -> bool:
        """Binary output: travels as ``{"b64": ...}`` in TF Serving's REST API."""
        return self.dtype == STRING and self.name.endswith(BYTES_SUFFIX)

    def accepts(self, shape) -> bool:
        """Whether an array of ``shape`` (batch included) fits this spec."""
        return len(shape) == len(self.shape) and all(want in (-1, got) for want, got in zip(self.shape[1:], shape[1:]))

    def shape_text(self) -> str:
        return "[" + ", ".join(str(d) for d in self.shape) + "]"


@dataclasses.dataclass(frozen=True)
class Signature:
    """A named function: inputs -> outputs, each a tuple of ``TensorSpec``."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    method_name: str = PREDICT_METHOD

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.outputs)

    def input(self, name: str) -> TensorSpec:
        return next(spec for spec in self.inputs if spec.name == name)

    def output(self, name: str) -> TensorSpec:
        return next(spec for spec in self.outputs if spec.name == name)

    def renamed(self, name: str) -> Signature:
        return dataclasses.replace(self, name=name)
