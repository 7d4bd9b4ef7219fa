"""keras-csvae: the Conditional Subspace VAE in Keras 3 + TensorFlow Probability.

The top-level names are imported lazily, so that ``import keras_csvae`` (and
the TensorFlow-free parts, such as the onnxruntime editor) start fast.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "CSVAE": "keras_csvae.models",
    "InputError": "keras_csvae.models",
    "Betas": "keras_csvae.losses",
    "WPrior": "keras_csvae.losses",
    "TrainConfig": "keras_csvae.training",
    "train": "keras_csvae.training",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_csvae' has no attribute {name!r}")
