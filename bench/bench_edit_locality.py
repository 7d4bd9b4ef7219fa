"""What the CSVAE's ``edit_locality`` penalty costs per train step.

The penalty decodes one more image for a quarter of each batch (one label
flipped per example, ``CSVAE.flipped_w``). This times Keras's compiled train
step (both optimisers) of the default ``synthetic_faces`` model with
``edit_locality`` 0 (the paper's objective) and with ``--locality`` (default
0.05), the same weights, interleaved round-robin so that load changes hit both
alike. Columns: median wall and CPU seconds per step, samples per second, and
the ratio to ``edit_locality`` 0 in the same run.

    python bench/bench_edit_locality.py            # default 32 px model, batch 32, ~40 s
    python bench/bench_edit_locality.py --quick    # CI smoke run (tiny model), ~20 s
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

common.quiet_tensorflow()


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--locality", type=float, default=0.05, help="edit_locality of the timed variant")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None, help="timed interleaved rounds (default 60; quick 5)")
    args = parser.parse_args(argv)
    import numpy as np
    from bench_train import build, train_step_fn

    report = common.Report("Edit-locality cost (`bench/bench_edit_locality.py`)", argv, quick=args.quick)
    size = 32
    arch = "tiny" if args.quick else "default"  # bench_train's: the synthetic_faces preset's model
    rounds = args.rounds or (5 if args.quick else 60)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, size, size, 3), dtype=np.float32)
    y = (rng.random((args.batch, 3)) < 0.5).astype(np.float32)
    variants = {value: build(arch, size, "float32", edit_locality=value) for value in (0.0, args.locality)}
    variants[args.locality].set_weights(variants[0.0].get_weights())
    steps = {f"edit_locality {value:g}": train_step_fn(model, x, y) for value, model in variants.items()}
    timings = common.interleaved(steps, rounds=rounds, warmup=3)
    base = timings["edit_locality 0"]
    rows = [
        (
            name,
            len(t),
            common.fmt(t.wall * 1e3),
            common.fmt(t.cpu * 1e3),
            common.fmt(args.batch / t.wall),
            f"{t.wall / base.wall:.2f}×",
        )
        for name, t in timings.items()
    ]
    report.text(
        f"Train step of the {'tiny' if args.quick else 'default synthetic_faces'} {size}×{size} model, "
        f"batch {args.batch}, float32; medians of interleaved rounds."
    )
    report.table(["variant", "rounds", "wall ms/step", "CPU ms/step", "samples/s", "time vs λ = 0"], rows)
    report.finish(args.output)


if __name__ == "__main__":
    main(sys.argv[1:])
