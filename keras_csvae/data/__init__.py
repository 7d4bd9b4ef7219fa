"""Datasets by name: ``keras_csvae.data.load("swiss_roll", split="train")``.

Importing this package registers every built-in dataset (and the
``synthetic_faces`` tensorflow-datasets builder).
"""

# Each module registers its dataset(s) on import.
from keras_csvae.data import (  # noqa: E402,F401  # noqa: E402,F401
    celeba,
    digits,
    swiss_roll,  # noqa: E402,F401
    synthetic_faces,
    synthetic_faces_tfds,
    tfd,
)
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
