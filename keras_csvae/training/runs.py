"""Run directories: what ``csvae train`` writes, and how evaluation and export read it.

``RUN_DIR`` layout:

- ``config.json`` (``CONFIG_FILE``): the resolved ``TrainConfig``, written once the inputs are checked;
- ``checkpoint/`` (``CHECKPOINT_DIR``): the last completed epoch (model, both optimisers, history);
- ``logs/`` (``LOGS_DIR``): TensorBoard;
- ``model.keras`` (``MODEL_FILE``) and ``history.json`` (``HISTORY_FILE``, one entry per epoch
  with every loss term): written when training ends, so their presence means a finished run;
- ``metrics.json`` (``METRICS_FILE``) and figures: written by ``csvae evaluate``.

JSON files are written with ``keras_csvae.io.write_json`` (atomic).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from keras_csvae.data import registry
from keras_csvae.training.config import TrainConfig
from serving.runtime.contract import check_edit_strength

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoint"
LOGS_DIR = "logs"


class RunDirError(ValueError):
    """``run_dir`` holds something that does not belong to this run (raised before training writes)."""


class RunError(ValueError):
    """A run directory that cannot be read: missing, corrupt or mismatched files."""


def check_run_dir(run_dir, config: TrainConfig) -> None:
    """Raises ``RunDirError`` unless ``run_dir`` is new, empty, or holds a run of the same ``config``."""
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if config_path.exists():
        try:
            stored = TrainConfig.from_dict(json.loads(config_path.read_text()))
        except (ValueError, TypeError) as err:
            raise RunDirError(f"{config_path} is not a keras-csvae config ({err}); choose another --out.") from err
        if stored.digest() != config.digest():
            raise RunDirError(
                f"{run_dir} holds a run with a different configuration; choose another --out "
                "or re-run with the same flags to resume it."
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"{run_dir} is not empty and holds no keras-csvae run; choose another --out.")


def load_run(run_dir, edit_strength=None):
    """Returns ``(config, model)`` of a finished run; ``RunError`` says what is wrong otherwise.

    ``edit_strength``: replaces the model's (``LatentModel``) when not ``None``;
    its values are checked before anything is loaded, the number of a
    per-label list once the model is.
    """
    if edit_strength is not None:
        edit_strength = check_edit_strength(edit_strength)
    run_dir = Path(run_dir)
    config_path, model_path = run_dir / CONFIG_FILE, run_dir / MODEL_FILE
    for path in (config_path, model_path):
        if not path.exists():
            raise RunError(f"{path} does not exist; is {run_dir} a finished `csvae train` run?")
    try:
        config = TrainConfig.from_dict(json.loads(config_path.read_text())).resolved()
    except (ValueError, TypeError) as err:
        raise RunError(f"{config_path} is not a valid run config: {err}") from err
    if not zipfile.is_zipfile(model_path):
        raise RunError(f"{model_path} is not a .keras file (not a zip archive); it may be truncated or corrupt.")
    # The model classes register themselves on import; only loading a model needs them.
    import keras

    import keras_csvae.models  # noqa: F401

    try:
        model = keras.saving.load_model(model_path)
    except Exception as err:  # Keras raises many types for a bad archive
        raise RunError(f"Could not load {model_path}: {type(err).__name__}: {err}") from err
    info = registry.info(config.dataset, **config.dataset_options)
    if tuple(model.data_shape) != tuple(info.input_shape) or model.num_labels != info.num_labels:
        raise RunError(
            f"{model_path} expects x {model.data_shape} with {model.num_labels} label(s), but the run's "
            f"dataset {config.dataset!r} has x {info.input_shape} with {info.num_labels}: "
            "the files do not belong together."
        )
    if edit_strength is not None:
        try:
            model.edit_strength = edit_strength
        except ValueError as err:  # one strength per label, but not this model's count
            raise RunError(f"{run_dir}: {err}") from err
    return config, model


def split_arrays(config: TrainConfig, split: str, limit: int):
    """At most ``limit`` examples of the run's dataset ``split`` as numpy ``(x [n, ...], y [n, k])``."""
    spec = registry.get(config.dataset)
    if spec.tf_data_fn is None:
        x, y = registry.load_arrays(config.dataset, split, **config.dataset_options)
        return x[:limit], y[:limit]
    xs, ys = [], []
    for x, y in registry.load(config.dataset, split, **config.dataset_options).take(limit).batch(512):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)
