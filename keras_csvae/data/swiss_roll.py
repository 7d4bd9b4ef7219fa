"""The paper's toy data: a 3-D swiss roll with one binary label.

A point is ``(t·cos t, h, t·sin t)`` with roll angle ``t ~ U(1.5π, 4.5π)`` and
height ``h ~ U(0, 21)``, plus Gaussian noise (σ = 0.05), then standardised
with the training split's statistics.

The label is ``y = 1`` when the point lies in the upper half of the roll,
``h > 10.5`` (the median height), else ``0``: balanced and a function of
``x``. A CSVAE must put "which half" in ``W`` and everything else (the
position along the roll, the distance from the middle) in ``Z``, so that the
adversary cannot tell the halves apart from ``z``.
"""

from __future__ import annotations

import numpy as np

from keras_csvae.data.registry import Dataset, DatasetInfo, register_dataset

SPLIT_SIZES = {"train": 10_000, "validation": 2_000, "test": 2_000}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
NOISE = 0.05


def sample_swiss_roll(n: int, seed: int):
    """Returns ``x`` ``[n, 3]`` (raw, unstandardised) and ``y`` ``[n, 1]`` float32."""
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1.0 + 2.0 * rng.random(n))
    h = 21.0 * rng.random(n)
    x = np.stack([t * np.cos(t), h, t * np.sin(t)], axis=-1) + NOISE * rng.standard_normal((n, 3))
    y = (h > 10.5).astype(np.float32)[:, None]
    return x.astype(np.float32), y


def _standardiser():
    x, _ = sample_swiss_roll(SPLIT_SIZES["train"], SPLIT_SEEDS["train"])
    return x.mean(axis=0), x.std(axis=0)


def arrays(split: str, num_examples: int | None = None):
    """``x`` ``[n, 3]`` standardised float32, ``y`` ``[n, 1]`` float32."""
    n = num_examples or SPLIT_SIZES[split]
    x, y = sample_swiss_roll(n, SPLIT_SEEDS[split])
    mean, std = _standardiser()
    return ((x - mean) / std).astype(np.float32), y


def info(num_examples: int | None = None) -> DatasetInfo:
    return DatasetInfo(
        name="swiss_roll",
        input_shape=(3,),
        label_names=("upper_half",),
        description="3-D swiss roll; label: the point is in the upper half of the roll (toy experiment).",
    )


register_dataset(
    "swiss_roll",
    Dataset(
        info_fn=info,
        arrays_fn=arrays,
        options=("num_examples",),
    ),
)
