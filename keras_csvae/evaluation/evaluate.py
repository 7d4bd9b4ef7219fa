"""``evaluate_run(run_dir)``: metrics and figures of a trained run.

Writes ``run_dir/metrics.json`` and ``run_dir/w_subspace.png``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import keras
import numpy as np

from keras_csvae.data import registry
from keras_csvae.evaluation import plots, probes
from keras_csvae.training.callbacks import write_json_atomic
from keras_csvae.training.config import TrainConfig


class RunError(ValueError):
    """A run directory that cannot be evaluated: missing, corrupt or mismatched files."""


def load_run(run_dir):
    """Returns ``(config, model)`` of a finished run, with clear errors."""
    run_dir = Path(run_dir)
    config_path, model_path = run_dir / "config.json", run_dir / "model.keras"
    for path in (config_path, model_path):
        if not path.exists():
            raise RunError(f"{path} does not exist; is {run_dir} a finished `csvae train` run?")
    try:
        config = TrainConfig.from_dict(json.loads(config_path.read_text())).resolved()
    except (ValueError, TypeError) as err:
        raise RunError(f"{config_path} is not a valid run config: {err}") from err
    if not zipfile.is_zipfile(model_path):
        raise RunError(f"{model_path} is not a .keras file (not a zip archive); it may be truncated or corrupt.")
    try:
        import keras_csvae.models  # noqa: F401  (registers the classes)

        model = keras.saving.load_model(model_path)
    except Exception as err:  # Keras raises many types for a bad archive
        raise RunError(f"Could not load {model_path}: {type(err).__name__}: {err}") from err
    info = registry.info(config.dataset, **config.dataset_options)
    if tuple(model.data_shape) != tuple(info.input_shape) or model.num_labels != info.num_labels:
        raise RunError(
            f"{model_path} expects x {model.data_shape} with {model.num_labels} label(s), but the run's "
            f"dataset {config.dataset!r} has x {info.input_shape} with {info.num_labels}: the files do not belong together."
        )
    return config, model


def split_arrays(config: TrainConfig, split: str, limit: int):
    """At most ``limit`` examples of ``split`` as numpy ``(x, y)``."""
    spec = registry.get(config.dataset)
    if spec.tf_data_fn is None:
        x, y = registry.load_arrays(config.dataset, split, **config.dataset_options)
        return x[:limit], y[:limit]
    xs, ys = [], []
    for x, y in registry.load(config.dataset, split, **config.dataset_options).take(limit).batch(512):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def evaluate_run(run_dir, max_examples=5000, edit_examples=500, judge_dir=None):
    """Computes the run's metrics; writes ``metrics.json`` and the figures.

    Metrics:
      reconstruction_mse: mean squared error of reconstructions on the test split.
      w_label_accuracy / z_label_accuracy: logistic-regression probes of ``y``
        from ``w`` / ``z`` posterior means (fit on train, scored on test).
      z_majority_rate: the accuracy of always guessing the majority label; a
        ``z`` free of label information scores about this.
      edits (image datasets): see ``edits.edit_metrics``, judged by the
        dataset's cached judge (``judge_accuracy`` says how good it is).

    Figures: ``w_subspace.png`` (models with ``w``), and for images
    ``edit_grid.png`` and ``traversal_<label>.png``.
    """
    run_dir = Path(run_dir)
    config, model = load_run(run_dir)
    x_train, y_train = split_arrays(config, "train", max_examples)
    x_test, y_test = split_arrays(config, "test", max_examples)
    codes_train = model.encode(x_train, y_train)
    codes_test = model.encode(x_test, y_test)
    reconstruction = model.reconstruct(x_test, y_test)

    majority, majority_per_label = probes.majority_rate(y_train, y_test)
    metrics = {
        "dataset": config.dataset,
        "model": config.model,
        "num_test_examples": int(len(x_test)),
        "reconstruction_mse": float(np.mean((reconstruction - x_test) ** 2)),
        "z_majority_rate": majority,
        "per_label": {name: {"majority_rate": m} for name, m in zip(model.label_names, majority_per_label)},
    }
    for code in ("w", "z"):
        if f"{code}_mean" not in codes_train:
            continue
        accuracy, per_label = probes.label_probe_accuracy(
            codes_train[f"{code}_mean"], y_train, codes_test[f"{code}_mean"], y_test
        )
        metrics[f"{code}_label_accuracy"] = accuracy
        for name, value in zip(model.label_names, per_label):
            metrics["per_label"][name][f"{code}_label_accuracy"] = value
    if "w_mean" in codes_test:
        plots.plot_w_subspaces(codes_test["w_mean"], y_test, model.label_names, model.w_dim, run_dir / "w_subspace.png")

    if len(model.data_shape) == 3:
        from keras_csvae.evaluation import report

        metrics["edits"] = report.edit_report(config, model, run_dir, edit_examples, judge_dir)
    write_json_atomic(run_dir / "metrics.json", metrics)
    return metrics
