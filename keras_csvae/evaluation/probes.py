"""Label probes: how much of each label a latent code reveals.

A logistic regression is fit on the training split's latent means and scored
on the test split. A CSVAE should give high accuracy from ``w`` and no more
than the majority rate from ``z``.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def label_probe_accuracy(codes_train, y_train, codes_test, y_test, seed=0):
    """Mean over labels of a logistic-regression probe's test accuracy.

    Args:
      codes_*: ``[n, d]`` latent codes.
      y_*: ``[n, k]`` binary labels.

    Returns:
      ``(mean accuracy, [accuracy per label])``.
    """
    per_label = []
    for i in range(y_train.shape[1]):
        if len(np.unique(y_train[:, i])) < 2:  # a constant label is predicted by its value
            per_label.append(float(np.mean(y_test[:, i] == y_train[0, i])))
            continue
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
        probe.fit(codes_train, y_train[:, i])
        per_label.append(float(probe.score(codes_test, y_test[:, i])))
    return float(np.mean(per_label)), per_label


def majority_rate(y_train, y_test):
    """Accuracy of always predicting each label's training majority, averaged."""
    rates = []
    for i in range(y_train.shape[1]):
        majority = float(np.mean(y_train[:, i]) >= 0.5)
        rates.append(float(np.mean(y_test[:, i] == majority)))
    return float(np.mean(rates)), rates
