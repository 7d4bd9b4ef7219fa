"""The ``synthetic_faces`` dataset: the ``SyntheticFaces`` sampler and renderer,
its splits, and its registry entry (``keras_csvae.data.load("synthetic_faces",
split, image_size=..., num_examples=...)``): numpy arrays, and a ``tf.data``
pipeline that renders on the fly and keeps what it rendered.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from keras_csvae.data import registry
from keras_csvae.data.synthetic_faces.factors import (
    ATTRIBUTES,
    FACTOR_NAMES,
    HAIR_STYLES,
    NUISANCE_NAMES,
    STYLES,
    counterfactual_factors,
    labels,
    sample_factors,
    slice_factors,
    style_id,
    style_of,
)
from keras_csvae.data.synthetic_faces.rendering import FaceRenderer

IMAGE_SIZES = (32, 64)

# A distinct fixed seed per split; the registry and the tfds builder share them.
SPLIT_SEEDS = {"train": 20180101, "validation": 20180102, "test": 20180103}
DEFAULT_SPLIT_SIZES = {"train": 20000, "validation": 2000, "test": 2000}


def _check_image_size(image_size) -> int:
    if image_size not in IMAGE_SIZES:
        raise registry.DatasetError(
            f"synthetic_faces renders {' or '.join(map(str, IMAGE_SIZES))} px images; got image_size={image_size!r}."
        )
    return int(image_size)


class SyntheticFaces(FaceRenderer):
    """Sampler and renderer of cartoon faces with known attributes, styles and
    factors (``factors.py`` documents the factors dict).

    Args:
      image_size: 32 or 64 (anything else raises ``DatasetError``).
      attribute_probs: probability of each attribute being on (``k`` floats
        in ATTRIBUTES order); the labels are sampled independently.
      chunk_size: faces rendered per numpy pass (see ``FaceRenderer``).
    """

    attributes = ATTRIBUTES
    styles = STYLES
    hair_styles = HAIR_STYLES
    factor_names = FACTOR_NAMES
    nuisance_names = NUISANCE_NAMES
    labels = staticmethod(labels)
    style_of = staticmethod(style_of)
    style_id = staticmethod(style_id)

    def __init__(self, image_size: int = 64, attribute_probs=(0.5, 0.5, 0.5), chunk_size: int | None = None):
        super().__init__(_check_image_size(image_size), chunk_size)
        probs = np.asarray(attribute_probs, np.float64)
        if probs.shape != (len(ATTRIBUTES),) or np.any((probs < 0) | (probs > 1)):
            raise ValueError(f"attribute_probs must be {len(ATTRIBUTES)} probabilities, got {attribute_probs!r}.")
        self.attribute_probs = probs

    def sample_factors(self, n: int, seed: int) -> dict[str, np.ndarray]:
        """Samples the factors of ``n`` faces (``factors.sample_factors``)."""
        return sample_factors(n, seed, self.attribute_probs)

    def sample(self, n: int, seed: int):
        """Samples and renders ``n`` faces.

        Returns:
          ``(images, labels, factors)``: uint8 ``[n, S, S, 3]``, int32
          ``[n, k]`` and the factors dict.
        """
        factors = self.sample_factors(n, seed)
        return self.render(factors), self.labels(factors), factors

    def iter_chunks(self, n: int, seed: int, chunk: int = 512) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
        """``sample(n, seed)`` in consecutive pieces of at most ``chunk`` faces."""
        factors = self.sample_factors(n, seed)
        for start in range(0, n, chunk):
            part = slice_factors(factors, slice(start, start + chunk))
            yield self.render(part), self.labels(part), part

    def counterfactual(self, factors: dict, attribute: str, value, style=None):
        """The same faces with ``attribute`` set to ``value`` (and ``style``:
        see ``factors.counterfactual_factors``).

        Returns:
          ``(images, new_factors)``: uint8 ``[n, S, S, 3]``; pixels outside
          ``render(..., return_masks=True)[1][attribute]`` equal those of
          ``render(factors)``.
        """
        new_factors = counterfactual_factors(factors, attribute, value, style)
        return self.render(new_factors), new_factors


def split_size(split: str, num_examples=None) -> int:
    """Number of faces in ``split``: ``num_examples`` or the default size."""
    if num_examples is None:
        return DEFAULT_SPLIT_SIZES[split]
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or num_examples < 1:
        raise registry.DatasetError(f"num_examples must be a positive integer, got {num_examples!r}.")
    return int(num_examples)


def dataset_info(image_size: int = 64, num_examples=None) -> registry.DatasetInfo:
    size = _check_image_size(image_size)
    return registry.DatasetInfo(
        name="synthetic_faces",
        input_shape=(size, size, 3),
        label_names=ATTRIBUTES,
        description=(
            "procedural cartoon faces: glasses, smile, facial hair, 3 styles "
            "each, exact counterfactuals (rendered, no download)"
        ),
    )


def load_arrays(split: str, image_size: int = 64, num_examples=None):
    """``(x, y)``: float32 ``[n, S, S, 3]`` in ``[0, 1]`` and float32 ``[n, 3]``.

    The first ``num_examples`` faces of the split (its fixed seed), so a small
    ``num_examples`` is a prefix of the full split.
    """
    renderer = SyntheticFaces(image_size)
    n = split_size(split, num_examples)
    x = np.empty((n, renderer.image_size, renderer.image_size, 3), np.float32)
    y = np.empty((n, len(ATTRIBUTES)), np.float32)
    start = 0
    for images, chunk_labels, _ in renderer.iter_chunks(n, SPLIT_SEEDS[split]):
        stop = start + len(images)
        np.divide(images, np.float32(255.0), out=x[start:stop], dtype=np.float32)
        y[start:stop] = chunk_labels
        start = stop
    return x, y


class _RenderedChunks:
    """Renders a split lazily, chunk by chunk, and keeps the uint8 chunks so
    later epochs do not render again (``[n, S, S, 3]`` uint8: 245 MB for the
    default train split at 64 px)."""

    def __init__(self, renderer: SyntheticFaces, n: int, seed: int, chunk: int = 512):
        self.renderer, self.n, self.seed, self.chunk = renderer, n, seed, chunk
        self._factors = None
        self._chunks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self):
        if self._factors is None:
            self._factors = self.renderer.sample_factors(self.n, self.seed)
        for start in range(0, self.n, self.chunk):
            if start not in self._chunks:
                part = slice_factors(self._factors, slice(start, start + self.chunk))
                self._chunks[start] = (
                    self.renderer.render(part),
                    self.renderer.labels(part).astype(np.float32),
                )
            yield self._chunks[start]


def load_tf_data(split: str, image_size: int = 64, num_examples=None):
    """A ``tf.data.Dataset`` of unbatched ``(x, y)``: uint8 ``[S, S, 3]`` in
    ``[0, 255]`` (the registry's stored form; ``registry.load`` gives float32
    in ``[0, 1]``, the values of ``load_arrays``) and float32 ``[3]``.

    Rendered on the fly during the first pass and kept in memory as uint8.
    """
    import tensorflow as tf

    renderer = SyntheticFaces(image_size)
    n = split_size(split, num_examples)
    size = renderer.image_size
    chunks = tf.data.Dataset.from_generator(
        _RenderedChunks(renderer, n, SPLIT_SEEDS[split]),
        output_signature=(
            tf.TensorSpec((None, size, size, 3), tf.uint8),
            tf.TensorSpec((None, len(ATTRIBUTES)), tf.float32),
        ),
    )

    return chunks.unbatch().apply(tf.data.experimental.assert_cardinality(n))


registry.register_dataset(
    "synthetic_faces",
    registry.Dataset(
        info_fn=dataset_info,
        arrays_fn=load_arrays,
        tf_data_fn=load_tf_data,
        options=("image_size", "num_examples"),
    ),
)
