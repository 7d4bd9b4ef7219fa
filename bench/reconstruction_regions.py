"""Where do a trained model's reconstructions of synthetic faces err? Prints
the squared error per pixel outside every attribute's mask (the rest of the
face, the background: what identity MSE measures) and inside each
attribute's mask, for each run given, on the same test faces.

    python bench/reconstruction_regions.py runs/faces32b/csvae-seed0 runs/faces32b/vae-seed0 [--examples 300]

Separates the two sources of an editor's identity MSE: a reconstruction that
misses the face and an edit that moves pixels it should not. A second line
per run does the split per attribute ``i``: identity MSE (error outside
``i``'s mask, ``edits.identity_mse``) of the plain reconstructions, the floor
any edit of that model starts from, beside that of the model's own edits
switching ``i`` (both directions, the editor ``csvae evaluate`` scores). A
third line shows what the edits themselves move outside ``i``'s mask (squared
change from the reconstruction), per direction and in the image's top third.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> dict[str, dict]:
    """Prints three lines per run; returns ``{run: {"outside": mse, <label>: mse inside its mask,
    "identity": {<label>: {"reconstruction": mse, "edit": mse}},
    "change": {<label>: {"on": ..., "off": ..., "top_third": ...}}}}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="synthetic_faces run directories")
    parser.add_argument("--examples", type=int, default=300)
    args = parser.parse_args(argv)

    from keras_csvae.evaluation.edits import edit_targets, identity_mse, model_editor
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
        reconstruction = model.reconstruct(x, y)
        error = ((reconstruction - x) ** 2).mean(axis=-1)  # [n, S, S], mean over channels
        outside = ~np.logical_or.reduce(list(masks.values()))
        errors[run] = {"outside": float(error[outside].mean())}
        errors[run].update({name: float(error[mask].mean()) for name, mask in masks.items()})
        cells = "  ".join(f"{name} {errors[run][name]:.5f}" for name in masks)
        print(f"{run}: outside the masks {errors[run]['outside']:.5f}  inside: {cells}", flush=True)
        editor = model_editor(model)
        identity, change = {}, {}
        for i, (name, mask) in enumerate(masks.items()):
            edited = editor(x, y, edit_targets(y, i))
            identity[name] = {
                "reconstruction": identity_mse(reconstruction, x, mask),
                "edit": identity_mse(edited, x, mask),
            }
            change[name] = _change_outside(edited, reconstruction, mask, y[:, i])
        errors[run]["identity"] = identity
        errors[run]["change"] = change
        cells = "  ".join(f"{n} {v['reconstruction']:.5f} / {v['edit']:.5f}" for n, v in identity.items())
        mean = {k: np.mean([v[k] for v in identity.values()]) for k in ("reconstruction", "edit")}
        print(
            f"  identity MSE, reconstruction / edit: {cells}  mean {mean['reconstruction']:.5f} / {mean['edit']:.5f}",
            flush=True,
        )
        cells = "  ".join(f"{n} {v['on']:.5f} / {v['off']:.5f} ({v['top_third']:.5f})" for n, v in change.items())
        print(f"  edit's change outside the mask, off → on / on → off (top third): {cells}", flush=True)
    return errors


def _change_outside(edited, reconstruction, mask, y_i):
    """What an edit moves outside the attribute's ``mask`` ``[n, S, S]``: the
    mean of ``|edited − reconstruction|²`` there, per direction (``on``: the
    faces without the attribute, ``y_i = 0``), and over the top third of the
    image alone (far from the mouth and chin: for smile and facial hair, a
    change there is not blur spilling over the mask's edge)."""
    change = ((edited - reconstruction) ** 2).mean(axis=-1)  # [n, S, S]
    outside = ~mask
    top = np.zeros_like(outside)
    top[:, : outside.shape[1] // 3] = True

    def mean(rows, where):
        selected = change[rows][where[rows]]
        return float(selected.mean()) if selected.size else float("nan")  # no face in that direction

    return {
        "on": mean(y_i == 0, outside),
        "off": mean(y_i == 1, outside),
        "top_third": mean(np.ones_like(y_i, bool), outside & top),
    }


if __name__ == "__main__":
    main()
