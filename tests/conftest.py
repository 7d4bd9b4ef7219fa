"""Test-wide set-up: quiet TensorFlow, CPU only, two logical CPU devices.

The logical devices must be configured before TensorFlow initialises its
runtime, so it happens here, at collection time, once for the whole session
(the TF tests share one process: importing TF costs seconds).
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Judges and other caches of this test session live in a fresh folder, never
# in the user's ~/.cache, so results do not depend on what a machine holds.
os.environ["KERAS_CSVAE_CACHE"] = tempfile.mkdtemp(prefix="keras-csvae-test-cache-")

import pytest  # noqa: E402


def pytest_configure(config):
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:  # runtime already initialised by a plugin
        pass


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends in float32, whatever it switched to."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
