"""Memory: peak RSS of a training process and of an onnxruntime-only edge process.

Each measurement runs in a fresh subprocess (this script with ``--child``),
so that nothing else sits in its memory. The child reports its peak RSS
(``resource.getrusage``'s ``ru_maxrss``) after each phase; the parent samples
the child's RSS with psutil every 20 ms as a cross-check.

- training: the 64×64 paper-architecture CSVAE at batch 64 (``fit`` on a
  repeated in-memory batch), float32 and mixed_bfloat16, and the default
  (CPU-sized) widths; the default widths fed by the real
  ``training.train.dataset_for`` pipeline;
- the ``dataset_for`` pipeline alone (its shuffle buffer holds uint8
  images), and the pipeline before that change (float32 shuffle buffer);
- the edge editor (``serving.edge.Editor``: onnxruntime, numpy, Pillow;
  no TensorFlow) editing PNGs with an exported model.

    python bench/bench_memory.py            # full, ~100 s (2 cores, light load)
    python bench/bench_memory.py --quick    # CI smoke run (tiny models)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402

RESULT_PREFIX = "BENCH_MEMORY_RESULT "


# -- children ---------------------------------------------------------------------------------------
def _rss_mb():
    import psutil

    return psutil.Process().memory_info().rss / 1024**2


def child_train(spec: dict) -> dict:
    """Trains ``spec`` for a few steps; returns peak RSS (MB) after each phase."""
    common.quiet_tensorflow()
    phases = {}
    start = time.perf_counter()
    import bench_train
    import numpy as np
    import tensorflow as tf

    import keras_csvae.models  # noqa: F401  (TensorFlow Probability and Keras come with it)

    phases["import TensorFlow + keras_csvae"] = common.peak_rss_mb()
    arch, size, batch, mode = spec["arch"], spec["size"], spec["batch"], spec["mode"]
    model = bench_train.build(arch, size, mode)
    n_params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    phases["model built + compiled (weights + Adam slots)"] = common.peak_rss_mb()
    if spec.get("pipeline"):
        from keras_csvae.training.train import dataset_for

        config = common.faces_config(size, spec["pipeline"], batch)
        dataset = dataset_for(config, model, "train", shuffle=True).repeat()
    else:
        x, y = bench_train.random_batch(arch, size, batch)
        dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
    phases["first step (trace + run)"] = common.peak_rss_mb()
    model.fit(dataset, steps_per_epoch=spec["steps"], epochs=1, verbose=0)
    phases[f"after {spec['steps']} more steps"] = common.peak_rss_mb()
    return {"phases": phases, "params": n_params, "rss_end": _rss_mb(), "seconds": time.perf_counter() - start}


def child_pipeline(spec: dict) -> dict:
    """Iterates ``dataset_for`` (or the float32 pipeline it replaced) over ``spec['n']`` faces."""
    common.quiet_tensorflow()
    import types

    from keras_csvae.training.train import dataset_for

    phases = {"import TensorFlow + keras_csvae": common.peak_rss_mb()}
    size, n, batch = spec["size"], spec["n"], spec["batch"]
    if spec["variant"] == "dataset_for":
        model = types.SimpleNamespace(check_static_shapes=lambda x, y: None)
        dataset = dataset_for(common.faces_config(size, n, batch), model, "train", shuffle=True)
    else:
        import bench_pipeline

        dataset = bench_pipeline.faces_variants(size, n, batch)[
            "before: float32 per image, shuffled and batched as float32"
        ]()
    iterator = iter(dataset)
    next(iterator)
    phases["first batch (shuffle buffer full)"] = common.peak_rss_mb()
    for _ in iterator:
        pass
    phases["one pass"] = common.peak_rss_mb()
    return {"phases": phases, "rss_end": _rss_mb()}


def child_edge(spec: dict) -> dict:
    """Edits PNGs with the edge editor only; reports memory, cold start and imports."""
    phases = {}
    start = time.perf_counter()
    from serving import edge

    phases["import serving.edge"] = common.peak_rss_mb()
    editor = edge.Editor(spec["export_dir"], threads=1)
    png = Path(spec["png"]).read_bytes()
    first = time.perf_counter()
    out = editor.edit(png, {"glasses": 1})
    first = time.perf_counter() - first
    phases["first edit (session created)"] = common.peak_rss_mb()
    for _ in range(spec["edits"]):
        out = editor.edit(png, {"glasses": 1})
    phases[f"after {spec['edits']} more edits"] = common.peak_rss_mb()
    heavy = sorted(m for m in ("tensorflow", "keras", "tensorflow_probability", "tf2onnx") if m in sys.modules)
    return {
        "phases": phases,
        "rss_end": _rss_mb(),
        "cold_start_s": time.perf_counter() - start,
        "first_edit_s": first,
        "png_out_bytes": len(out),
        "heavy_modules": heavy,
    }


CHILDREN = {"train": child_train, "pipeline": child_pipeline, "edge": child_edge}


# -- parent -----------------------------------------------------------------------------------------
def run_child(kind: str, spec: dict, timeout: float = 900) -> dict:
    """Runs a child; returns its result plus the parent's psutil peak of its RSS."""
    import psutil

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--spec", json.dumps(spec)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watcher = psutil.Process(process.pid)
    sampled = 0.0
    while process.poll() is None:
        try:
            sampled = max(sampled, watcher.memory_info().rss / 1024**2)
        except psutil.Error:
            break
        time.sleep(0.02)
        if time.perf_counter() - start > timeout:
            process.kill()
            raise RuntimeError(f"{kind} child timed out")
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({process.returncode}):\n{stderr[-3000:]}")
    line = next(text for text in stdout.splitlines() if text.startswith(RESULT_PREFIX))
    result = json.loads(line[len(RESULT_PREFIX) :])
    result["sampled_peak"] = sampled
    result["wall_s"] = time.perf_counter() - start
    return result


