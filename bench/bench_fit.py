"""Where an epoch of ``csvae train`` goes beyond its train steps.

``train()`` runs ``model.fit`` with validation data, a progress bar and three
callbacks: ``StopOnNaN`` (a per-batch hook), ``EpochCheckpoint`` (saves the
model and both optimisers every epoch) and ``TensorBoard``. This times one
epoch of ``--steps`` train steps of the dataset's default model, fed by
``dataset_for`` as ``train()`` feeds it, under each addition alone and under
all of them, interleaved round-robin so that load changes hit every variant
alike. Every variant trains the same model further (its speed, not its
result, is measured).

Columns: median wall seconds per epoch, CPU seconds, and the ratio to the
plain ``fit`` of the same run.

Then whole epochs (one pass of the training split) with ``train()``'s
callbacks, fed two ways, interleaved: the finite dataset, for which Keras
makes a new iterator every epoch and a spare one at its end (``train()``
before), and the repeated dataset with ``steps_per_epoch`` (one iterator for
the run: ``train()`` now). Columns: per-epoch wall seconds (median, max),
the epochs whose first step took over 2 s, and the total.

    python bench/bench_fit.py                 # faces 32 px, 10,000 faces, ~12 min
    python bench/bench_fit.py --quick         # CI smoke run (tiny model, 512 faces), ~40 s
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

common.quiet_tensorflow()

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def variants(model, train_ds, val_full, val_default, steps, scratch: Path) -> dict:
    """name -> () -> None: one epoch of ``steps`` train steps of ``fit`` each;
    ``val_full``: the whole validation split, ``val_default``: what ``train()`` validates on."""
    import keras

    from keras_csvae.training.callbacks import EpochCheckpoint, StopOnNaN
    from keras_csvae.training.train import fit_callbacks

    def fit(validation=None, make_callbacks=list, verbose=0):
        def run():
            # The progress bar goes to a buffer: a terminal's cost is not this
            # process's, and the report stays readable.
            with contextlib.redirect_stdout(io.StringIO()):
                model.fit(
                    train_ds,
                    epochs=1,
                    steps_per_epoch=steps,
                    validation_data=validation,
                    callbacks=make_callbacks(),
                    shuffle=False,  # as train(): the dataset shuffles itself
                    verbose=verbose,
                )

        return run

    def checkpoint():
        return EpochCheckpoint(scratch / "checkpoint")

    return {
        "plain `fit` (no validation, no callbacks, verbose 0)": fit(),
        "+ validation on the whole split": fit(validation=val_full),
        "+ validation on `validation_examples` (the default)": fit(validation=val_default),
        "+ `StopOnNaN` (reads the loss every batch)": fit(make_callbacks=lambda: [StopOnNaN()]),
        "+ `EpochCheckpoint` (one save)": fit(make_callbacks=lambda: [checkpoint()]),
        "+ `TensorBoard`": fit(make_callbacks=lambda: [keras.callbacks.TensorBoard(log_dir=str(scratch / "logs"))]),
        "+ progress bar (verbose 1)": fit(verbose=1),
        "all of the above (what `train()` runs)": fit(
            validation=val_default,
            make_callbacks=lambda: fit_callbacks(checkpoint(), scratch / "logs"),
            verbose=1,
        ),
    }


def epoch_clock():
    """A Keras callback keeping each epoch's wall seconds (``epochs``) and how
    long its first step took (``first_steps``)."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs: list[float] = []
            self.first_steps: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.first_steps.append(time.perf_counter() - self.start)

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self.start)

    return EpochClock()


