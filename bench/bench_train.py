"""Training throughput of the CSVAE train step (both optimisers), and where its time goes.

Times Keras's own compiled train function (``model.make_train_function()``,
what ``fit`` runs each step) on a repeated in-memory batch, after its first
(tracing) call, for:

- the MLP of the swiss roll and the conv model at the CPU-sized widths of
  ``synthetic_faces`` (its training preset) at 32, 64 and 128 px and batch sizes
  32, 64, 128; the paper's widths (conv 64/128/256, dense 2048, decoder
  256/128/32) at 64 px, batch 64 (the target's configuration);
- float32 (TF graph), float32 with ``jit_compile=True`` (XLA) and
  ``mixed_bfloat16``, interleaved step by step so that they share the load.

Each model's FLOPs per training example are counted from its layers (checked
against TensorFlow's profiler on the traced step) and compared with a large
float32 matmul timed in the same run (and a bfloat16 one). Then: a breakdown
of one step (forward, backward, optimiser), a retracing check and a
float32-vs-bfloat16 loss check. It measures today's code only: the before →
after figures of past speed changes are in BENCHMARKS.md, with the commit
that measured them.

In full mode each part with a big model runs in its own subprocess: TensorFlow
does not give back the memory of deleted models (about 0.9 GB per paper-width
64 px model), and a single process ran out of memory.

    python bench/bench_train.py            # full, ~9 min (2 cores, light load)
    python bench/bench_train.py --quick    # CI smoke run, ~30-45 s
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

common.quiet_tensorflow()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

MODES = ("float32", "xla", "bf16", "bf16+xla")
MODE_LABEL = {"float32": "float32 graph", "xla": "float32 XLA", "bf16": "mixed_bfloat16", "bf16+xla": "bf16 + XLA"}


# -- models -------------------------------------------------------------------------------------
def architectures() -> dict[str, dict]:
    """name -> constructor kwargs: the models ``csvae train`` builds for these datasets
    (``TrainConfig.resolved``), so they stay in sync with the code."""
    from keras_csvae.models.base import ARCHITECTURE_DEFAULTS
    from keras_csvae.training import TrainConfig

    def trained(dataset):
        return TrainConfig(dataset=dataset).resolved().model_kwargs

    faces = trained("synthetic_faces")
    paper = dict(
        faces,
        conv_filters=list(ARCHITECTURE_DEFAULTS["conv_filters"]),
        dense_units=ARCHITECTURE_DEFAULTS["dense_units"],
        decoder_filters=list(ARCHITECTURE_DEFAULTS["decoder_filters"]),
        edit_locality=0.0,  # the paper's objective as well as its widths
    )
    return {
        "mlp": trained("swiss_roll"),
        "default": faces,
        "paper": paper,
        "celeba": trained("celeba_glasses_facial_hair"),
        "tiny": common.TINY,
    }


def model_name(arch: str, size: int | None) -> str:
    return "MLP (swiss roll)" if arch == "mlp" else f"conv {arch} {size}×{size}"


def data_shape(arch, size):
    return (3,) if arch == "mlp" else (size, size, 3)


def num_labels(arch):
    return {"mlp": 1, "celeba": 2}.get(arch, 3)


@contextlib.contextmanager
def policy(name: str):
    import keras

    old = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)


def build(arch: str, size: int | None, mode: str, seed: int = 0, **overrides):
    """A compiled CSVAE in ``mode`` (its own dtype policy and jit_compile);
    ``overrides`` replace constructor arguments of ``architectures()[arch]``."""
    import keras

    from keras_csvae import CSVAE

    keras.utils.set_random_seed(seed)
    with policy("mixed_bfloat16" if mode.startswith("bf16") else "float32"):
        model = CSVAE(
            data_shape=data_shape(arch, size),
            num_labels=num_labels(arch),
            seed=seed,
            **{**architectures()[arch], **overrides},
        )
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            adversary_optimizer=keras.optimizers.Adam(1e-3),
            jit_compile=mode.endswith("xla"),
        )
    return model


def random_batch(arch, size, batch, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((batch, *data_shape(arch, size)), dtype=np.float32)
    if arch == "mlp":
        x = x * 2 - 1
    y = (rng.random((batch, num_labels(arch))) < 0.5).astype(np.float32)
    return x, y


def train_step_fn(model, x, y):
    """``() -> loss``: one call of Keras's compiled train function on a repeated batch."""
    import tensorflow as tf

    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    model.make_train_function()
    function = model.train_function

    def step():
        return float(function(iterator)["loss"])

    return step


