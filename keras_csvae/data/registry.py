"""A small registry of datasets, so that the CLI and users select data by name.

Every dataset yields unbatched ``(x, y)`` pairs:

- ``x``: float32, shape ``input_shape`` (images ``[H, W, C]`` in ``[0, 1]``,
  vectors ``[D]``);
- ``y``: float32, shape ``[k]``, binary labels in ``{0, 1}`` (a multi-class
  label is one-hot: one binary label per class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np


class DatasetError(ValueError):
    """Unknown dataset, unsupported option, or data that cannot be read."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    Attributes:
      name: registry name.
      input_shape: shape of one ``x``.
      label_names: one name per binary label (``len == k``).
      description: one line for ``csvae data --list``.
    """

    name: str
    input_shape: tuple[int, ...]
    label_names: tuple[str, ...]
    description: str = ""

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A registered dataset.

    Attributes:
      info_fn: ``info_fn(**options) -> DatasetInfo``.
      arrays_fn: ``arrays_fn(split, **options) -> (x, y)`` numpy arrays with
        ``x`` float32 ``[n, *input_shape]`` and ``y`` float32 ``[n, k]``.
        Used for datasets small enough to hold in memory.
      tf_data_fn: optional ``tf_data_fn(split, **options) -> tf.data.Dataset``
        yielding unbatched ``(x, y)``; defaults to slicing ``arrays_fn``.
        Images may come as uint8 in ``[0, 255]``: a quarter of the memory and
        copying of float32 in shuffle buffers and batching (``load_stored``);
        ``load`` converts them.
      options: names of the keyword options the dataset accepts
        (``image_size``, ``num_examples``, ``data_dir`` ...).
    """

    info_fn: Callable[..., DatasetInfo]
    arrays_fn: Callable[..., tuple[np.ndarray, np.ndarray]]
    tf_data_fn: Callable[..., Any] | None = None
    options: tuple[str, ...] = ()


_REGISTRY: dict[str, Dataset] = {}
SPLITS = ("train", "validation", "test")


def register_dataset(name: str, dataset: Dataset) -> None:
    _REGISTRY[name] = dataset


def get(name: str) -> Dataset:
    if name not in _REGISTRY:
        raise DatasetError(f"Unknown dataset {name!r}. Known datasets: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


def _check_options(name: str, dataset: Dataset, options: dict[str, Any]) -> dict:
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - set(dataset.options)
    if unknown:
        raise DatasetError(
            f"Dataset {name!r} does not take option(s) {sorted(unknown)}; it takes {list(dataset.options) or 'none'}."
        )
    return options


def info(name: str, **options) -> DatasetInfo:
    """The ``DatasetInfo`` of dataset ``name`` with the given options."""
    dataset = get(name)
    return dataset.info_fn(**_check_options(name, dataset, options))


def load_arrays(name: str, split: str = "train", **options):
    """Returns ``(x, y)`` numpy arrays of one split (see ``Dataset.arrays_fn``)."""
    if split not in SPLITS:
        raise DatasetError(f"Unknown split {split!r}; use one of {SPLITS}.")
    dataset = get(name)
    return dataset.arrays_fn(split, **_check_options(name, dataset, options))


def load(name: str, split: str = "train", **options):
    """Returns a ``tf.data.Dataset`` of unbatched ``(x, y)`` float32 pairs."""
    import tensorflow as tf

    return load_stored(name, split, **options).map(as_float_images, num_parallel_calls=tf.data.AUTOTUNE)


def as_float_images(x, y):
    """``x`` uint8 in ``[0, 255]`` → float32 in ``[0, 1]`` (any shape); float ``x`` unchanged."""
    import tensorflow as tf

    if x.dtype == tf.uint8:
        x = tf.cast(x, tf.float32) / 255.0
    return x, y


def load_stored(name: str, split: str = "train", **options):
    """Like ``load``, with images as the dataset stores them (uint8 for
    rendered or decoded images): shuffle and batch these, then map
    ``as_float_images`` over batches (``training.train.dataset_for``)."""
    import tensorflow as tf

    if split not in SPLITS:
        raise DatasetError(f"Unknown split {split!r}; use one of {SPLITS}.")
    dataset = get(name)
    options = _check_options(name, dataset, options)
    if dataset.tf_data_fn is not None:
        return dataset.tf_data_fn(split, **options)
    x, y = dataset.arrays_fn(split, **options)
    return tf.data.Dataset.from_tensor_slices((x, y))
