"""The int8 quality check by the dataset's judge: an int8 edit must be judged
like the float32 edit, or the int8 file is not written."""

from __future__ import annotations

import contextlib

import numpy as np

from export import quantize

MIN_AGREEMENT = 0.95


def judge_agreement_check(judge, min_agreement=MIN_AGREEMENT):
    """A ``quantize.QualityCheck``: the fraction of edits whose judged labels
    (all of them) are the same for the int8 and the float32 output."""

    def check(context: quantize.QualityContext) -> dict:
        (name,) = context.float32
        float_labels = judge.labels(context.float32[name])
        int8_labels = judge.labels(context.int8[name])
        agreement = float(np.mean(np.all(float_labels == int8_labels, axis=1)))
        return {
            "name": "judge_agreement",
            "passed": agreement >= min_agreement,
            "agreement": agreement,
            "threshold": min_agreement,
            "judge_accuracy": judge.accuracy.get("labels"),
        }

    return check


@contextlib.contextmanager
def judged_by(judge):
    """Registers the judge's check for the duration of one export."""
    if judge is None:
        yield
        return
    check = quantize.register_quality_check(judge_agreement_check(judge))
    try:
        yield
    finally:
        quantize._QUALITY_CHECKS.remove(check)
