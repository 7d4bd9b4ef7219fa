"""Edit metrics: did an edit switch the attribute, keep the rest, and find the
attribute's styles?

Every metric is a function of an *editor*, not of a model class, so a perfect
editor (the true counterfactual) and an identity editor (the input) can be
scored the same way as a trained model:

- ``editor(x, y, y_target) -> x_edited``, all ``[n, ...]``;
- ``variants(x, y, i, m) -> [m, n, ...]``: ``m`` edits of ``x`` with label
  ``i`` switched on in ``m`` different ways (a traversal of ``W_i`` for the
  CSVAE).

For attribute ``i``, every test image is edited to the opposite value of
``y_i`` (on → off and off → on), other labels unchanged; one-hot labels stay
one-hot (``edit_targets``).
"""

from __future__ import annotations

import numpy as np

from keras_csvae.data.synthetic_faces import ATTRIBUTES, SPLIT_SEEDS, STYLES, SyntheticFaces
from keras_csvae.data.synthetic_faces.factors import counterfactual_factors
from keras_csvae.evaluation.judge import is_one_hot


class SyntheticFacesTruth:
    """Ground truth of ``synthetic_faces``: counterfactuals, masks and styles."""

    def __init__(self, image_size):
        self.renderer = SyntheticFaces(image_size)
        self.style_counts = [len(STYLES[a]) for a in ATTRIBUTES]

    def sample(self, split, n):
        """``(x float32 [n,S,S,3] in [0,1], y float32 [n,k], styles int [n,k], factors)``."""
        factors = self.renderer.sample_factors(n, SPLIT_SEEDS[split])
        x = self.renderer.render(factors).astype(np.float32) / 255.0
        return x, self.renderer.labels(factors).astype(np.float32), self.styles(factors), factors

    def styles(self, factors):
        """``[n, k]`` int: each face's style index of every attribute (``STYLES``)."""
        return np.stack([self.renderer.style_of(factors, a) for a in ATTRIBUTES], axis=1)

    def counterfactuals(self, factors, i, value):
        """``[m, n, S, S, 3]`` true edits: ``m = 1`` for off, one per style for on."""
        attribute = ATTRIBUTES[i]
        if value == 0:
            return self.renderer.counterfactual(factors, attribute, 0)[0][None].astype(np.float32) / 255.0
        return (
            np.stack(
                [self.renderer.counterfactual(factors, attribute, 1, style=s)[0] for s in range(self.style_counts[i])]
            ).astype(np.float32)
            / 255.0
        )

    def masks(self, factors, i):
        """``[n, S, S]`` bool: the pixels attribute ``i`` may change."""
        return self.renderer.render(factors, return_masks=True)[1][ATTRIBUTES[i]]

    def true_edit(self, factors, x, y, y_target):
        """The perfect editor for one switched label (default style): ``[n, S, S, 3]``."""
        changed = np.flatnonzero(np.any(y != y_target, axis=0))
        out_factors = factors
        for i in changed:
            # only the factors: one render of the final faces, not one per switched label
            out_factors = counterfactual_factors(out_factors, ATTRIBUTES[i], y_target[:, i].astype(int))
        return self.renderer.render(out_factors).astype(np.float32) / 255.0


def _per_example_mse(a, b):
    return np.mean((a - b).reshape(len(a), -1) ** 2, axis=-1)


def identity_mse(edited, x, mask):
    """Mean squared error of ``edited`` against ``x`` (both ``[n, S, S, C]``)
    outside ``mask`` ``[n, S, S]`` (the pixels the attribute may change):
    did the edit keep the rest of the face."""
    outside = ~np.asarray(mask, bool)[..., None]
    return float(((edited - x) ** 2 * outside).sum() / max(outside.sum() * x.shape[-1], 1))


def edit_targets(y, i, one_hot=False):
    """Target labels for editing label ``i``: its opposite value, others kept.

    For one-hot labels an edit must stay one-hot: switching ``i`` on gives
    class ``i``; switching it off gives class ``i + 1`` (mod ``k``).
    """
    y_target = y.copy()
    if not one_hot:
        y_target[:, i] = 1.0 - y[:, i]
        return y_target
    k = y.shape[1]
    new_class = np.where(y[:, i] == 1, (i + 1) % k, i)
    return np.eye(k, dtype=y.dtype)[new_class]


