"""How strongly does a trained CSVAE draw each attribute? Switches every label
on for the test faces that lack it, with ``W_i`` set to points ever further
along the diagonal (the prior mean of convention "B" is ``(3, 3)``), and prints
the fraction the judge reads as switched on, beside the identity MSE (error
outside the attribute's mask) of the same edits.

    python bench/edit_strength.py runs/abl/default_e30_s1 [--points 3 4 5 7] [--examples 300]
    python bench/edit_strength.py RUN --strengths 1 7/6 4/3 3/2 --split validation

A decoder that draws an attribute faintly (an average style) scores low at the
prior mean and higher further out; one that cannot draw it stays low everywhere.

A second table splits the faces that have each attribute by style (e.g.
moustache, goatee, full beard): how often the judge reads the attribute on
the real faces and on their plain reconstructions, and the mean posterior
``E[w_i | x, y]`` of the style, which shows the style the prior's mean decodes to,
and the off -> on rate of the edits that set ``W_i`` to that mean instead of the
prior's: whether the attribute is lost at one end of ``W_i`` (a style the decoder
draws faintly) or everywhere.

With ``--strengths``, a third table scores the model's own edits (every label,
both directions, ``edit_metrics``) at each ``edit_strength``: manipulation,
off -> on per label, identity, counterfactual MSE and preservation, the
trade-off of a stronger edit. ``--split validation`` chooses a strength on
faces the test metrics never see.
"""

from __future__ import annotations

import argparse

import numpy as np

from serving.runtime.contract import edit_strength_argument


def main(argv=None) -> dict[str, dict]:
    """Prints the tables; returns ``{"points": {label: [(point, off->on rate,
    identity MSE), ...]}, "styles": {label: [(style, n, rate on real faces,
    rate on reconstructions, mean w, off->on rate at mean w), ...]},
    "strengths": {strength: edit_metrics summary}}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="an evaluated synthetic_faces run directory")
    parser.add_argument("--points", type=float, nargs="+", default=[3.0, 4.0, 5.0, 7.0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument(
        "--strengths",
        type=edit_strength_argument,
        nargs="*",
        default=[],
        help="edit_strength values (1.5, 7/6, or one per label: 1,1,5/3)",
    )
    parser.add_argument("--split", default="test", choices=["validation", "test"], help="faces to edit")
    parser.add_argument("--judge-dir", default=None, help="judge cache (default: ~/.cache/keras_csvae/judges)")
    args = parser.parse_args(argv)

    from keras_csvae.data.synthetic_faces import STYLES
    from keras_csvae.evaluation.edits import edit_metrics, edit_targets, identity_mse, model_editor
    from keras_csvae.evaluation.report import judge_for, test_examples
    from keras_csvae.training.runs import load_run

    config, model = load_run(args.run)
    if config.dataset != "synthetic_faces":
        parser.error(f"{args.run} is a {config.dataset} run; this script needs synthetic_faces (masks, judge).")
    judge = judge_for(config.dataset, config.dataset_options, args.judge_dir)
    x, y, truth, factors = test_examples(config, args.examples, args.split)
    rows = {}
    print(f"{args.run}: off -> on read by the judge (identity MSE) at W_i = (p, p)")
    for i, name in enumerate(model.label_names):
        off = y[:, i] == 0
        x_off, y_off, mask = x[off], y[off], truth.masks(factors, i)[off]
        y_target = edit_targets(y_off, i)  # label i switched on, the others kept
        cells = []
        for p in args.points:
            edited = model.manipulate(x_off, y_target, y=y_off, w_points={i: [p] * model.w_dim})
            on = np.mean(judge.labels(edited)[:, i] == 1)
            identity = identity_mse(edited, x_off, mask)
            cells.append(f"{p:g}: {on:.2f} ({identity:.4f})")
            rows.setdefault(name, []).append((p, float(on), float(identity)))
        print(f"  {name:12s} " + "   ".join(cells))

    # The styles of each attribute, read on the faces that have it.
    styles = truth.styles(factors)
    read_real, read_reconstruction = judge.labels(x), judge.labels(model.reconstruct(x, y))
    w_mean = model.encode(x, y)["w_mean"]
    by_style = {}
    print(
        "by style: judge reads the attribute on real faces / on reconstructions; mean E[w_i | x, y];"
        " off -> on with W_i at that mean"
    )
    for i, name in enumerate(model.label_names):
        off = y[:, i] == 0  # the faces every style's edit switches on, and their targets, once per label
        x_off, y_off, y_target = x[off], y[off], edit_targets(y[off], i)
        for s, style in enumerate(STYLES[name]):
            has = (y[:, i] == 1) & (styles[:, i] == s)
            if not has.any():
                continue
            w_style = w_mean[has][:, i * model.w_dim : (i + 1) * model.w_dim].mean(axis=0)
            real, recon = float(read_real[has, i].mean()), float(read_reconstruction[has, i].mean())
            edited = model.manipulate(x_off, y_target, y=y_off, w_points={i: w_style.tolist()})
            switched = float(np.mean(judge.labels(edited)[:, i] == 1))
            by_style.setdefault(name, []).append((style, int(has.sum()), real, recon, w_style.tolist(), switched))
            print(
                f"  {name:12s} {style:11s} n={has.sum():4d}  {real:.2f} / {recon:.2f}  w = {np.round(w_style, 2)}"
                f"  on {switched:.2f}"
            )

    by_strength = {}
    if args.strengths:
        print(
            f"the model's edits at each edit_strength ({args.split} faces): manipulation, off -> on"
            f" ({' / '.join(model.label_names)}), on -> off, identity MSE, counterfactual MSE, preservation"
        )
    for strength in args.strengths:
        model.edit_strength = strength
        scores = edit_metrics(model_editor(model), judge, x, y, model.label_names, truth=truth, factors=factors)
        by_strength[strength] = scores
        per_label = " / ".join(f"{scores['per_label'][n]['manipulation_accuracy_on']:.2f}" for n in model.label_names)
        print(
            f"  {_shown(strength)}: {scores['manipulation_accuracy']:.3f}, {scores['manipulation_accuracy_on']:.3f}"
            f" ({per_label}), {scores['manipulation_accuracy_off']:.3f}, {scores['identity_mse']:.5f},"
            f" {scores['counterfactual_mse']:.5f}, {scores['preservation_accuracy']:.3f}"
        )
    return {"points": rows, "styles": by_style, "strengths": by_strength}


def _shown(strength) -> str:
    """``1.5`` or, one per label, ``1,1,1.667``."""
    return ",".join(f"{s:.4g}" for s in np.atleast_1d(strength))


if __name__ == "__main__":
    main()
