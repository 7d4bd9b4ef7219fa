"""``csvae benchmark``: the paper's comparison, reproducible with one command.

The one evaluation module that trains: a benchmark is ``training.train`` then
``evaluate.evaluate_run`` per run (training never imports evaluation).

Trains every model on the same data with the same budget and seeds (each run
a normal, resumable run directory), evaluates them with the same cached
judge, and writes ``results.json`` and ``results.md`` (mean ± std over seeds)
plus each run's figures. On images the table ends with reference editors
scored the same way (``report.reference_edit_metrics``): the input left
unchanged and, on synthetic faces, the true counterfactual.

Runs already trained in ``out_dir`` are reused, not retrained, so a killed
benchmark resumes, and one can be split across processes or machines
(``--models csvae --seeds 0`` in one, ``--seeds 1`` in another, then the full
command to evaluate and tabulate everything). A run's ``metrics.json`` is
reused too when it was written after the model with the same evaluation
settings (``evaluated_with``), so the full command only evaluates what is
new. A run's cost is its own: the training time is summed from its
per-epoch history, wherever it ran.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from keras_csvae.evaluation.evaluate import evaluate_run, evaluation_settings
from keras_csvae.io import write_json
from keras_csvae.training import TrainConfig, train
from keras_csvae.training.runs import HISTORY_FILE, METRICS_FILE, MODEL_FILE

TABLE_METRICS = (
    ("manipulation_accuracy", "edits", "manipulation acc. ↑"),
    ("manipulation_accuracy_on", "edits", "off → on ↑"),
    ("manipulation_accuracy_off", "edits", "on → off ↑"),
    ("preservation_accuracy", "edits", "preservation acc. ↑"),
    ("counterfactual_mse", "edits", "counterfactual MSE ↓"),
    ("identity_mse", "edits", "identity MSE ↓"),
    ("style_coverage", "edits", "style coverage ↑"),
    ("reconstruction_label_accuracy", "edits", "judge acc. on reconstructions"),
    ("reconstruction_mse", None, "reconstruction MSE ↓"),
    ("z_label_accuracy", None, "z label probe"),
    ("w_label_accuracy", None, "w label probe"),
)
# Also summarised (results.json), not tabulated: the table is wide enough.
SUMMARY_METRICS = TABLE_METRICS + (
    ("counterfactual_mse_on", "edits", "counterfactual MSE, off → on ↓"),
    ("counterfactual_mse_off", "edits", "counterfactual MSE, on → off ↓"),
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for the report: speeds and even
    results depend on it, and the machine changes between runs."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def training_seconds(run_dir) -> float | None:
    """Wall time of a finished run's epochs, summed from ``history.json``;
    ``None`` for runs trained before epochs were timed."""
    history = json.loads((Path(run_dir) / HISTORY_FILE).read_text())
    if not history or any("seconds" not in entry for entry in history):
        return None
    return round(sum(entry["seconds"] for entry in history), 1)


def time_line(timings: dict, seconds: float) -> str:
    """What the benchmark cost: the runs' training summed from their histories
    (runs trained by earlier commands count too), and this command's wall time."""
    trained = [t["train"] for t in timings.values() if t["train"] is not None]
    line = f"this command {seconds / 60:.1f} min"
    if trained:
        line = f"training {sum(trained) / 60:.1f} min summed over {len(trained)} run(s), " + line
    return line


def _fraction(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def reusable_metrics(run_dir, settings) -> dict | None:
    """The run's metrics if they can stand for a new ``evaluate_run(**settings)``, else ``None``.

    They can when ``metrics.json`` is newer than ``model.keras`` and was
    written with the same ``settings`` (``evaluation_settings``). The edit
    strength counts only for models that have one (``metrics["edit_strength"]``,
    the strength used): a requested strength must equal it; "the model's own"
    (``None``) must have been requested then too."""
    metrics_file, model_file = Path(run_dir) / METRICS_FILE, Path(run_dir) / MODEL_FILE
    try:
        if metrics_file.stat().st_mtime_ns < model_file.stat().st_mtime_ns:
            return None
        metrics = json.loads(metrics_file.read_text())
        done = dict(metrics["evaluated_with"])
    except (OSError, ValueError, KeyError, TypeError):  # missing, older or unreadable: evaluate again
        return None
    wanted = dict(settings)
    strength, done_strength = wanted.pop("edit_strength"), done.pop("edit_strength", None)
    if done != wanted:
        return None
    if "edit_strength" in metrics:
        same = done_strength is None if strength is None else metrics["edit_strength"] == strength
        if not same:
            return None
    return metrics


def _metric(metrics, name, section):
    source = metrics.get(section, {}) if section else metrics
    return source.get(name)


def _per_label_means(runs, name, section):
    """``{label: mean over seeds}`` of a metric that each run reports per label."""
    values = {}
    for metrics in runs:
        source = metrics.get(section, {}) if section else metrics
        for label, per_label in source.get("per_label", {}).items():
            if name in per_label:
                values.setdefault(label, []).append(per_label[name])
    return {label: float(np.mean(v)) for label, v in values.items()}


def summarise(results: dict) -> dict:
    """``{model: {metric: {"mean", "std", "values"[, "per_label"]}}}`` from
    ``{model: [metrics per seed]}``; ``per_label`` holds the mean over seeds
    of each label's value where runs report the metric per label."""
    summary = {}
    for model, runs in results.items():
        summary[model] = {}
        for name, section, _ in SUMMARY_METRICS:
            values = [_metric(m, name, section) for m in runs]
            values = [v for v in values if v is not None]
            if values:
                summary[model][name] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "values": values,
                }
                per_label = _per_label_means(runs, name, section)
                if per_label:
                    summary[model][name]["per_label"] = per_label
    return summary