def edit_metrics(editor, judge, x, y, label_names, truth=None, factors=None, variants=None, num_variants=9):
    """Scores an editor on test images ``x`` ``[n, ...]`` with labels ``y`` ``[n, k]``.

    Returns ``{"per_label": {name: {...}}, <metric>: mean over labels}`` with:

    - ``manipulation_accuracy``: fraction of edits the judge sees with the
      target value of the switched label (the paper's Table 1 metric), and
      per direction ``manipulation_accuracy_on`` (off → on: the judge must
      see the attribute drawn) and ``manipulation_accuracy_off`` (on → off);
      for one-hot labels "on" is an edit *to* class ``i``, "off" one away
      from it;
    - ``preservation_accuracy``: fraction of (edit, other label) pairs where
      the judge's verdict on the other label is what it was on the input;
    - with ``truth``: ``counterfactual_mse`` (against the true counterfactual;
      switching on, the minimum over the attribute's true styles), also per
      direction (``counterfactual_mse_on``, ``counterfactual_mse_off``), and
      ``identity_mse`` (error outside the attribute's mask);
    - with ``variants`` and a style-aware judge: ``style_coverage``, the mean
      fraction of the attribute's true styles found among ``num_variants``
      edits that switch it on (only edits the judge sees as "on" count).
    """
    y = np.asarray(y, np.float32)
    k = y.shape[1]
    one_hot = is_one_hot(y)
    judged_input = judge.labels(x)
    per_label = {}
    for i, name in enumerate(label_names):
        y_target = edit_targets(y, i, one_hot)
        edited = np.asarray(editor(x, y, y_target), np.float32)
        if edited.shape != x.shape:
            raise ValueError(f"The editor returned {edited.shape} for inputs {x.shape}.")
        judged = judge.labels(edited)
        if one_hot:  # the edit succeeded if the judge sees the target class
            hit = np.argmax(judge.label_probabilities(edited), axis=1) == np.argmax(y_target, axis=1)
        else:
            hit = judged[:, i] == y_target[:, i]
        result = {"manipulation_accuracy": float(np.mean(hit))}
        # Per direction, because an editor that only blurs passes most
        # on -> off edits: "on" is the hard half, drawing the attribute.
        for direction, value in (("on", 1), ("off", 0)):
            rows = y_target[:, i] == value
            if rows.any():
                result[f"manipulation_accuracy_{direction}"] = float(np.mean(hit[rows]))
        if k > 1 and not one_hot:  # with one-hot labels every edit changes another label
            others = [j for j in range(k) if j != i]
            result["preservation_accuracy"] = float(np.mean(judged[:, others] == judged_input[:, others]))
        if truth is not None:
            errors = np.empty(len(x))
            for value in (0, 1):
                rows = np.flatnonzero(y_target[:, i] == value)
                if len(rows) == 0:
                    continue
                sub = {key: v[rows] for key, v in factors.items()}
                candidates = truth.counterfactuals(sub, i, value)
                errors[rows] = np.min([_per_example_mse(edited[rows], c) for c in candidates], axis=0)
                # Per direction too: an editor that does not draw the attribute
                # can score well switching on (it never guesses a wrong style).
                result[f"counterfactual_mse_{'on' if value else 'off'}"] = float(np.mean(errors[rows]))
            result["counterfactual_mse"] = float(np.mean(errors))
            result["identity_mse"] = identity_mse(edited, x, truth.masks(factors, i))
        if variants is not None and getattr(judge, "has_styles", False):
            rows = np.flatnonzero(y[:, i] == 0)
            if len(rows):
                edits = np.asarray(variants(x[rows], y[rows], i, num_variants), np.float32)
                found = [set() for _ in rows]
                for edit in edits:
                    labels, styles = judge.labels_and_styles(edit, i)
                    for r in np.flatnonzero(labels[:, i] == 1):
                        found[r].add(int(styles[r]))
                num_styles = judge.model.get_layer(f"style_{i}").units
                result["style_coverage"] = float(np.mean([len(s) / num_styles for s in found]))
        per_label[name] = result
    summary = {}
    for metric in {m for r in per_label.values() for m in r}:
        values = [r[metric] for r in per_label.values() if metric in r]
        summary[metric] = float(np.mean(values))
    summary["per_label"] = per_label
    return summary


def model_editor(model):
    """``editor(x, y, y_target)`` for a trained model: its ``manipulate`` with the source labels."""

    def editor(x, y, y_target):
        return model.manipulate(x, y_target, y=y)

    return editor


def model_variants(model):
    """``variants(x, y, i, m)`` from ``model.edit_variants``."""

    def variants(x, y, i, m):
        return model.edit_variants(x, i, n=m, y=y)

    return variants
