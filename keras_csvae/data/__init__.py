"""Datasets by name: ``keras_csvae.data.load("swiss_roll", split="train")``.

Importing this package registers every built-in dataset (and the
``synthetic_faces`` tensorflow-datasets builder).
"""

from keras_csvae.data.registry import (
    Dataset,
    DatasetError,
    DatasetInfo,
    as_float_images,
    get,
    info,
    load,
    load_arrays,
    load_stored,
    names,
    register_dataset,
)

# Each module registers its dataset(s) on import.
from keras_csvae.data import swiss_roll  # noqa: E402,F401
from keras_csvae.data import celeba, digits, tfd  # noqa: E402,F401
from keras_csvae.data import synthetic_faces, synthetic_faces_tfds  # noqa: E402,F401

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "as_float_images",
    "get",
    "info",
    "load",
    "load_arrays",
    "load_stored",
    "names",
    "register_dataset",
]