# -- FLOPs --------------------------------------------------------------------------------------
def layer_flops(layer) -> float:
    """Forward multiply-adds × 2 of one Dense / Conv2D / Conv2DTranspose, per example."""
    from keras import layers

    if isinstance(layer, layers.Conv2DTranspose):
        _, h, w, c_in = layer.input.shape
        kh, kw = layer.kernel_size
        return 2.0 * h * w * kh * kw * c_in * layer.filters
    if isinstance(layer, layers.Conv2D):
        _, h, w, _ = layer.output.shape
        kh, kw = layer.kernel_size
        return 2.0 * h * w * kh * kw * layer.input.shape[-1] * layer.filters
    if isinstance(layer, layers.Dense):
        return 2.0 * layer.kernel.shape[0] * layer.units
    return 0.0


def forward_flops(model) -> float:
    """Forward FLOPs per example of ``manipulate``-style inference parts and the whole model."""
    return sum(
        layer_flops(layer)
        for sub in (model.z_encoder, model.w_encoder, model.decoder, model.adversary)
        for layer in sub.layers
    )


def train_flops(model) -> float:
    """FLOPs per example of one CSVAE train step (both optimisers), from the layers.

    ELBO step: forward of both encoders, decoder and adversary; weight
    gradients of encoders and decoder; input gradients of every layer except
    those that read ``x`` itself, and of the adversary (into ``z``).
    Adversary step: its forward and weight gradients. With ``edit_locality``
    > 0 the decoder runs again, forward and both gradients, on a quarter of
    the batch (``CSVAE``'s edit-locality pass). Bias adds, activations,
    losses and the optimisers' updates are not counted (they are not FLOP-bound).
    """
    from keras_csvae.models.csvae import EDIT_LOCALITY_EVERY

    total = 0.0
    for sub in (model.z_encoder, model.w_encoder, model.decoder):
        passes = 1 + 1 / EDIT_LOCALITY_EVERY if sub is model.decoder and model.edit_locality else 1
        for layer, needs_input_grad in _input_grads(sub, grad_inputs=("latent",)):
            total += layer_flops(layer) * (3 if needs_input_grad else 2) * passes
    adversary = sum(layer_flops(layer) for layer in model.adversary.layers)
    return total + 2 * adversary + 2 * adversary


def _input_grads(sub, grad_inputs):
    """``[(layer, needs the gradient of its input)]`` of a functional model: an
    input needs one when it depends on a weight or on a model input named in
    ``grad_inputs`` (the decoder's latent; not ``x`` or ``y``)."""
    from keras import layers, tree

    depends = {}  # layer name -> its output depends on something differentiated
    out = []
    for layer in sub.layers:
        if isinstance(layer, layers.InputLayer):
            depends[layer.name] = layer.name in grad_inputs
            continue
        sources = [t._keras_history.operation.name for t in tree.flatten(layer.input)]
        needs = any(depends.get(s, True) for s in sources)
        depends[layer.name] = needs or bool(layer.trainable_weights)
        out.append((layer, needs))
    return out


