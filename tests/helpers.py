"""Shared test helpers: tiny models and data, so each test stays short."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

TINY_CONV = dict(architecture="conv", conv_filters=(4, 8, 8), dense_units=16, decoder_filters=(8, 8, 4), z_dim=4)
TINY_MLP = dict(architecture="mlp", hidden_units=(16, 16), z_dim=2)
# The signatures of a CSVAE export.
SIGNATURES = {
    "serving_default",
    "encode",
    "decode",
    "reconstruct",
    "manipulate",
    "edit_at",
    "sample",
    "manipulate_image",
}
# Conv arguments, as lists the way JSON configs hold them, that every registered model accepts.
TINY_IMAGE = dict(
    architecture="conv",
    conv_filters=[4, 8, 8],
    dense_units=16,
    decoder_filters=[8, 8, 4],
    z_dim=4,
    w_dim=2,
    adversary_units=[8],
)


def tiny_csvae(data_shape=(3,), num_labels=1, **kwargs):
    from keras_csvae import CSVAE

    defaults = TINY_CONV if len(data_shape) == 3 else TINY_MLP
    return CSVAE(data_shape=data_shape, num_labels=num_labels, **{**defaults, **kwargs})


def compiled(model, jit_compile=False):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        adversary_optimizer=keras.optimizers.Adam(1e-3),
        jit_compile=jit_compile,
    )
    return model


def random_data(n=32, data_shape=(3,), num_labels=1, seed=0):
    """``x`` float32 ``[n, *data_shape]`` (in [0, 1] for images), ``y`` in {0, 1} ``[n, k]``."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *data_shape)).astype(np.float32)
    y = (rng.random((n, num_labels)) < 0.5).astype(np.float32)
    return x, y


def weights_of(variables):
    return [np.array(v) for v in variables]


def assert_unchanged(before, variables):
    for old, var in zip(before, variables):
        np.testing.assert_array_equal(old, np.array(var), err_msg=var.path)


def assert_changed(before, variables):
    assert any(not np.array_equal(old, np.array(var)) for old, var in zip(before, variables))


def run_python(code, env=None, timeout=300):
    """Runs ``code`` in a fresh interpreter; returns stdout (raises with stderr on failure)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def csvae_cli(*args, timeout=600, env=None):
    """Runs ``python -m keras_csvae.cli ARGS``; returns the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "keras_csvae.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
