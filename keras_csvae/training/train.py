"""``train(config, run_dir)``: one resumable training run, written to ``run_dir``
(layout: ``keras_csvae.training.runs``).

Running the same command again resumes from ``checkpoint/``; running it on a
finished run does nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from keras_csvae import models
from keras_csvae.data import registry
from keras_csvae.io import write_json
from keras_csvae.training import runs
from keras_csvae.training.callbacks import EpochCheckpoint, StopOnNaN
from keras_csvae.training.config import TrainConfig
from keras_csvae.training.distribute import cpu_has_bfloat16, is_chief, make_strategy, set_precision


def build_model(config: TrainConfig, info: registry.DatasetInfo):
    """The (uncompiled) model that ``config`` describes, for data ``info``.

    Its initial weights are drawn after ``keras.utils.set_random_seed(config.seed)``
    (which also seeds Python's, NumPy's and TensorFlow's global generators), so
    one config builds the same model every time.
    """
    if config.model not in models.MODELS:
        raise ValueError(f"Unknown model {config.model!r}; known: {', '.join(sorted(models.MODELS))}.")
    keras.utils.set_random_seed(config.seed)
    return models.MODELS[config.model](
        data_shape=info.input_shape,
        num_labels=info.num_labels,
        label_names=info.label_names,
        seed=config.seed,
        **config.model_kwargs,
    )


def schedule_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The steps a learning-rate schedule spans: the whole run, ``epochs`` × batches."""
    return config.epochs * steps_per_epoch


def scheduled_learning_rate(initial: float, config: TrainConfig, steps_per_epoch: int | None):
    """``initial``, or its schedule over the run (``config.learning_rate_schedule``)."""
    if config.learning_rate_schedule == "constant":
        return initial
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError(
            f"The {config.learning_rate_schedule!r} learning-rate schedule needs the number of "
            f"batches per epoch, got {steps_per_epoch}."
        )
    return keras.optimizers.schedules.CosineDecay(initial, decay_steps=schedule_steps(config, steps_per_epoch))


def check_schedule_length(model, config: TrainConfig, steps_per_epoch: int):
    """Refuses to resume a scheduled run for another number of epochs: its
    step size was planned to reach 0 at the epochs it was started with."""
    schedule = model.optimizer.get_config()["learning_rate"]
    if not isinstance(schedule, dict):  # a constant step size
        return
    planned = schedule["config"]["decay_steps"]
    if planned != schedule_steps(config, steps_per_epoch):
        epochs = planned // steps_per_epoch
        raise ValueError(
            f"This run's learning-rate schedule decays to 0 over {epochs} epochs ({planned} steps); "
            f"it cannot be resumed for {config.epochs} epochs. Resume it with --epochs {epochs}, "
            f"or start a new run."
        )


def compile_model(model, config: TrainConfig, steps_per_epoch: int | None = None):
    """Compiles ``model`` with the two Adam optimisers of ``config``; a
    schedule other than ``constant`` needs ``steps_per_epoch``."""
    elbo_rate, adversary_rate = (
        scheduled_learning_rate(lr, config, steps_per_epoch)
        for lr in (config.learning_rate, config.adversary_learning_rate)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(elbo_rate),
        adversary_optimizer=keras.optimizers.Adam(adversary_rate),
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    return model


def dataset_for(config: TrainConfig, model, split: str, shuffle: bool, limit: int | None = None):
    """Batched ``(x, y)`` for ``split`` (its first ``limit`` examples, if
    given), checked against ``model`` first.

    In-memory datasets are checked value by value (finite ``x``, labels in
    {0, 1}); streamed ones by their element shapes.
    """
    spec = registry.get(config.dataset)
    if spec.tf_data_fn is None:
        x, y = registry.load_arrays(config.dataset, split, **config.dataset_options)
        x, y = model.check_arrays(x[:limit], y[:limit])
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        size = len(x)
    else:
        # Shuffled and batched as stored (uint8 images: a quarter of float32's
        # memory and copying), converted to float a batch at a time.
        ds = registry.load_stored(config.dataset, split, **config.dataset_options)
        x_spec, y_spec = ds.element_spec
        model.check_static_shapes(tf.zeros([1, *x_spec.shape]), tf.zeros([1, *y_spec.shape]))
        size = 10_000
        if limit is not None:
            ds, size = ds.take(limit), min(size, limit)
    if shuffle:
        ds = ds.shuffle(min(size, 10_000), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size).map(registry.as_float_images, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def fit_feed(train_ds, steps_per_epoch: int, steps_per_execution: int):
    """``(data, steps_per_epoch)`` for ``fit``: one iterator for the whole run.

    Given a finite dataset, Keras makes a new iterator every epoch and a spare
    one at its end; refilling the shuffle buffer behind them stalled the first
    step of half the epochs by 15-20 s (``bench/bench_fit.py``). So the data
    are repeated (every pass shuffled anew) with an explicit epoch length,
    unless ``steps_per_execution`` does not divide it: Keras runs whole
    executions, and an epoch of repeated data would run over its end. (The
    validation data stay finite: repeating them brought the stalls back.)
    """
    if steps_per_epoch > 0 and steps_per_epoch % steps_per_execution == 0:
        return train_ds.repeat(), steps_per_epoch
    return train_ds, None


def fit_callbacks(checkpoint: EpochCheckpoint, log_dir) -> list:
    """The callbacks of every run: stop on NaN, checkpoint each epoch, TensorBoard logs."""
    return [StopOnNaN(), checkpoint, keras.callbacks.TensorBoard(log_dir=str(log_dir))]


def train(config: TrainConfig, run_dir, verbose="auto"):
    """Trains (or resumes) the run in ``run_dir``. Returns the trained model.

    The per-epoch history is in ``run_dir/history.json``.

    Raises:
      registry.DatasetError, models.InputError, runs.RunDirError, ValueError: bad
        input, before anything is written.
      TrainingDivergedError: the loss became non-finite (last good checkpoint kept).
    """
    config = config.resolved()
    run_dir = Path(run_dir)
    # The multi-worker strategy must exist before any other op runs.
    strategy = make_strategy(config.strategy)
    policy = set_precision(config.precision)
    info = registry.info(config.dataset, **config.dataset_options)
    runs.check_run_dir(run_dir, config)
    chief = is_chief()

    checkpoint_dir = run_dir / runs.CHECKPOINT_DIR
    state = EpochCheckpoint.load_state(checkpoint_dir)
    done = state["epoch"] if state else 0
    model_path = run_dir / runs.MODEL_FILE
    if done >= config.epochs and model_path.exists():
        print(f"{run_dir} already holds {done} trained epochs; nothing to do.")
        return keras.saving.load_model(model_path)

    with strategy.scope():
        model = keras.saving.load_model(checkpoint_dir / state["model"]) if state else build_model(config, info)
        train_ds = dataset_for(config, model, "train", shuffle=True)
        val_ds = dataset_for(config, model, "validation", shuffle=False, limit=config.validation_examples)
        steps_per_epoch = int(train_ds.cardinality())
        if state:
            check_schedule_length(model, config, steps_per_epoch)
        else:
            compile_model(model, config, steps_per_epoch)

    # Inputs are good: from here on the run directory may be written.
    scratch = None
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / runs.CONFIG_FILE, config.to_dict())
        log_dir = run_dir / runs.LOGS_DIR
    else:  # non-chief workers write nothing to the shared run directory
        scratch = Path(tempfile.mkdtemp(prefix="csvae-worker-"))
        log_dir = scratch / runs.LOGS_DIR
    checkpoint = EpochCheckpoint(checkpoint_dir, history=state["history"] if state else (), write=chief)
    if done:
        print(f"Resuming {run_dir} after epoch {done} of {config.epochs}.")
    if policy == "float32" and info.is_image and not tf.config.list_physical_devices("GPU") and cpu_has_bfloat16():
        print("This CPU has native bfloat16 matmuls: --precision mixed_bfloat16 trains conv models 1.1-2× faster.")
    print(
        f"Training {config.model} on {config.dataset} {info.input_shape} for {config.epochs} epochs, "
        f"batch {config.batch_size}, {policy}, {strategy.num_replicas_in_sync} replica(s); "
        f"validating on {int(val_ds.cardinality())} batch(es) per epoch."
    )
    train_ds, fit_steps = fit_feed(train_ds, steps_per_epoch, config.steps_per_execution)
    start = time.time()
    try:
        model.fit(
            train_ds,
            steps_per_epoch=fit_steps,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=done,
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=fit_callbacks(checkpoint, log_dir),
            verbose=verbose,
        )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if chief:
        tmp = run_dir / ".model.tmp.keras"
        model.save(tmp)
        os.replace(tmp, model_path)
        write_json(run_dir / runs.HISTORY_FILE, checkpoint.history)
        print(f"Trained {config.epochs - done} epoch(s) in {time.time() - start:.1f} s; model: {model_path}")
    return model
