"""scikit-learn's handwritten digits: a small, real, offline multi-class set.

``sklearn.datasets.load_digits`` ships with scikit-learn (1,797 scanned 8x8
digits, grey levels 0..16), so nothing is downloaded. It stands in for TFD's
one-hot multi-class setup (7 expressions) where TFD is not available.

Registered dataset ``digits``; each example is ``(x, y)``:

- ``x``: float32 ``[S, S, 1]`` in [0, 1] (grey level / 16). ``S = image_size``:
  16 (default: the 8x8 scan upsampled bilinearly, so that the conv model's
  three stride-2 convolutions end at 2x2 rather than 1x1), 8 (the raw scan)
  or 32.
- ``y``: float32 ``[10]``, one-hot ``digit_0`` .. ``digit_9``.

Splits: a fixed, stratified 70/15/15 split (seed 0): train 1,257,
validation 270, test 270 examples, disjoint, identical on every call.
"""

from __future__ import annotations

import functools

import numpy as np

from keras_csvae.data._images import check_image_size, resize_array
from keras_csvae.data.registry import Dataset, DatasetInfo, register_dataset

NUM_CLASSES = 10
LABEL_NAMES = tuple(f"digit_{d}" for d in range(NUM_CLASSES))
IMAGE_SIZES = (8, 16, 32)
DEFAULT_IMAGE_SIZE = 16
MAX_GREY_LEVEL = 16.0
SPLIT_SEED = 0
OPTIONS = ("image_size",)


@functools.lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """Rows of ``load_digits()`` in each split: stratified by digit, 70/15/15, fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    target = load_digits().target
    rows = np.arange(len(target))
    train, rest = train_test_split(rows, test_size=0.3, stratify=target, random_state=SPLIT_SEED)
    validation, test = train_test_split(rest, test_size=0.5, stratify=target[rest], random_state=SPLIT_SEED)
    return {"train": np.sort(train), "validation": np.sort(validation), "test": np.sort(test)}


def _info(*, image_size=DEFAULT_IMAGE_SIZE):
    image_size = check_image_size("digits", image_size, IMAGE_SIZES)
    return DatasetInfo(
        name="digits",
        input_shape=(image_size, image_size, 1),
        label_names=LABEL_NAMES,
        description=f"scikit-learn 8x8 handwritten digits at {image_size}x{image_size}, 10 one-hot labels",
    )


def _arrays(split, *, image_size=DEFAULT_IMAGE_SIZE):
    from sklearn.datasets import load_digits

    image_size = check_image_size("digits", image_size, IMAGE_SIZES)
    digits = load_digits()
    rows = split_indices()[split]
    x = (digits.images[rows] / MAX_GREY_LEVEL).astype(np.float32)[..., None]
    y = np.eye(NUM_CLASSES, dtype=np.float32)[digits.target[rows]]
    return resize_array(x, image_size), y


register_dataset(
    "digits",
    Dataset(info_fn=_info, arrays_fn=_arrays, options=OPTIONS),
)
