"""The benchmark scripts in ``bench/`` run: each ``--quick`` mode, in a subprocess,
writing its report to a temporary file (never the repository's BENCHMARKS.md).

Checks that every script finishes and writes Markdown tables of positive
numbers. No speed assertions: CI machines differ and are shared. The six
scripts run concurrently (each is mostly a single busy Python thread), so the
file takes about as long as the slowest one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("bench_train", "bench_pipeline", "bench_inference", "bench_memory", "bench_fit", "bench_edit_locality")
TIMEOUT = 420  # seconds per script; they run concurrently (generous: CI machines may be busy)
NUMBER = re.compile(r"^[-+]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?$")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts every script's quick mode at once; ``{name: (returncode, stdout, stderr, report text)}``."""
    root = tmp_path_factory.mktemp("bench")
    repo_report = REPO / "BENCHMARKS.md"
    before = repo_report.read_bytes() if repo_report.exists() else None
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    processes = {}
    for name in SCRIPTS:
        output = root / f"{name}.md"
        command = [sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick", "--output", str(output)]
        processes[name] = (
            subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            output,
        )
    deadline = time.monotonic() + TIMEOUT
    results = {}
    for name, (process, output) in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stderr += f"\n[timed out after {TIMEOUT} s]"
        results[name] = (process.returncode, stdout, stderr, output.read_text() if output.exists() else "")
    after = repo_report.read_bytes() if repo_report.exists() else None
    results["_repo_report_unchanged"] = before == after
    return results


def tables(markdown: str) -> list[list[list[str]]]:
    """Markdown tables as lists of data rows (cells stripped), header and separator dropped."""
    found, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            found.append(current[2:])
            current = []
    return [t for t in found if t]


def numbers(row: list[str]) -> list[float]:
    values = []
    for cell in row:
        text = cell.replace("×", "").replace("%", "").strip()
        if NUMBER.match(text):
            values.append(float(text.replace(",", "")))
    return values


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_mode_writes_tables_of_positive_numbers(runs, name):
    returncode, stdout, stderr, report = runs[name]
    assert returncode == 0, f"{name} --quick failed ({returncode}):\n{stderr[-4000:]}"
    assert report.startswith("# Benchmarks") and "## " in report, f"{name} wrote no report:\n{stdout[-2000:]}"
    assert "--quick" in report and "load average" in report and "tensorflow" in report
    found = tables(report)
    assert found, f"{name} wrote no table:\n{report}"
    for table in found:
        for row in table:
            assert any(v > 0 for v in numbers(row)) or not numbers(row), f"{name}: no positive number in {row}"
    # The main measurement table (the first after the targets) holds positive numbers in every row.
    measured = [t for t in found if all(numbers(row) for row in t)]
    assert measured, f"{name}: no table of measurements"
    assert all(all(v >= 0 for v in numbers(row)) and max(numbers(row)) > 0 for row in measured[0])


def test_repository_benchmarks_file_untouched(runs):
    assert runs["_repo_report_unchanged"], "a --quick run wrote to the repository's BENCHMARKS.md"


def test_train_flops_count_the_edit_locality_pass(monkeypatch):
    # bench_train's "of fp32 peak" divides the FLOPs it counts by the step
    # time, so the step's extra decoder pass must be counted: forward, weight
    # and input gradients (3×) of every decoder layer, on a quarter of the batch.
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import bench_train

    from keras_csvae import CSVAE

    def build(edit_locality):
        model = CSVAE(data_shape=(16, 16, 3), num_labels=3, edit_locality=edit_locality, **bench_train.common.TINY)
        model((np.zeros((1, 16, 16, 3), np.float32), np.zeros((1, 3), np.float32)))
        return model

    plain, local = build(0.0), build(0.05)
    decoder_forward = sum(bench_train.layer_flops(layer) for layer in local.decoder.layers)
    assert decoder_forward > 0
    extra = bench_train.train_flops(local) - bench_train.train_flops(plain)
    assert extra == pytest.approx(0.75 * decoder_forward)