def make_export(out: Path, quick: bool) -> tuple[Path, Path, str]:
    """Exports the synthetic_faces model (ONNX only, as ``bench_inference``) and writes one face as PNG."""
    common.quiet_tensorflow()
    import bench_inference

    from serving.runtime.images import encode_png

    model, size = bench_inference.build_model(quick)
    _, _, x, _ = bench_inference.export(model, size, out, quick, savedmodel_format=False, int8=False)
    png = out.parent / "face.png"
    png.write_bytes(encode_png(x[0]))
    return out, png, f"synthetic_faces {size}×{size} ({'tiny' if quick else 'default'} widths)"


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse_hidden())
    parser.add_argument("--spec", help=argparse_hidden())
    parser.add_argument("--steps", type=int, default=None, help="training steps after the first (default 5; quick 2)")
    parser.add_argument(
        "--faces",
        type=int,
        default=10_000,
        help="faces in the pipeline runs (default 10000: dataset_for's full shuffle buffer)",
    )
    args = parser.parse_args(argv)
    if args.child:
        result = CHILDREN[args.child](json.loads(args.spec))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return

    quick = args.quick
    steps = args.steps or (2 if quick else 5)
    report = common.Report("Memory (`bench/bench_memory.py`)", argv, quick=quick)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    if quick:
        train_specs = [dict(arch="tiny", size=32, batch=16, mode="float32", steps=steps)]
        pipeline_specs = [dict(variant="dataset_for", size=32, n=256, batch=32)]
    else:
        train_specs = [
            dict(arch="paper", size=64, batch=64, mode="float32", steps=steps),
            dict(arch="paper", size=64, batch=64, mode="bf16", steps=steps),
            dict(arch="default", size=64, batch=64, mode="float32", steps=steps),
            dict(arch="default", size=64, batch=64, mode="float32", steps=steps, pipeline=args.faces),
        ]
        pipeline_specs = [
            dict(variant=v, size=64, n=args.faces, batch=64) for v in ("dataset_for", "before (float32 buffer)")
        ]

    train_rows = []
    for spec in train_specs:
        result = run_child("train", spec)
        train_rows.append((spec, result))
        log(f"train {spec}: peak {max(result['phases'].values()):.0f} MB")
    pipeline_rows = []
    for spec in pipeline_specs:
        result = run_child("pipeline", spec)
        pipeline_rows.append((spec, result))
        log(f"pipeline {spec}: peak {max(result['phases'].values()):.0f} MB")
    with tempfile.TemporaryDirectory(prefix="csvae-bench-") as tmp:
        export_dir, png, label = _export_in_child(Path(tmp), quick)
        edge_result = run_child("edge", dict(export_dir=str(export_dir), png=str(png), edits=20 if quick else 200))
    log(f"edge: peak {max(edge_result['phases'].values()):.0f} MB")

    report.heading("Training processes: peak RSS (MB) after each phase")
    for spec, result in train_rows:
        name = f"{spec['arch']} widths {spec['size']}×{spec['size']}, batch {spec['batch']}, {spec['mode']}" + (
            f", `dataset_for` pipeline ({spec['pipeline']} faces)" if spec.get("pipeline") else ", in-memory batch"
        )
        params = result["params"]
        report.text(
            f"**{name}**: {params / 1e6:.1f} M weights (float32 weights + 2 Adam slots = "
            f"{params * 12 / 1024**2:.0f} MB); psutil-sampled peak {result['sampled_peak']:.0f} MB; "
            f"{result['wall_s']:.0f} s."
        )
        report.table(["phase", "peak RSS MB"], list(result["phases"].items()))
    report.heading("The `dataset_for` pipeline alone (synthetic_faces): peak RSS (MB)")
    names = list(pipeline_rows[0][1]["phases"])
    report.table(
        ["variant", *names, "psutil peak"],
        [
            (
                f"{s['variant']} ({s['n']} faces, {s['size']} px, batch {s['batch']})",
                *[r["phases"][k] for k in names],
                r["sampled_peak"],
            )
            for s, r in pipeline_rows
        ],
        note="`dataset_for` shuffles the uint8 images (64×64×3 B = 12 KB each) and converts a batch at "
        "a time; before, it shuffled float32 images (48 KB each: a 10 000-element buffer is 470 MB).",
    )
    report.heading(f"Edge process (onnxruntime only): {label}")
    report.table(
        ["phase", "peak RSS MB"],
        list(edge_result["phases"].items()),
        note=f"psutil-sampled peak {edge_result['sampled_peak']:.0f} MB; process start to last edit "
        f"{edge_result['cold_start_s']:.2f} s (first edit {edge_result['first_edit_s'] * 1e3:.0f} ms, "
        f"session creation included); heavy modules imported: "
        f"{', '.join(edge_result['heavy_modules']) or 'none (no TensorFlow/Keras)'}.",
    )
    report.finish(args.output)


def _export_in_child(tmp: Path, quick: bool):
    """The export runs in its own process, so this parent never imports TensorFlow."""
    here, out = str(Path(__file__).resolve().parent), str(tmp / "export")
    code = (
        f"import sys, json; from pathlib import Path; sys.path.insert(0, {here!r}); import bench_memory; "
        f"d, p, l = bench_memory.make_export(Path({out!r}), {quick!r}); print(json.dumps([str(d), str(p), l]))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"export failed:\n{done.stderr[-3000:]}")
    d, p, label = json.loads(done.stdout.strip().splitlines()[-1])
    return Path(d), Path(p), label


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
