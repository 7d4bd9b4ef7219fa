"""Markdown table of the edit metrics of evaluated runs (``csvae evaluate``),
one row per run directory, for the ablation in RESULTS.md.

    python bench/ablation_table.py runs/abl/*

Columns: manipulation (both directions), off → on per label, identity and
counterfactual MSE, style coverage, the judge on plain reconstructions, and the
run's train time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(run_dir: Path) -> str | None:
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        return None
    metrics = json.loads(metrics_path.read_text())
    edits = metrics.get("edits", {})
    per_label = edits.get("per_label", {})
    on = ", ".join(f"{name} {v.get('manipulation_accuracy_on', float('nan')):.2f}" for name, v in per_label.items())
    rec = ", ".join(
        f"{name} {v.get('reconstruction_label_accuracy', float('nan')):.2f}" for name, v in per_label.items()
    )
    history = json.loads((run_dir / "history.json").read_text()) if (run_dir / "history.json").exists() else []
    cells = [
        run_dir.name,
        f"{edits.get('manipulation_accuracy', float('nan')):.3f}",
        f"{edits.get('manipulation_accuracy_on', float('nan')):.3f}",
        on,
        f"{edits.get('identity_mse', float('nan')):.4f}",
        f"{edits.get('counterfactual_mse', float('nan')):.4f}",
        f"{edits.get('style_coverage', float('nan')):.3f}",
        rec,
        f"{metrics.get('reconstruction_mse', float('nan')):.4f}",
        str(len(history)),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    header = [
        "run",
        "manipulation",
        "off → on",
        "off → on per label",
        "identity MSE",
        "counterfactual MSE",
        "style coverage",
        "judge on reconstructions",
        "reconstruction MSE",
        "epochs",
    ]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for run_dir in args.runs:
        line = row(run_dir)
        if line:
            print(line)


if __name__ == "__main__":
    main()