def profiler_flops(model, x, y) -> float:
    """TensorFlow's profiler count of the FLOPs of the traced train step, per example."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    concrete = tf.function(model.train_step).get_concrete_function((tf.constant(x), tf.constant(y)))
    options = (
        option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    return model_analyzer.profile(concrete.graph, options=options).total_float_ops / len(x)


# -- matmul peak --------------------------------------------------------------------------------
def matmul_peak(n: int, rounds: int, budget_s: float):
    """Interleaved float32 / bfloat16 ``[n, n] @ [n, n]``: {dtype: (GFLOP/s wall, GFLOP per CPU-s)}."""
    import tensorflow as tf

    fns = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.normal([n, n], seed=1), dtype)
        b = tf.cast(tf.random.normal([n, n], seed=2), dtype)
        matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
        fns[dtype.name] = lambda f=matmul, a=a, b=b: f(a, b).numpy()
    timings = common.interleaved(fns, rounds, warmup=1, budget_s=budget_s)
    flops = 2.0 * n**3
    return {k: (flops / t.wall / 1e9, flops / t.cpu / 1e9, t) for k, t in timings.items()}


# -- the throughput grid -----------------------------------------------------------------------
def grid(quick: bool):
    """``[(arch, size, batch, modes)]``, grouped by (arch, size) so that models are reused."""
    if quick:
        return [("mlp", None, 32, ("float32", "xla")), ("tiny", 32, 16, ("float32", "bf16"))]
    three = ("float32", "xla", "bf16")
    cells = []
    for arch, size in (("mlp", None), ("default", 32), ("default", 64)):
        for batch in (32, 64, 128):
            # XLA is 2-3× slower on the conv models: not at batch 128 (the 10-minute budget).
            cells.append((arch, size, batch, three if arch == "mlp" or batch < 128 else ("float32", "bf16")))
    cells.append(("default", 128, 32, ("float32", "bf16")))
    # The paper's widths cost 13× the default's per example: the target's cell only.
    cells.append(("paper", 64, 64, three))
    return cells


def run_grid(cells, rounds, cell_budget, log):
    """Times every cell; returns rows of dicts."""
    rows = []
    groups = {}
    for arch, size, batch, modes in cells:
        groups.setdefault((arch, size), []).append((batch, modes))
    for (arch, size), batches in groups.items():
        needed = sorted({m for _, modes in batches for m in modes}, key=MODES.index)
        models = {mode: build(arch, size, mode) for mode in needed}
        flops = train_flops(models[needed[0]])
        for batch, modes in batches:
            x, y = random_batch(arch, size, batch)
            steps, first = {}, {}
            for mode in modes:
                step = train_step_fn(models[mode], x, y)
                sample = common.time_call(step)  # trace (+ XLA compile) + first step
                first[mode] = sample.wall
                warm = common.time_call(step)
                # Small steps are timed in groups, so that each sample lasts >= ~50 ms.
                group = max(1, min(200, math.ceil(0.05 / max(warm.wall, 1e-4))))
                steps[mode] = (lambda s=step, k=group: [s() for _ in range(k)]), group
            timings = common.interleaved(
                {m: f for m, (f, _) in steps.items()}, rounds=rounds, warmup=0, budget_s=cell_budget, min_rounds=3
            )
            for mode in modes:
                t, group = timings[mode], steps[mode][1]
                wall, cpu = t.wall / group, t.cpu / group
                row = dict(
                    arch=arch,
                    size=size,
                    batch=batch,
                    mode=mode,
                    wall=wall,
                    cpu=cpu,
                    first=first[mode],
                    samples=len(t) * group,
                    flops=flops,
                )
                row["sps"] = batch / wall
                row["sps_cpu"] = batch / cpu
                row["gflops_wall"] = flops * batch / wall / 1e9
                row["gflops_cpu"] = flops * batch / cpu / 1e9
                rows.append(row)
            log(
                f"  {model_name(arch, size)} batch {batch}: "
                + ", ".join(f"{m} {timings[m].wall / steps[m][1] * 1e3:.1f} ms" for m in modes)
                + f"  (load {common.load_average()})"
            )
        del models, steps, timings
        gc.collect()
    return rows


# -- where the time goes -----------------------------------------------------------------------
def breakdown(arch, size, batch, mode, rounds, budget):
    """Interleaved timings of the parts of one train step: {part: Timing}."""
    import tensorflow as tf

    model = build(arch, size, mode)
    x, y = random_batch(arch, size, batch)
    x, y = tf.constant(x), tf.constant(y)
    seed = tf.constant([1, 2])
    jit = mode.endswith("xla")

    @tf.function(jit_compile=jit)
    def forward():
        terms, _, _ = model.loss_terms(x, y, seed, training=True)
        return tf.reduce_mean(terms["loss"])

    @tf.function(jit_compile=jit)
    def forward_backward():
        with tf.GradientTape() as tape:
            terms, _, _ = model.loss_terms(x, y, seed, training=True)
            loss = tf.reduce_mean(terms["loss"])
        grads = tape.gradient(loss, model.elbo_variables)
        return tf.add_n([tf.reduce_sum(g) for g in grads])  # all of every gradient, or grappler prunes

    grads = [tf.random.normal(v.shape, stddev=1e-4) for v in model.elbo_variables]

    # As the train step runs it: one XLA cluster in graph mode (LatentModel.apply_gradients).
    fused = model._fused_update(model.optimizer, model.elbo_variables)

    @tf.function(jit_compile=jit)
    def elbo_update():
        if jit:
            model.optimizer.apply(grads, model.elbo_variables)
        else:
            fused(grads)
        return tf.constant(0.0)

    z = tf.random.normal([batch, model.z_dim])

    @tf.function(jit_compile=jit)
    def adversary_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.adversary_loss(z, y, training=True))
        model.adversary_optimizer.apply(tape.gradient(loss, model.adversary_variables), model.adversary_variables)
        return loss

    step = train_step_fn(model, x.numpy(), y.numpy())
    fns = {
        "forward (loss terms)": lambda: forward().numpy(),
        "forward + backward (ELBO gradients)": lambda: forward_backward().numpy(),
        "ELBO optimiser update (Adam)": lambda: elbo_update().numpy(),
        "adversary step (fwd + bwd + Adam)": lambda: adversary_step().numpy(),
        "whole train step (Keras train function)": step,
    }
    for fn in fns.values():  # trace
        fn()
    result = common.interleaved(fns, rounds, warmup=0, budget_s=budget)
    n_params = sum(int(v.numpy().size) for v in model.elbo_variables)
    return result, n_params, train_flops(model)


# -- retracing ----------------------------------------------------------------------------------
@contextlib.contextmanager
def patched(obj, name, value):
    """``obj.name = value`` within the block (to count the traces of today's train and test steps)."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def retracing(spec, log):
    """Counts traces of ``train_step``/``test_step`` over 3 ``fit`` epochs with a partial
    last batch (and validation data); returns (train traces, test traces, epoch seconds)."""
    import tensorflow as tf

    from keras_csvae.models import base

    counts = {"train": 0, "test": 0}
    train_step, test_step = base.TwoOptimizerModel.train_step, base.TwoOptimizerModel.test_step

    def counting_train(self, data):
        counts["train"] += 1  # Python runs only while tracing
        return train_step(self, data)

    def counting_test(self, data):
        counts["test"] += 1
        return test_step(self, data)

    arch = "tiny" if spec["quick"] else "default"
    model = build(arch, 32, "float32")
    x, y = random_batch(arch, 32, 200)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)  # 64, 64, 64, 8
    val = tf.data.Dataset.from_tensor_slices((x[:100], y[:100])).batch(64)  # 64, 36
    seconds = []
    with (
        patched(base.TwoOptimizerModel, "train_step", counting_train),
        patched(base.TwoOptimizerModel, "test_step", counting_test),
    ):
        for epoch in range(3):
            start = time.perf_counter()
            model.fit(train, validation_data=val, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
            seconds.append(time.perf_counter() - start)
    return [counts["train"], counts["test"], seconds, model_name(arch, 32)]


# -- float32 vs bfloat16 losses ----------------------------------------------------------------------
def loss_check(spec, log):
    """Trains the default 32 px model on synthetic faces in float32 and
    mixed_bfloat16 from the same initial weights and data order, two seeds each.

    Returns rows (precision, seed, final loss terms) and the term names."""
    import numpy as np
    import tensorflow as tf

    from keras_csvae.data import registry

    quick = spec["quick"]
    arch, size = ("tiny", 32) if quick else ("default", 32)
    steps = 6 if quick else spec["loss_steps"]
    last = 2 if quick else 10
    x, y = registry.load_arrays("synthetic_faces", "train", image_size=size, num_examples=512 if quick else 2048)
    names = ("loss", "reconstruction_mse", "kl_w", "kl_z", "adversary_loss")
    results = []
    for seed in (0,) if quick else (0, 1):
        for mode in ("float32", "bf16"):
            model = build(arch, size, mode, seed=seed)
            data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).repeat().batch(64)
            iterator = iter(data)
            model.make_train_function()
            history = []
            start = time.perf_counter()
            for _ in range(steps):
                model.reset_metrics()  # logs of this step only
                logs = model.train_function(iterator)
                history.append({k: float(logs[k]) for k in names})
            elapsed = time.perf_counter() - start
            final = {k: float(np.mean([h[k] for h in history[-last:]])) for k in names}
            results.append((mode, seed, final, elapsed))
            log(f"  {mode} seed {seed}: loss {final['loss']:.1f} ({elapsed:.0f} s)")
            del model
            gc.collect()
    return [results, names, steps, last, f"{model_name(arch, size)} (synthetic_faces {size} px)"]


