"""The int8 quality check by the dataset's judge: an int8 edit must be judged
like the float32 edit, or ``csvae export`` does not write the int8 file.

Export knows nothing of judges: the CLI builds these checks here and hands
them to ``export.pipeline.export_run``.
"""

from __future__ import annotations

import numpy as np

from keras_csvae.evaluation.report import existing_judge

MIN_AGREEMENT = 0.95


def judge_agreement_check(judge, min_agreement=MIN_AGREEMENT):
    """An ``export.quantize.QualityCheck``: the fraction of edits whose judged
    labels (all of them) are the same for the int8 and the float32 output.

    The check reads ``context.float32`` and ``context.int8`` (``{output name:
    images [n, H, W, C]}``, one output) and returns ``{"name", "passed",
    "agreement", "threshold", "judge_accuracy"}``.
    """

    def check(context) -> dict:
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


def int8_checks(config, model, judge_dir=None) -> list:
    """The checks of a run's int8 model: the judge's, for an image model whose
    dataset judge is cached (``csvae evaluate`` trains it; export never does), else none."""
    if len(model.data_shape) != 3:
        return []
    judge = existing_judge(config.dataset, config.dataset_options, judge_dir)
    return [] if judge is None else [judge_agreement_check(judge)]
