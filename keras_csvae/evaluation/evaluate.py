"""``evaluate_run(run_dir)``: metrics and figures of a trained run.

Writes ``run_dir/metrics.json`` and ``run_dir/w_subspace.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_csvae.evaluation import plots, probes
from keras_csvae.io import write_json
from keras_csvae.training.runs import METRICS_FILE, load_run, split_arrays
from serving.runtime.contract import edit_strength_json

MAX_EXAMPLES = 5000  # examples per split for the reconstruction error and the label probes


def evaluation_settings(max_examples, edit_examples, judge_dir, edit_strength) -> dict:
    """The arguments of ``evaluate_run`` as JSON values (``metrics["evaluated_with"]``)."""
    return {
        "max_examples": MAX_EXAMPLES if max_examples is None else int(max_examples),
        "edit_examples": int(edit_examples),
        "judge_dir": None if judge_dir is None else str(Path(judge_dir).resolve()),
        "edit_strength": None if edit_strength is None else edit_strength_json(edit_strength),
    }


def evaluate_run(run_dir, max_examples=None, edit_examples=500, judge_dir=None, edit_strength=None):
    """Computes the run's metrics; writes ``metrics.json`` and the figures.

    ``edit_strength``: replaces the model's (``LatentModel``) for the edits
    when not ``None``; a CSVAE's value used is in ``metrics["edit_strength"]``.
    The arguments are kept in ``metrics["evaluated_with"]`` (what
    ``csvae benchmark`` checks before reusing the metrics).

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

    Raises:
      keras_csvae.training.runs.RunError: ``run_dir`` is not a finished, readable run.
    """
    run_dir = Path(run_dir)
    settings = evaluation_settings(max_examples, edit_examples, judge_dir, edit_strength)
    max_examples = settings["max_examples"]
    config, model = load_run(run_dir, edit_strength)
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
        "evaluated_with": settings,
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
    if "w_mean" in codes_test:  # the CSVAE: its edits' strength (the baselines ignore it)
        metrics["edit_strength"] = edit_strength_json(model.edit_strength)
        plots.plot_w_subspaces(codes_test["w_mean"], y_test, model.label_names, model.w_dim, run_dir / "w_subspace.png")

    if len(model.data_shape) == 3:
        from keras_csvae.evaluation import report

        metrics["edits"] = report.edit_report(config, model, run_dir, edit_examples, judge_dir)
    write_json(run_dir / METRICS_FILE, metrics)
    return metrics