def breakdown_part(spec, log):
    parts, n_params, flops = breakdown(
        spec["arch"], spec["size"], spec["batch"], spec["mode"], spec["rounds"], spec["budget"]
    )
    log(f"  breakdown {spec['mode']}: " + ", ".join(f"{k.split(' (')[0]} {v.cpu * 1e3:.0f}" for k, v in parts.items()))
    return {"parts": {k: common.timing_to_json(v) for k, v in parts.items()}, "n_params": n_params, "flops": flops}


def grid_part(spec, log):
    return run_grid(spec["cells"], spec["rounds"], spec["cell_budget"], log)


PARTS = {"grid": grid_part, "breakdown": breakdown_part, "retracing": retracing, "losses": loss_check}
RESULT_PREFIX = "BENCH_PART_RESULT "


def run_part(name, spec, isolate, log):
    """Runs part ``name`` in this process, or (``isolate``) in a fresh one: TensorFlow
    does not give back the memory of deleted models, so the full run keeps each
    big model in its own process. Returns the part's JSON-able result."""
    import json
    import os
    import subprocess

    if not isolate:
        return json.loads(json.dumps(PARTS[name](spec, log)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--spec", json.dumps(spec)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    result = None
    for line in process.stdout:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
        elif line.startswith("  "):
            log(line.rstrip())
    stderr = process.stderr.read()
    if process.wait() != 0 or result is None:
        raise RuntimeError(f"part {name} failed ({process.returncode}):\n{stderr[-4000:]}")
    return result


# -- main -----------------------------------------------------------------------------------------
def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed interleaved rounds per cell (default 6; quick 3)"
    )
    parser.add_argument(
        "--cell-budget",
        type=float,
        default=None,
        help="seconds of timed rounds per cell before stopping early (default 6; quick 1)",
    )
    parser.add_argument("--loss-steps", type=int, default=48, help="steps of the float32/bfloat16 loss check")
    parser.add_argument(
        "--skip",
        default=None,
        help="comma-separated parts to skip: grid,breakdown,losses,profiler,retracing "
        "(quick default: nothing, with smaller parts)",
    )
    parser.add_argument("--models", default="", help="only these grid models, e.g. paper64,default32,mlp")
    parser.add_argument("--batches", default="", help="only these grid batch sizes, e.g. 64")
    parser.add_argument(
        "--no-isolate",
        action="store_true",
        help="run every part in this process (default: full mode runs each big model in its own "
        "process, because TensorFlow keeps the memory of deleted models)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import json

        result = PARTS[args.child](json.loads(args.spec), lambda msg: print(msg, flush=True))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    isolate = not (args.quick or args.no_isolate)
    args.rounds = args.rounds or (3 if args.quick else 6)
    args.cell_budget = args.cell_budget if args.cell_budget is not None else (1.0 if args.quick else 6.0)
    skip = set(filter(None, (args.skip or "").split(",")))

    report = common.Report("Training throughput (`bench/bench_train.py`)", argv, quick=args.quick)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or "auto"
    log(f"TensorFlow {tf.__version__}, intra-op threads {threads}")
    n = 1024 if args.quick else 2048
    peak_start = matmul_peak(n, rounds=3 if args.quick else 8, budget_s=2 if args.quick else 8)
    log(
        "matmul peak: " + ", ".join(f"{k} {v[0]:.0f} GFLOP/s wall, {v[1]:.0f} per CPU-s" for k, v in peak_start.items())
    )

    rows = []
    if "grid" not in skip:
        cells = [
            c
            for c in grid(args.quick)
            if (not args.models or f"{c[0]}{c[1] or ''}" in args.models.split(","))
            and (not args.batches or str(c[2]) in args.batches.split(","))
        ]
        groups = {}
        for cell in cells:
            groups.setdefault((cell[0], cell[1]), []).append(cell)
        for group in groups.values():
            rows += run_part(
                "grid", {"cells": group, "rounds": args.rounds, "cell_budget": args.cell_budget}, isolate, log
            )

    # Matmul again at the end: the peak is the median over both.
    peak_end = matmul_peak(n, rounds=3 if args.quick else 8, budget_s=2 if args.quick else 8)
    peak = {}
    for k in peak_start:
        samples = peak_start[k][2].samples + peak_end[k][2].samples
        t = common.Timing(samples)
        peak[k] = (2.0 * n**3 / t.wall / 1e9, 2.0 * n**3 / t.cpu / 1e9)
    for row in rows:  # re-base on the pooled peak
        row["peak_fraction"] = row["gflops_cpu"] / peak["bfloat16" if row["mode"].startswith("bf16") else "float32"][1]
        row["peak_fraction_fp32"] = row["gflops_cpu"] / peak["float32"][1]
        row["peak_fraction_wall"] = row["gflops_wall"] / peak["float32"][0]

    report.heading("Matmul peak (same run, start and end pooled)")
    report.table(
        ["dtype", f"[{n}×{n}]·[{n}×{n}] GFLOP/s (wall)", "GFLOP per CPU-second", "start / end (per CPU-s)"],
        [(k, peak[k][0], peak[k][1], f"{peak_start[k][1]:.0f} / {peak_end[k][1]:.0f}") for k in peak],
        note="GFLOP per CPU-second is the rate of this process's threads while they run: "
        "with the two cores shared it is the stable measure (wall rates depend on the other jobs). "
        "On an idle machine wall ≈ CPU-rate × 2 cores.",
    )

    if rows:
        report.heading("Train step throughput (both optimisers; interleaved across modes, medians)")
        table = []
        for r in rows:
            table.append(
                (
                    model_name(r["arch"], r["size"]),
                    r["batch"],
                    MODE_LABEL[r["mode"]],
                    r["wall"] * 1e3,
                    r["sps"],
                    r["cpu"] * 1e3,
                    r["sps_cpu"],
                    r["flops"] / 1e9,
                    r["gflops_cpu"],
                    f"{100 * r['peak_fraction_fp32']:.0f} %",
                    f"{100 * r['peak_fraction']:.0f} %",
                    r["first"],
                    r["samples"],
                )
            )
        report.table(
            [
                "model",
                "batch",
                "mode",
                "ms/step (wall)",
                "samples/s (wall)",
                "CPU-ms/step",
                "samples per CPU-s",
                "GFLOP/example",
                "GFLOP per CPU-s",
                "of fp32 peak",
                "of own-dtype peak",
                "first step s",
                "timed steps",
            ],
            table,
            note="GFLOP/example: one train step (both optimisers) per example, counted from the layers. "
            "'of fp32 peak' = achieved GFLOP per CPU-second ÷ the float32 matmul's (bfloat16 rows "
            "can exceed 100 %: AMX); 'of own-dtype peak' uses the bfloat16 matmul for bfloat16 rows. "
            "'first step': trace + compile + first run (wall); ~0 when an earlier batch size's "
            "batch-generic trace is reused.",
        )
        report.heading("Speed-ups within the run (same model and batch; interleaved)")
        speed = []
        by_key = {(r["arch"], r["size"], r["batch"], r["mode"]): r for r in rows}
        others = [m for m in MODES[1:] if any(r["mode"] == m for r in rows)]
        for (arch, size, batch, mode), r in by_key.items():
            if mode != "float32":
                continue
            cells = {m: by_key.get((arch, size, batch, m)) for m in others}
            speed.append(
                (
                    model_name(arch, size),
                    batch,
                    *[
                        (f"{c['sps'] / r['sps']:.2f}× / {c['sps_cpu'] / r['sps_cpu']:.2f}×" if c else "–")
                        for c in cells.values()
                    ],
                )
            )
        report.table(
            ["model", "batch", *[f"{MODE_LABEL[m]} ÷ float32 graph" for m in others]],
            speed,
            note="Each cell: samples/s ratio on wall time / on CPU time.",
        )
        _scaling_tables(report, rows)

    flops_check = None
    if "profiler" not in skip:
        arch, size, batch = ("tiny", 32, 16) if args.quick else ("paper", 64, 64)
        model = build(arch, size, "float32")
        x, y = random_batch(arch, size, batch)
        flops_check = (
            model_name(arch, size),
            batch,
            train_flops(model) / 1e9,
            profiler_flops(model, x, y) / 1e9,
            forward_flops(model) / 1e9,
        )
        del model
        report.heading("FLOP count check")
        report.table(
            [
                "model",
                "batch",
                "train GFLOP/example (layers)",
                "train GFLOP/example (tf profiler)",
                "forward GFLOP/example",
            ],
            [flops_check],
            note="The profiler counts every op of the traced step (element-wise ops included); "
            "the layer count takes convolutions and matmuls only.",
        )

    parts = None
    if "breakdown" not in skip:
        arch, size, batch = ("tiny", 32, 16) if args.quick else ("paper", 64, 64)
        parts = {}
        for mode in ("float32",) if args.quick else ("float32", "bf16", "xla"):
            result = run_part(
                "breakdown",
                dict(arch=arch, size=size, batch=batch, mode=mode, rounds=args.rounds, budget=args.cell_budget),
                isolate,
                log,
            )
            parts[mode] = {k: common.timing_from_json(v) for k, v in result["parts"].items()}
            n_params, flops = result["n_params"], result["flops"]
        report.heading(
            f"Where the time goes: {model_name(arch, size)}, batch {batch} ({n_params / 1e6:.1f} M ELBO weights)"
        )
        table = []
        for part in next(iter(parts.values())):
            cells = []
            for p in parts.values():
                whole = p["whole train step (Keras train function)"].cpu
                cells += [p[part].cpu * 1e3, f"{100 * p[part].cpu / whole:.0f} %"]
            table.append((part, *cells))
        ideal = flops * batch / peak["float32"][1] / 1e9 * 1e3
        headers = ["part"] + [h for mode in parts for h in (f"{MODE_LABEL[mode]} CPU-ms", "of step")]
        report.table(
            headers,
            table,
            note=f"Parts timed separately (interleaved); they overlap (forward + backward includes the "
            f"forward). At the float32 matmul rate the step's convolutions and matmuls would take "
            f"{ideal:.0f} CPU-ms.",
        )

    if "retracing" not in skip:
        train_traces, test_traces, seconds, label = run_part("retracing", {"quick": args.quick}, isolate, log)
        report.heading("Retracing check")
        report.table(
            ["model", "train_step traces", "test_step traces", "epoch 1 s", "epoch 2 s", "epoch 3 s"],
            [(label, train_traces, test_traces, *seconds)],
            note="3 `fit` epochs of 200 examples in batches of 64 (last batch 8) with validation data "
            "(last batch 36): one trace each means no retracing (the dataset's batch dim is None).",
        )

    losses_result = None
    if "losses" not in skip:
        losses_result = run_part("losses", {"quick": args.quick, "loss_steps": args.loss_steps}, isolate, log)
        results, names, steps, last, label = losses_result
        report.heading(f"float32 vs mixed_bfloat16: final losses ({label}, {steps} steps, batch 64)")
        report.table(
            ["precision", "seed", *[f"{k} (mean of last {last} steps)" for k in names], "s"],
            [(MODE_LABEL[m], s, *[f[k] for k in names], e) for m, s, f, e in results],
        )

    _targets(report, rows, peak, parts, losses_result)
    report.finish(args.output)


def _scaling_tables(report, rows):
    by = {(r["arch"], r["size"], r["batch"], r["mode"]): r for r in rows}
    sizes = sorted({r["size"] for r in rows if r["size"]})
    lines = []
    for arch in ("default", "paper", "tiny"):
        for mode in ("float32", "bf16"):
            for batch in (16, 32):
                cells = [by.get((arch, s, batch, mode)) for s in sizes]
                if sum(c is not None for c in cells) >= 2:
                    base = next(c for c in cells if c)
                    lines.append(
                        (
                            f"conv {arch}",
                            batch,
                            MODE_LABEL[mode],
                            *[
                                f"{c['wall'] * 1e3:,.0f} ms ({c['cpu'] / base['cpu']:.1f}×)" if c else "–"
                                for c in cells
                            ],
                        )
                    )
    if lines:
        report.heading("Step time vs image size")
        report.table(
            ["model", "batch", "mode", *[f"{s}×{s}" for s in sizes]],
            lines,
            note="Wall ms/step (CPU time relative to the smallest size). FLOPs grow 4× per doubling of "
            "the side, except the dense layers' share.",
        )
    lines = []
    batches = sorted({r["batch"] for r in rows})
    for arch, size in sorted({(r["arch"], r["size"]) for r in rows}, key=lambda k: (k[0], k[1] or 0)):
        cells = [by.get((arch, size, b, "float32")) for b in batches]
        if sum(c is not None for c in cells) >= 2:
            lines.append(
                (
                    model_name(arch, size),
                    *[
                        f"{c['wall'] * 1e3:,.1f} ms · {c['sps']:,.0f}/s · {c['sps_cpu']:,.0f}/CPU-s" if c else "–"
                        for c in cells
                    ],
                )
            )
    if lines:
        report.heading("Step time vs batch size (float32 graph)")
        report.table(
            ["model", *[f"batch {b}" for b in batches]],
            lines,
            note="Each cell: wall ms/step · samples/s (wall) · samples per CPU-second.",
        )


def _targets(report, rows, peak, parts, losses_result):
    by = {(r["arch"], r["size"], r["batch"], r["mode"]): r for r in rows}
    key = ("paper", 64, 64)
    if not any(k[:3] == key for k in by):  # quick mode: the tiny model stands in
        key = ("tiny", 32, 16)
    label = f"{model_name(key[0], key[1])}, batch {key[2]}"
    fp32 = by.get((*key, "float32"))
    if fp32:
        report.target(
            f"train step ≥ 55 % of fp32 matmul peak ({label}, float32)",
            f"{100 * fp32['peak_fraction_fp32']:.0f} % per CPU-s ({fp32['gflops_cpu']:.0f} of "
            f"{peak['float32'][1]:.0f} GFLOP/CPU-s); wall {100 * fp32['peak_fraction_wall']:.0f} %",
            "≥ 55 %",
            fp32["peak_fraction_fp32"] >= 0.55,
            "CPU-time basis (wall basis shares the cores with other jobs, see load)",
        )
    bf16 = by.get((*key, "bf16"))
    if fp32 and bf16:
        ratio_cpu, ratio_wall = bf16["sps_cpu"] / fp32["sps_cpu"], bf16["sps"] / fp32["sps"]
        same = None
        if losses_result:
            results = losses_result[0]
            final = {(m, s): f["loss"] for m, s, f, _ in results}
            seeds = sorted({s for _, s in final})
            gap = max(abs(final[("bf16", s)] - final[("float32", s)]) for s in seeds)
            same = f"final loss gap bf16 − fp32 {gap:.1f}"
            if len(seeds) > 1:
                same += f" vs seed-to-seed (fp32) {abs(final[('float32', 0)] - final[('float32', 1)]):.1f}"
        report.target(
            f"mixed_bfloat16 ≥ 1.5× float32 samples/s ({label})",
            f"{ratio_cpu:.2f}× (CPU), {ratio_wall:.2f}× (wall)",
            "≥ 1.5×, same losses",
            ratio_cpu >= 1.5,
            same or "",
        )
    xla = by.get((*key, "xla"))
    if fp32 and not xla:  # quick mode: XLA runs on the MLP only
        key = ("mlp", None, 32)
        label = f"{model_name(*key[:2])}, batch {key[2]}"
        fp32, xla = by.get((*key, "float32")), by.get((*key, "xla"))
    if fp32 and xla:
        report.target(
            f"XLA ≥ 1.2× plain graph ({label})",
            f"{xla['sps_cpu'] / fp32['sps_cpu']:.2f}× (CPU), {xla['sps'] / fp32['sps']:.2f}× (wall)",
            "≥ 1.2×",
            xla["sps_cpu"] / fp32["sps_cpu"] >= 1.2,
            "see the breakdown: where XLA gains and loses",
        )


if __name__ == "__main__":
    main()
