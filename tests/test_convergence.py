"""Convergence runs (slow tier: `pytest -m slow`): the paper's claims on the
default configurations, exactly as a user runs them."""

import json

import pytest
from helpers import csvae_cli


@pytest.mark.slow
def test_swiss_roll_labels_live_in_w_not_z(tmp_path):
    run = tmp_path / "roll"
    assert csvae_cli("train", "--dataset", "swiss_roll", "--out", run, "--verbose", "0").returncode == 0
    result = csvae_cli("evaluate", "--run", run)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["w_label_accuracy"] >= 0.95
    assert metrics["z_label_accuracy"] <= metrics["z_majority_rate"] + 0.05
