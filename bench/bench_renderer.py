"""Throughput of the ``synthetic_faces`` renderer and of its tf.data pipeline.

Runs on ONE core: the process is pinned to a single CPU and every thread pool
(BLAS, OpenMP, TensorFlow) is limited to one thread, so the numbers measure
the code, not the machine's width. Prints a Markdown table.

    python bench/bench_renderer.py            # ~40 s
    python bench/bench_renderer.py --quick    # ~10 s (mostly importing TF)
"""

from __future__ import annotations

import os

# Before numpy / TensorFlow start their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

SIZES = (32, 64)
TARGET_64PX = 2000  # images/s on one core


def pin_to_one_core() -> str:
    """Pins this process to its lowest allowed CPU; returns a description."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def median_rate(work, count: int, repeats: int) -> float:
    """Median of ``count / CPU seconds`` over ``repeats`` calls of ``work``.

    CPU time of this (pinned) process rather than wall time: on a shared
    machine other processes' time slices would otherwise count as ours.
    """
    rates = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        rates.append(count / (time.process_time() - start))
    return statistics.median(rates)


def bench_renderer(size: int, n: int, repeats: int) -> dict[str, float]:
    from keras_csvae.data.synthetic_faces import SyntheticFaces

    renderer = SyntheticFaces(size)
    factors = renderer.sample_factors(n, seed=0)
    renderer.render(renderer.sample_factors(64, seed=1))  # warm-up
    return {
        "render": median_rate(lambda: renderer.render(factors), n, repeats),
        "sample": median_rate(lambda: renderer.sample(n, seed=2), n, repeats),
        "masks": median_rate(lambda: renderer.render(factors, return_masks=True), n, repeats),
    }


def bench_tf_data(size: int, n: int, batch_size: int) -> dict[str, float]:
    """images/s of ``load("synthetic_faces", ...).batch(...)``: the first pass
    renders, the second reads the kept chunks."""
    import tensorflow as tf

    from keras_csvae import data

    dataset = data.load("synthetic_faces", split="train", image_size=size, num_examples=n).batch(batch_size).prefetch(2)
    rates = {}
    for name in ("tf.data first pass", "tf.data second pass"):
        start = time.process_time()  # all threads, all on the one core
        seen = 0
        for images, _ in dataset:
            seen += int(tf.shape(images)[0])
        rates[name] = seen / (time.process_time() - start)
        assert seen == n, (seen, n)
    return rates


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run (small n, 3 repeats)")
    parser.add_argument("--n", type=int, default=None, help="faces per timed renderer call (default 2048; quick 128)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 7; quick 3)")
    parser.add_argument(
        "--tf-examples", type=int, default=None, help="examples through tf.data (default 8192; quick 256)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    n = args.n or (128 if args.quick else 2048)
    repeats = args.repeats or (3 if args.quick else 7)
    tf_examples = args.tf_examples or (256 if args.quick else 8192)

    pinning = pin_to_one_core()
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    results = {size: bench_renderer(size, n, repeats) for size in SIZES}
    for size in SIZES:
        results[size].update(bench_tf_data(size, tf_examples, args.batch_size))

    rows = [
        ("renderer: `render(factors)`", "render"),
        ("renderer: `sample(n, seed)` (factors + render)", "sample"),
        ("renderer: `render(..., return_masks=True)`", "masks"),
        (f"tf.data `load(...).batch({args.batch_size})`, first pass (renders)", "tf.data first pass"),
        (f"tf.data `load(...).batch({args.batch_size})`, second pass (kept)", "tf.data second pass"),
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nsynthetic_faces throughput, images per CPU second, one core "
        f"({pinning}; load average {load}); numpy {np.__version__}, tensorflow "
        f"{tf.__version__}; renderer: median of {repeats} calls x {n} faces; "
        f"tf.data: {tf_examples} examples\n"
    )
    print("| measurement | 32 px | 64 px |")
    print("|---|---:|---:|")
    for label, key in rows:
        print(f"| {label} | {results[32][key]:,.0f} | {results[64][key]:,.0f} |")
    verdict = "meets" if results[64]["render"] >= TARGET_64PX else "MISSES"
    print(f"\n64 px renderer {verdict} the target of {TARGET_64PX:,} images/s on one core.")


if __name__ == "__main__":
    main()