def summarise_references(references: dict) -> dict:
    """``{editor: {metric: value[, "per_label"]}}`` of the table's edit metrics
    from ``report.reference_edit_metrics``'s output: one deterministic value
    each (no seeds), with ``per_label`` values where they exist."""
    summary = {}
    for editor, metrics in references.items():
        summary[editor] = {}
        for name, section, _ in SUMMARY_METRICS:
            if section == "edits" and name in metrics:
                per_label = {label: m[name] for label, m in metrics["per_label"].items() if name in m}
                summary[editor][name] = {"value": metrics[name], "per_label": per_label}
    return summary


def markdown_table(summary: dict, references: dict | None = None) -> str:
    """Mean ± std over seeds per model, then one row per reference editor
    (``summarise_references``; its metrics need no model, the others are "–")."""
    references = references or {}
    present = [(n, s, t) for n, s, t in TABLE_METRICS if any(n in m for m in summary.values())]
    lines = ["| model | " + " | ".join(t for _, _, t in present) + " |", "|---" * (len(present) + 1) + "|"]

    def number(name, x):
        return f"{x:.{4 if name.endswith('mse') else 3}f}"  # MSEs are small: keep 4 decimals

    for model, metrics in summary.items():
        cells = [
            f"{number(n, v['mean'])} ± {number(n, v['std'])}" if (v := metrics.get(n)) else "–" for n, _, _ in present
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    for editor, metrics in references.items():
        cells = [number(n, v["value"]) if (v := metrics.get(n)) else "–" for n, _, _ in present]
        lines.append(f"| *{editor}* (reference) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_benchmark(
    out_dir,
    dataset="synthetic_faces",
    models=("csvae", "vae", "condvae", "condvae_info"),
    seeds=(0, 1, 2),
    epochs=None,
    image_size=None,
    num_examples=None,
    edit_examples=500,
    judge_dir=None,
    extra_model_kwargs=None,
    command="",
    edit_strength=None,
):
    """Trains and evaluates ``models × seeds``; writes the results; returns the summary.

    ``edit_strength``: passed to every evaluation (``evaluate_run``; the
    baselines ignore it), so runs trained before a preset changed it are
    scored with the same edits as new ones."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {}
    if image_size:
        options["image_size"] = image_size
    if num_examples:
        options["num_examples"] = num_examples
    results, timings = {}, {}
    settings = evaluation_settings(None, edit_examples, judge_dir, edit_strength)
    start = time.time()
    for model in models:
        results[model] = []
        for seed in seeds:
            run_dir = out_dir / f"{model}-seed{seed}"
            config = TrainConfig(
                dataset=dataset,
                model=model,
                epochs=epochs,
                seed=seed,
                precision="auto",
                strategy="auto",
                dataset_options=options,
                model_kwargs=dict(extra_model_kwargs or {}),
            )
            print(f"== {model} seed {seed} -> {run_dir}")
            train(config, run_dir, verbose=2)
            t0 = time.time()
            metrics = reusable_metrics(run_dir, settings)
            fresh = metrics is None
            if fresh:
                metrics = evaluate_run(run_dir, **settings)
            else:
                print(f"Reusing {run_dir / METRICS_FILE} (evaluated after training, same settings)")
            timings[f"{model}-seed{seed}"] = {
                "train": training_seconds(run_dir),
                "evaluate": round(time.time() - t0, 1),
                "metrics": "evaluated" if fresh else "reused",
            }
            results[model].append(metrics)
    summary = summarise(results)
    judge = next(iter(results.values()))[0].get("edits", {})
    references = {}
    if judge:  # image datasets: what not editing, and editing perfectly, would score
        from keras_csvae.evaluation.report import reference_edit_metrics

        references = summarise_references(reference_edit_metrics(config, edit_examples, judge_dir))
    report = {
        "command": command,
        "dataset": dataset,
        "dataset_options": options,
        "seeds": list(seeds),
        "epochs": epochs,
        "edit_strength": edit_strength,
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores",
        "seconds": round(time.time() - start, 1),
        "seconds_per_run": timings,
        "judge_accuracy": judge.get("judge_accuracy"),
        "judge_style_accuracy": judge.get("judge_style_accuracy"),
        "summary": summary,
        "references": references,
    }
    write_json(out_dir / "results.json", report)
    table = markdown_table(summary, references)
    (out_dir / "results.md").write_text(
        f"# Benchmark: {dataset} {options}\n\nCommand: `{command}`\n\n"
        f"Machine: {report['machine']}; seeds {list(seeds)}; {time_line(timings, report['seconds'])}.\n"
        f"Judge accuracy on held-out real images: {_fraction(report['judge_accuracy'])}"
        f" (styles: {_fraction(report['judge_style_accuracy'])}).\n\n{table}\n"
    )
    print(table)
    return report
