"""Choosing the ``tf.distribute`` strategy and the mixed-precision policy."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf


def resolve_precision(precision: str) -> str:
    """``auto`` → ``mixed_float16`` on a GPU machine, ``float32`` on CPU."""
    if precision == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    return precision


def cpu_has_bfloat16() -> bool:
    """Whether this (Linux) CPU has native bfloat16 matmuls (AMX or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def set_precision(precision: str) -> str:
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy for ``name``.

    - ``auto``: ``MirroredStrategy`` over all GPUs if there are any, else the
      default strategy.
    - ``mirrored``: ``MirroredStrategy`` over all GPUs, or over all logical
      CPU devices when there is no GPU (how it is tested here).
    - ``multi_worker``: ``MultiWorkerMirroredStrategy`` configured by the
      ``TF_CONFIG`` environment variable (one process per machine). It must be
      created before any other TensorFlow op runs.
    """
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multi_worker needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}).'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown strategy {name!r}.")


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker job."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    cluster = tf_config.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    # Without an explicit chief, worker 0 plays that role.
    return "chief" not in cluster and task.get("type") == "worker" and int(task.get("index", 0)) == 0
