"""The ``synthetic_faces`` tensorflow-datasets builder.

Importing this module (``import keras_csvae.data`` does) registers the
builder, so that::

    tfds.load("synthetic_faces/64", split="train", data_dir=...)

renders the dataset on first use (tfds shows its progress bar; about a
minute for the 24,000 faces at 64 px, mostly PNG encoding) and then reads it
from ``data_dir``.
Configs ``synthetic_faces/32`` and ``synthetic_faces/64`` (the default).

Each example (the same faces, in the same order, as
``SyntheticFaces(S).sample(n, SPLIT_SEEDS[split])``)::

    image    uint8 [S, S, 3]
    labels   {glasses, smile, facial_hair}: bool
    styles   {glasses, smile, facial_hair}: int32 style id, -1 when off
    factors  {name: float32 scalar or [3]} the continuous factors and
             hair_style (as a float), see keras_csvae.data.synthetic_faces.factors
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from keras_csvae.data import synthetic_faces

_NAME = "synthetic_faces"
# Examples per generated batch (one renderer pass); bounds memory, not output.
_RENDER_CHUNK = 1024


@dataclasses.dataclass
class SyntheticFacesConfig(tfds.core.BuilderConfig):
    """A builder config: the image side, 32 or 64."""

    image_size: int = 64


def _continuous_factor_names() -> tuple[str, ...]:
    """Factors stored under ``factors``: every factor but labels and styles."""
    renderer = synthetic_faces.SyntheticFaces()
    excluded = set(synthetic_faces.ATTRIBUTES)
    excluded |= {f"{a}_style" for a in synthetic_faces.ATTRIBUTES}
    return tuple(name for name in renderer.factor_names if name not in excluded)


def _already_registered() -> bool:
    """True when a builder of this name exists (this module reloaded): tfds
    refuses to register a name twice."""
    registry = getattr(tfds.core.registered, "_DATASET_REGISTRY", {})
    return _NAME in registry


class SyntheticFacesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=_already_registered()):
    """Procedural cartoon faces with ground-truth styles and factors."""

    name = _NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticFacesConfig(name=str(size), image_size=size, description=f"{size}x{size} px faces")
        for size in synthetic_faces.IMAGE_SIZES
    ]
    DEFAULT_CONFIG_NAME = "64"
    # Examples per split; tests override it (e.g. monkeypatch) for a tiny build.
    SPLIT_SIZES = dict(synthetic_faces.DEFAULT_SPLIT_SIZES)

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        one_face = synthetic_faces.SyntheticFaces().sample_factors(1, seed=0)
        factor_shapes = {name: one_face[name].shape[1:] for name in _continuous_factor_names()}
        attributes = synthetic_faces.ATTRIBUTES
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(size, size, 3)),
                    "labels": {a: tfds.features.Tensor(shape=(), dtype=np.bool_) for a in attributes},
                    "styles": {a: tfds.features.Tensor(shape=(), dtype=np.int32) for a in attributes},
                    "factors": {
                        name: tfds.features.Tensor(shape=shape, dtype=np.float32)
                        for name, shape in factor_shapes.items()
                    },
                }
            ),
            supervised_keys=None,
            homepage="https://arxiv.org/abs/1812.06190",
            # The examples must stay in renderer order (seed order), not be
            # shuffled by key.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is rendered
        return {split: self._generate_examples(split) for split in synthetic_faces.SPLIT_SEEDS}

    def _generate_examples(self, split: str):
        renderer = synthetic_faces.SyntheticFaces(self.builder_config.image_size)
        factor_names = _continuous_factor_names()
        n = self.SPLIT_SIZES[split]
        key = 0
        for images, labels, factors in renderer.iter_chunks(n, synthetic_faces.SPLIT_SEEDS[split], chunk=_RENDER_CHUNK):
            for i, image in enumerate(images):
                yield (
                    key,
                    {
                        "image": image,
                        "labels": {a: bool(labels[i, j]) for j, a in enumerate(synthetic_faces.ATTRIBUTES)},
                        "styles": {a: np.int32(factors[f"{a}_style"][i]) for a in synthetic_faces.ATTRIBUTES},
                        "factors": {name: np.asarray(factors[name][i], np.float32) for name in factor_names},
                    },
                )
                key += 1
