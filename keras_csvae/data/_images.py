"""Image helpers shared by the real-data loaders (CelebA, TFD, digits).

The conv architecture halves the image three times (5x5 convolutions, stride
2), so every loader offers only square sizes divisible by 8 and resizes its
images to one of them here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_csvae.data.registry import DatasetError


def check_image_size(dataset: str, image_size, allowed: Sequence[int]) -> int:
    """Returns ``image_size`` as an int, or raises naming the allowed sizes."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size not in allowed:
        raise DatasetError(
            f"Dataset {dataset!r} does not support image_size={image_size!r}; "
            f"use one of {sorted(allowed)} (square sizes divisible by 8 for the conv model)."
        )
    return int(image_size)


def check_positive_int(dataset: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DatasetError(f"Dataset {dataset!r}: option {name} must be a positive integer; got {value!r}.")
    return int(value)


def resize(images, size: int):
    """Bilinear resize of ``[..., H, W, C]`` float images in [0, 1] to ``size x size``.

    Works on one image or a batch, eagerly or inside ``tf.data.Dataset.map``.
    ``antialias`` matters when shrinking (148 -> 64 on CelebA): without it
    bilinear sampling skips pixels and aliases fine texture such as hair.
    Returns a float32 tensor, clipped to [0, 1] against rounding.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, dtype=tf.float32)
    if images.shape[-3] != size or images.shape[-2] != size:
        images = tf.image.resize(images, (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(images, 0.0, 1.0)


def resize_array(images: np.ndarray, size: int, chunk: int = 1024) -> np.ndarray:
    """``resize`` for a numpy batch ``[n, H, W, C]``; returns float32 numpy.

    Works in chunks so that resizing thousands of images does not hold a
    second full float copy in TensorFlow at once.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.shape[1:3] == (size, size):
        return np.clip(images, 0.0, 1.0)
    out = np.empty((images.shape[0], size, size, images.shape[-1]), dtype=np.float32)
    for start in range(0, images.shape[0], chunk):
        out[start : start + chunk] = resize(images[start : start + chunk], size).numpy()
    return out