def iterator_comparison(model, config, val_ds, epochs_per_call, rounds, scratch: Path, log) -> dict:
    """Whole-split epochs with ``train()``'s callbacks: a new iterator per epoch
    vs ``train()``'s ``fit_feed``. ``{name: (epoch clock, steps per epoch)}``."""
    from keras_csvae.training.callbacks import EpochCheckpoint
    from keras_csvae.training.train import dataset_for, fit_callbacks, fit_feed

    finite = dataset_for(config, model, "train", shuffle=True)
    steps = int(finite.cardinality())
    feeds = {
        "finite dataset: a new iterator every epoch (`train()` before)": (finite, None),
        "`fit_feed`: repeated dataset, `steps_per_epoch`, one iterator (`train()` now)": fit_feed(
            finite, steps, config.steps_per_execution
        ),
    }
    clocks = {name: epoch_clock() for name in feeds}

    def run(name):
        data, steps_per_epoch = feeds[name]
        callbacks = fit_callbacks(EpochCheckpoint(scratch / "checkpoint"), scratch / "logs") + [clocks[name]]
        with contextlib.redirect_stdout(io.StringIO()):
            model.fit(
                data,
                epochs=epochs_per_call,
                steps_per_epoch=steps_per_epoch,
                validation_data=val_ds,
                callbacks=callbacks,
                shuffle=False,
                verbose=1,
            )

    for _ in range(rounds):
        for name in feeds:
            run(name)
            log(f"  {name[:40]}: epochs {[round(t, 1) for t in clocks[name].epochs]}")
    return {name: (clock, steps) for name, clock in clocks.items()}


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="train steps per epoch (default 150; quick 4)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3; quick 1)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="whole epochs per feed in the iterator comparison (default 8; quick 2)"
    )
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args(argv)
    quick = args.quick
    steps = args.steps or (4 if quick else 150)
    rounds = args.rounds or (1 if quick else 3)
    epochs = args.epochs or (2 if quick else 8)

    report = common.Report("`fit` overhead of `csvae train` (`bench/bench_fit.py`)", argv, quick=quick)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    from keras_csvae.data import registry
    from keras_csvae.training.train import build_model, compile_model, dataset_for

    n = 512 if quick else 10_000
    config = common.faces_config(args.image_size, n, 32)
    if quick:
        config = dataclasses.replace(config, model_kwargs={**config.model_kwargs, **common.TINY})
    model = build_model(config, registry.info(config.dataset, **config.dataset_options))
    compile_model(model, config)
    train_ds = dataset_for(config, model, "train", shuffle=True).repeat()
    val_full = dataset_for(config, model, "validation", shuffle=False)
    val_default = dataset_for(config, model, "validation", shuffle=False, limit=config.validation_examples)
    val_steps = {name: int(ds.cardinality()) for name, ds in (("whole split", val_full), ("default", val_default))}
    log(f"{config.dataset} {args.image_size} px, batch {config.batch_size}, {steps} steps per epoch")

    with tempfile.TemporaryDirectory(prefix="bench-fit-") as scratch:
        fns = variants(model, train_ds, val_full, val_default, steps, Path(scratch))
        timings = common.interleaved(fns, rounds=rounds, warmup=1)
        # Two calls of `fit` per feed, alternating, so that load changes hit both.
        feeds = iterator_comparison(model, config, val_default, max(1, epochs // 2), 2, Path(scratch), log)
    plain = timings[next(iter(timings))]
    rows = []
    for name, t in timings.items():
        rows.append((name, t.wall, t.cpu, t.wall / steps * 1e3, t.wall / plain.wall))
        log(f"  {name}: {t.wall:.2f} s wall, {t.cpu:.2f} CPU-s per epoch ({t.wall / plain.wall:.2f}x plain)")

    report.text(
        f"{config.dataset} at {args.image_size} px, the preset's model"
        f"{' (tiny widths)' if quick else ''}, float32, batch {config.batch_size}: one epoch = "
        f"{steps} train steps (+ {val_steps['whole split']} validation batches for the whole split, "
        f"{val_steps['default']} for the default `validation_examples` = {config.validation_examples}); "
        f"{len(plain)} interleaved round(s) after a warm-up round; medians."
    )
    report.table(
        ["variant", "wall s / epoch", "CPU-s / epoch", "wall ms / train step", "÷ plain (wall)"],
        rows,
        align="lrrrr",
    )
    report.text(
        f"Whole epochs ({next(iter(feeds.values()))[1]} train steps each), validation on "
        f"`validation_examples` and `train()`'s callbacks; {epochs} epochs per feed in two calls of "
        f"`fit` each, the feeds alternating."
    )
    report.table(
        ["feed", "median s / epoch", "max s / epoch", "epochs with a first step > 2 s", "total s"],
        [
            (
                name,
                common.median(clock.epochs),
                max(clock.epochs),
                f"{sum(t > 2.0 for t in clock.first_steps)} of {len(clock.epochs)}",
                sum(clock.epochs),
            )
            for name, (clock, _) in feeds.items()
        ],
        align="lrrrr",
    )
    report.finish(args.output)
    return timings, feeds


if __name__ == "__main__":
    main()
