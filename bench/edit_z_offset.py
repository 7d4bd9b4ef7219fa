"""Probe of an edit that keeps the face in ``W_i``: does switching a label on
move the rest of the face less if ``W_i`` goes to the preset's point plus the
part of ``w_i`` that the face's ``z`` predicts?

    python bench/edit_z_offset.py runs/faces32z/csvae-seed0 [--examples 300] [--fit-examples 2000]

``W_i`` holds some of the face besides its attribute (``bench/w_nuisance.py``:
position, skin tone), so an edit to the prior's point moves the face towards
an average. Here, on validation faces that have attribute ``i``, a linear map
fits ``E[w_i | x, y]`` from ``E[z | x, y]``; a test face switched on gets
``W_i`` = the model's point (``edit_strength``) + that map's prediction for
its ``z`` − the fitted faces' mean ``w_i``. Switching off and the other labels
are the model's own per-label edit. Prints the model's edit metrics beside the
probe's, on the same test faces and judge. The map lives in this script
only: a probe, not an editing rule of the library.
"""

from __future__ import annotations

import argparse

import numpy as np
from w_nuisance import least_squares


def fit_offset(z, w_i):
    """Least squares ``w_i ≈ [z, 1] · B``; returns ``offset(z) = [z, 1] · B − mean(w_i)``
    (``[n, w_dim]``) and the fit's R² (channels pooled)."""
    coefficients, r2 = least_squares(np.column_stack([z, np.ones(len(z))]), w_i)
    mean = np.mean(w_i, axis=0)

    def offset(z_new):
        return np.column_stack([z_new, np.ones(len(z_new))]) @ coefficients - mean

    return offset, r2


def main(argv=None) -> dict:
    """Returns ``{"model": edit metrics, "probe": edit metrics, "r2": {label: R²}}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a synthetic_faces CSVAE run directory")
    parser.add_argument("--examples", type=int, default=300, help="test faces")
    parser.add_argument("--fit-examples", type=int, default=2000, help="validation faces for the map")
    parser.add_argument("--judge-dir", default=None, help="judge cache (default: ~/.cache/keras_csvae/judges)")
    args = parser.parse_args(argv)

    from keras_csvae.evaluation.edits import edit_metrics, model_editor
    from keras_csvae.evaluation.report import judge_for, test_examples
    from keras_csvae.training.runs import load_run

    config, model = load_run(args.run)
    if config.dataset != "synthetic_faces" or config.model != "csvae":
        parser.error(f"{args.run} is a {config.model} run on {config.dataset}; this needs a CSVAE on synthetic_faces.")
    judge = judge_for(config.dataset, config.dataset_options, args.judge_dir)
    x_fit, y_fit, _, _ = test_examples(config, args.fit_examples, "validation")
    codes = model.encode(x_fit, y_fit)
    d = model.w_dim
    offsets, r2 = [], {}
    for i, label in enumerate(model.label_names):
        on = y_fit[:, i] == 1
        offset, r2[label] = fit_offset(codes["z_mean"][on], codes["w_mean"][on][:, i * d : (i + 1) * d])
        offsets.append(offset)
    # each W_i's "on" point (at the model's edit_strength) and "off" point (the absent mean)
    k = model.num_labels
    point_on, point_off = model.target_w(np.stack([np.ones(k), np.zeros(k)]).astype(np.float32))

    def probe_editor(x, y, y_target):
        changed = np.flatnonzero(np.any(y != y_target, axis=0))
        z = model.encode(x, y)["z_mean"]
        points = {}
        for i in changed:
            switched_on = (y_target[:, i] == 1)[:, None]
            columns = slice(i * d, (i + 1) * d)
            point = np.where(switched_on, point_on[columns] + offsets[i](z), point_off[columns])
            points[int(i)] = point.astype(np.float32)
        return model.manipulate(x, y_target, y=y, w_points=points)

    x, y, truth, factors = test_examples(config, args.examples)
    scores = {}
    for name, editor in (("model", model_editor(model)), ("probe", probe_editor)):
        scores[name] = edit_metrics(editor, judge, x, y, model.label_names, truth=truth, factors=factors)
        per_label = " / ".join(
            f"{scores[name]['per_label'][label]['manipulation_accuracy_on']:.2f}" for label in model.label_names
        )
        print(
            f"{name}: manipulation {scores[name]['manipulation_accuracy']:.3f}, off -> on ({per_label}),"
            f" identity MSE {scores[name]['identity_mse']:.5f}, counterfactual MSE"
            f" {scores[name]['counterfactual_mse']:.5f}",
            flush=True,
        )
    print("R² of w_i from z (validation faces with the attribute): " + ", ".join(f"{k} {v:.2f}" for k, v in r2.items()))
    return {**scores, "r2": r2}


if __name__ == "__main__":
    main()
