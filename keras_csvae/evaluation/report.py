"""Edit evaluation of a trained image model: the dataset's judge, the edit
metrics, and the pictures (edit grid, traversal per label)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_csvae.data import registry
from keras_csvae.evaluation import judge as judge_lib
from keras_csvae.evaluation import plots
from keras_csvae.evaluation.edits import SyntheticFacesTruth, edit_metrics, model_editor, model_variants
from keras_csvae.evaluation.judge import is_one_hot

JUDGE_TRAIN_EXAMPLES = 20_000
JUDGE_EPOCHS = 10
JUDGE_MIN_STEPS = judge_lib.MIN_STEPS  # small datasets get more epochs


def _judge_options(options: dict) -> dict:
    return {k: v for k, v in options.items() if k != "num_examples"}  # the judge sees the full data


def judge_key(dataset: str, options: dict) -> dict:
    return {"dataset": dataset, **_judge_options(options), "n": JUDGE_TRAIN_EXAMPLES}


def existing_judge(dataset: str, options: dict, judge_dir=None):
    """The dataset's judge if one is cached, else None (never trains)."""
    return judge_lib.load_cached_judge(judge_key(dataset, options), judge_dir, JUDGE_EPOCHS)


def judge_for(dataset: str, options: dict, judge_dir=None):
    """The cached judge of a dataset (trained on its real training images)."""
    options = _judge_options(options)
    key = judge_key(dataset, options)
    if dataset == "synthetic_faces":
        truth = SyntheticFacesTruth(options.get("image_size", 64))

        def make_data():
            x_train, y_train, s_train, _ = truth.sample("train", JUDGE_TRAIN_EXAMPLES)
            x_test, y_test, s_test, _ = truth.sample("validation", 2000)
            return x_train, y_train, x_test, y_test, s_train, s_test

    else:

        def make_data():
            x_train, y_train = registry.load_arrays(dataset, "train", **options)
            x_test, y_test = registry.load_arrays(dataset, "validation", **options)
            return x_train[:JUDGE_TRAIN_EXAMPLES], y_train[:JUDGE_TRAIN_EXAMPLES], x_test, y_test, None, None

    # verbose 2: a line per epoch, the judge's first training takes minutes
    return judge_lib.cached_judge(
        key, make_data, cache_dir=judge_dir, epochs=JUDGE_EPOCHS, verbose=2, min_steps=JUDGE_MIN_STEPS
    )


def test_examples(config, n, split="test"):
    """``(x, y, truth, factors)`` of the test split (or ``split``); ``truth`` only for synthetic faces."""
    if config.dataset == "synthetic_faces":
        truth = SyntheticFacesTruth(config.dataset_options.get("image_size", 64))
        x, y, _, factors = truth.sample(split, n)
        return x, y, truth, factors
    x, y = registry.load_arrays(config.dataset, split, **config.dataset_options)
    return x[:n], y[:n], None, None


def edit_report(config, model, run_dir, num_examples=500, judge_dir=None, num_variants=9):
    """Edit metrics (``edits.edit_metrics``) plus ``judge_accuracy``; writes
    ``edit_grid.png`` and ``traversal_<label>.png`` into ``run_dir``."""
    run_dir = Path(run_dir)
    judge = judge_for(config.dataset, config.dataset_options, judge_dir)
    x, y, truth, factors = test_examples(config, num_examples)
    editor = model_editor(model)
    variants = model_variants(model)
    result = edit_metrics(
        editor,
        judge,
        x,
        y,
        model.label_names,
        truth=truth,
        factors=factors,
        variants=variants if judge.has_styles else None,
        num_variants=num_variants,
    )
    # Can the decoder draw each attribute at all? The judge's accuracy on
    # reconstructions bounds what any edit through this decoder can reach.
    judged_reconstruction = judge.labels(model.reconstruct(x, y))
    result["reconstruction_label_accuracy"] = float(np.mean(judged_reconstruction == y))
    for i, name in enumerate(model.label_names):
        result["per_label"][name]["reconstruction_label_accuracy"] = float(
            np.mean(judged_reconstruction[:, i] == y[:, i])
        )
    result["judge_accuracy"] = judge.accuracy["labels"]
    if "styles" in judge.accuracy:
        result["judge_style_accuracy"] = judge.accuracy["styles"]
    result["num_examples"] = int(len(x))
    write_edit_figures(model, x[:8], y[:8], editor, variants, run_dir, num_variants)
    return result


def reference_edit_metrics(config, num_examples=500, judge_dir=None) -> dict:
    """Edit metrics of editors that need no model, scored exactly as a
    model's (``edits.edit_metrics``: same judge, same test images), so that a
    benchmark table says what its numbers mean:

    - ``"no edit"``: returns the input unchanged. It never switches a label
      (manipulation ~0) and keeps everything (identity MSE 0); a model whose
      counterfactual MSE is above this editor's ends further from the true
      edits than the unedited input is.
    - ``"true edit"`` (datasets with a ground truth: synthetic faces): the
      rendered counterfactual, the best any editor can do.

    Returns ``{name: edit_metrics(...)}`` (no style coverage: it scores a
    model's learned styles)."""
    judge = judge_for(config.dataset, config.dataset_options, judge_dir)
    x, y, truth, factors = test_examples(config, num_examples)
    editors = {"no edit": lambda x_, y_, y_target: x_}
    if truth is not None:
        editors["true edit"] = lambda x_, y_, y_target: truth.true_edit(factors, x_, y_, y_target)
    label_names = registry.info(config.dataset, **config.dataset_options).label_names
    return {
        name: edit_metrics(editor, judge, x, y, label_names, truth=truth, factors=factors)
        for name, editor in editors.items()
    }


def write_edit_figures(model, x, y, editor, variants, run_dir, num_variants=9):
    """``edit_grid.png``: rows are inputs; columns input, reconstruction, then
    each label switched on and off. ``traversal_<label>.png``: rows are
    inputs, columns the model's variants of that label switched on."""
    columns = [x, model.reconstruct(x, y)]
    names = ["input", "recon"]
    one_hot = is_one_hot(y)
    for i, label in enumerate(model.label_names):
        for value in (1,) if one_hot else (1, 0):  # one-hot: "switch to class i"
            target = np.eye(y.shape[1], dtype=y.dtype)[[i] * len(y)] if one_hot else y.copy()
            if not one_hot:
                target[:, i] = value
            columns.append(editor(x, y, target))
            names.append(f"{'+' if value else '-'}{label[:8]}")
    plots.image_grid(np.stack(columns, axis=1), Path(run_dir) / "edit_grid.png", col_labels=names)
    for i, label in enumerate(model.label_names):
        frames = np.asarray(variants(x[:4], y[:4], i, num_variants))  # [m, 4, ...]
        grid = np.concatenate([x[:4, None], np.swapaxes(frames, 0, 1)], axis=1)
        plots.image_grid(grid, Path(run_dir) / f"traversal_{label}.png", col_labels=["input"] + [""] * len(frames))
