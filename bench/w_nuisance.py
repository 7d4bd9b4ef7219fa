"""What besides its label does a trained CSVAE's ``W_i`` hold? For the
synthetic-faces test faces that have attribute ``i``, fits every factor of the
face by least squares on a quadratic in the posterior mean ``E[w_i | x, y]``
and prints the fraction of the factor's variance it explains (R²).

    python bench/w_nuisance.py runs/faces32z/csvae-seed0 runs/faces32f/csvae-seed1 [--examples 2000]

The nuisance factors (face position and size, skin tone, hair, background,
shirt, light; ``NUISANCE_NAMES``) are drawn independently of the labels, so a
``W_i`` that holds only its attribute explains none of them (R² near 0) and
explains the attribute's own style factors (its style, colour, size...). A
nuisance that ``W_i`` explains is one that an edit moving ``W_i`` changes
across the image: the edit's cost in identity MSE outside the attribute
(``bench/reconstruction_regions.py``). Multi-channel factors (colours) pool
their channels; categorical ones (hair style, the attribute's style) are
one-hot.
"""

from __future__ import annotations

import argparse

import numpy as np


def quadratic_features(w):
    """``[n, 1 + d + d(d+1)/2]``: 1, ``w_a`` and ``w_a w_b`` (a ≤ b) of ``w`` ``[n, d]``."""
    w = np.asarray(w, np.float64)
    d = w.shape[1]
    products = [w[:, a] * w[:, b] for a in range(d) for b in range(a, d)]
    return np.column_stack([np.ones(len(w)), w, *products])


def least_squares(features, target):
    """Fits ``target`` ``[n]`` or ``[n, c]`` ≈ ``features`` ``[n, f]`` · ``B``;
    returns ``(B [f, c], R²)`` with ``R² = 1 − Σ residual² / Σ (target − mean)²``
    (channels pooled; NaN for a constant target)."""
    target = np.asarray(target, np.float64).reshape(len(target), -1)
    coefficients, *_ = np.linalg.lstsq(features, target, rcond=None)
    total = ((target - target.mean(axis=0)) ** 2).sum()
    if total == 0:
        return coefficients, float("nan")
    return coefficients, float(1.0 - ((target - features @ coefficients) ** 2).sum() / total)


def r_squared(w, target):
    """R² of the least-squares fit of ``target`` on ``quadratic_features(w)``."""
    return least_squares(quadratic_features(w), target)[1]


def _as_target(values):
    """Integer factors are categories: one-hot columns; others as they are."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        return (values[:, None] == np.unique(values)[None, :]).astype(np.float64)
    return values


def main(argv=None) -> dict[str, dict[str, dict[str, float]]]:
    """Prints one line per run and attribute; returns ``{run: {label: {factor: R²}}}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="synthetic_faces CSVAE run directories")
    parser.add_argument("--examples", type=int, default=2000, help="test faces (those with each attribute are fitted)")
    args = parser.parse_args(argv)

    from keras_csvae.data.synthetic_faces import NUISANCE_NAMES
    from keras_csvae.data.synthetic_faces.factors import FACTOR_NAMES
    from keras_csvae.evaluation.report import test_examples
    from keras_csvae.training.runs import load_run

    results = {}
    for run in args.runs:
        config, model = load_run(run)
        if config.dataset != "synthetic_faces" or config.model != "csvae":
            parser.error(f"{run} is a {config.model} run on {config.dataset}; this needs a CSVAE on synthetic_faces.")
        x, y, _, factors = test_examples(config, args.examples)
        w_mean = model.encode(x, y)["w_mean"]  # [n, k * w_dim]
        results[run] = {}
        print(f"{run}: R² of each factor from E[w_i | x, y], faces with attribute i", flush=True)
        for i, label in enumerate(model.label_names):
            on = y[:, i] == 1
            w_i = w_mean[on][:, i * model.w_dim : (i + 1) * model.w_dim]
            own = [name for name in FACTOR_NAMES if name.startswith(f"{label}_") and name != f"{label}_style_u"]
            scores = {name: r_squared(w_i, _as_target(factors[name][on])) for name in (*NUISANCE_NAMES, *own)}
            results[run][label] = scores
            nuisances = sorted(NUISANCE_NAMES, key=lambda name: -scores[name])
            print(
                f"  {label} ({int(on.sum())} faces): nuisances "
                + ", ".join(f"{name} {scores[name]:.2f}" for name in nuisances)
                + " | own: "
                + ", ".join(f"{name} {scores[name]:.2f}" for name in own),
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
