"""Where do a trained model's reconstructions of synthetic faces err? Prints
the squared error per pixel outside every attribute's mask (the rest of the
face, the background: what identity MSE measures) and inside each
attribute's mask, for each run given, on the same test faces.

    python bench/reconstruction_regions.py runs/faces32b/csvae-seed0 runs/faces32b/vae-seed0 [--examples 300]

Separates the two sources of an editor's identity MSE: a reconstruction that
misses the face (this script) and an edit that moves pixels it should not.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> dict[str, dict[str, float]]:
    """Prints one line per run; returns ``{run: {"outside": mse, <label>: mse inside its mask}}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="synthetic_faces run directories")
    parser.add_argument("--examples", type=int, default=300)
    args = parser.parse_args(argv)

    from keras_csvae.evaluation.report import test_examples
    from keras_csvae.training.runs import load_run

    errors, faces = {}, {}
    for run in args.runs:
        config, model = load_run(run)
        if config.dataset != "synthetic_faces":
            parser.error(f"{run} is a {config.dataset} run; this script needs synthetic_faces (masks).")
        size = config.dataset_options.get("image_size")
        if size not in faces:  # rendered once per image size: every run sees the same faces
            x, y, truth, factors = test_examples(config, args.examples)
            faces[size] = x, y, {name: truth.masks(factors, i) for i, name in enumerate(model.label_names)}
        x, y, masks = faces[size]  # masks: [n, S, S] bool per label
        error = ((model.reconstruct(x, y) - x) ** 2).mean(axis=-1)  # [n, S, S], mean over channels
        outside = ~np.logical_or.reduce(list(masks.values()))
        errors[run] = {"outside": float(error[outside].mean())}
        errors[run].update({name: float(error[mask].mean()) for name, mask in masks.items()})
        cells = "  ".join(f"{name} {errors[run][name]:.5f}" for name in masks)
        print(f"{run}: outside the masks {errors[run]['outside']:.5f}  inside: {cells}", flush=True)
    return errors


if __name__ == "__main__":
    main()
