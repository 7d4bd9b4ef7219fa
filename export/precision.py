"""A float32 copy of a model trained under a mixed-precision policy.

Exports compute in float32 whatever the training policy was:

- TF Serving's REST API cannot carry float16 at all, so inputs and outputs
  must be float32 anyway;
- on CPU (TF Serving without GPU, onnxruntime) float16 is emulated: no faster,
  and TensorFlow and onnxruntime round float16 differently, by far more than
  the 1e-4 the exported graphs are checked to agree within;
- mixed policies keep float32 master weights, so the float32 copy is the
  trained model, only computed without float16 rounding.
"""

from __future__ import annotations

import keras
import numpy as np

from export.errors import ExportError


def compute_dtypes(model) -> set[str]:
    """The compute dtypes of all layers of ``model`` (recursively) and of the model."""
    dtypes = {model.dtype_policy.compute_dtype}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        dtypes.add(layer.dtype_policy.compute_dtype)
    return dtypes


def float32_copy(model):
    """Returns ``(model32, info)``.

    ``model32`` is ``model`` itself when every layer already computes in
    float32, else a copy rebuilt from ``model.get_config()`` under the float32
    policy with the same (float32) weights. ``info`` records the training
    compute dtypes and whether a copy was made.
    """
    dtypes = compute_dtypes(model)
    info = {"trained_compute_dtypes": sorted(dtypes), "export_compute_dtype": "float32", "float32_copy": False}
    if dtypes == {"float32"}:
        return model, info
    config = dict(model.get_config())
    config["dtype"] = "float32"
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = type(model).from_config(config)
    except Exception as err:  # any constructor error means get_config is incomplete
        raise ExportError(
            f"Cannot rebuild {type(model).__name__} in float32 from its get_config() to export it: "
            f"{type(err).__name__}: {err}"
        ) from err
    finally:
        keras.mixed_precision.set_global_policy(previous)
    weights = model.get_weights()
    if len(copy.weights) != len(weights) or any(tuple(v.shape) != w.shape for v, w in zip(copy.weights, weights)):
        raise ExportError(
            f"{type(model).__name__} rebuilt from get_config() has different weights than the trained model; "
            "get_config() must return every constructor argument."
        )
    copy.set_weights([np.asarray(w, np.float32) if np.issubdtype(w.dtype, np.floating) else w for w in weights])
    if compute_dtypes(copy) != {"float32"}:
        raise ExportError(
            f"The float32 copy of {type(model).__name__} still computes in {sorted(compute_dtypes(copy))}."
        )
    info["float32_copy"] = True
    return copy, info
