"""Inference: edits/s and p50/p99 latency of ``manipulate`` on every path a model is served by.

The model is the ``synthetic_faces`` 64×64 CSVAE at its default (CPU-sized)
widths, untrained (latency does not depend on the weights), exported with
``export.pipeline.export_model`` into a temporary directory. At batch 1, 16
and 256:

- Keras: ``model.manipulate`` (the numpy editing API: one cached graph per
  network call, ``LatentModel.graph_function``), the same as before that
  change (the layers run eagerly; the old code patched back in), and the raw
  ``tf.function`` of the exported ``manipulate``;
- SavedModel through ``tf.saved_model.load`` (its ``manipulate`` signature);
- onnxruntime: default session options, then 1 and 2 intra-op threads with
  spinning off (``serving.runtime.sessions.onnx_session``), and the int8 model the
  export writes when it passes its quality gate;
- for comparison, onnxruntime on the previous ONNX export of ``manipulate``
  (plain tf2onnx: ``ConvTranspose``, ``onnx_export.convert(subpixel=False)``);
- the edge editor, PNG in → PNG out (``serving.edge.Editor``), and its parts.

Variants are timed in interleaved blocks of consecutive calls (so that one
variant's spinning threads do not land in another's samples).

Targets: onnxruntime batch 1 ≥ 3× faster than the SavedModel (judged on the
float32 model, and reported for the int8 one); edge editor 64×64 PNG→PNG < 10 ms.

    python bench/bench_inference.py            # full, ~70 s (2 cores, light load)
    python bench/bench_inference.py --quick    # CI smoke run (tiny 32 px model)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

common.quiet_tensorflow()

import contextlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

LABELS = ("glasses", "smile", "facial_hair")
PLAIN_ONNX = "manipulate.plain.onnx"  # written next to the export's files by this script only


def build_model(quick):
    import keras

    from keras_csvae import CSVAE
    from keras_csvae.training.presets import preset

    keras.utils.set_random_seed(0)
    size = 32 if quick else 64
    kwargs = common.TINY if quick else dict(preset("synthetic_faces").model)
    return CSVAE(data_shape=(size, size, 3), num_labels=3, label_names=LABELS, **kwargs), size


def export(model, size, out: Path, quick, log=lambda line: None, savedmodel_format=True, int8=True):
    """Full mode: ``export.pipeline.export_model`` (SavedModel + ONNX + int8).
    Quick mode: the same building blocks for ``manipulate`` only (one ONNX
    conversion instead of four, one SavedModel signature instead of eight).

    Returns (metadata, SavedModel version dir, x, y) with ``x, y`` real faces.
    """
    from export import metadata, onnx_export, quantize, savedmodel
    from export.pipeline import export_model
    from export.signatures import model_functions
    from keras_csvae.data import registry
    from keras_csvae.io import write_json

    x, y = registry.load_arrays("synthetic_faces", "train", image_size=size, num_examples=96 if quick else 256)
    data = ((x[:64], y[:64]), (x[64:], y[64:]))
    start = time.perf_counter()
    saved_model_path = out / "savedmodel" / "csvae" / "1"
    if not quick:
        formats = ("savedmodel", "onnx") if savedmodel_format else ("onnx",)
        content = export_model(
            model, out, data=lambda: data, formats=formats, verify_export=False, int8=int8, log=lambda line: None
        )
    else:
        function = model_functions(model)["manipulate"]
        description = metadata.model_description(model)
        onnx_path = out / "onnx" / "manipulate.onnx"
        onnx_path.parent.mkdir(parents=True)
        onnx_export.convert(function, onnx_path, metadata.onnx_metadata_props(description, None))
        content = {
            "model": description,
            "onnx": {"manipulate": {"file": "onnx/manipulate.onnx", **function.describe()}},
        }
        if int8:
            content["int8"] = quantize.quantize_manipulate(
                model, function, onnx_path, onnx_path.parent / quantize.INT8_FILE, *data, log=lambda line: None
            )
        write_json(out / "metadata.json", content)
        if savedmodel_format:
            savedmodel.write_savedmodel(model, {"manipulate": function}, saved_model_path)
    # The previous conversion (ConvTranspose, no sub-pixel rewrite), for the before/after rows.
    onnx_export.convert(model_functions(model)["manipulate"], out / "onnx" / PLAIN_ONNX, {}, subpixel=False)
    log(f"exported in {time.perf_counter() - start:.0f} s")
    return content, saved_model_path, x, y


def manipulate_flops(model) -> float:
    """Forward FLOPs per example of ``manipulate``: ``z_encoder`` + decoder."""
    import bench_train

    return sum(bench_train.layer_flops(layer) for sub in (model.z_encoder, model.decoder) for layer in sub.layers)


# -- the numpy API before the change ------------------------------------------------------------
@contextlib.contextmanager
def eager_numpy_api():
    """The numpy editing API as before ``LatentModel.graph_function``: every
    network call runs the Keras layers eagerly."""
    from keras_csvae.models import base

    old = base.LatentModel.graph_function
    base.LatentModel.graph_function = lambda self, method: method
    try:
        yield
    finally:
        base.LatentModel.graph_function = old


# -- variants ---------------------------------------------------------------------------------------
def variants(model, content, export_dir: Path, saved_model_path: Path, x, y):
    """name -> (batch -> (() -> outputs)). Every variant computes the per-label edit
    ``manipulate(x[:b], y[:b], 1 - y[:b])`` (every label switched)."""
    import onnxruntime as ort
    import tensorflow as tf

    from export.signatures import model_functions
    from serving.runtime.sessions import onnx_session

    function = model_functions(model)["manipulate"]
    raw = tf.function(function.fn, input_signature=list(function.input_specs))
    loaded = tf.saved_model.load(str(saved_model_path))
    signature = loaded.signatures["manipulate"]
    onnx_dir = export_dir / "onnx"
    sessions = {
        "onnxruntime, default session options": ort.InferenceSession(
            str(onnx_dir / "manipulate.onnx"), providers=["CPUExecutionProvider"]
        ),
        "onnxruntime, 1 thread, no spinning": onnx_session(onnx_dir / "manipulate.onnx", threads=1),
        "onnxruntime, 2 threads, no spinning": onnx_session(onnx_dir / "manipulate.onnx", threads=2),
    }
    sessions["previous export (ConvTranspose): onnxruntime, default session options"] = ort.InferenceSession(
        str(onnx_dir / PLAIN_ONNX), providers=["CPUExecutionProvider"]
    )
    sessions["previous export (ConvTranspose): onnxruntime, 2 threads, no spinning"] = onnx_session(
        onnx_dir / PLAIN_ONNX, threads=2
    )
    int8 = onnx_dir / "manipulate.int8.onnx"
    if int8.is_file():
        sessions["onnxruntime int8, 1 thread, no spinning"] = onnx_session(int8, threads=1)
        sessions["onnxruntime int8, 2 threads, no spinning"] = onnx_session(int8, threads=2)

    def eager_manipulate(x_, y_, y_target):
        with eager_numpy_api():
            return model.manipulate(x_, y_target, y=y_)

    def feeds(batch):
        return x[:batch], y[:batch], 1.0 - y[:batch]

    def tensors(batch):
        return [tf.constant(v) for v in feeds(batch)]

    def call_with(fn, args):
        return lambda: fn(*args)  # the inputs are made once, outside the timed calls

    out = {
        "Keras `model.manipulate` (numpy API)": lambda b: call_with(
            lambda x_, y_, t: model.manipulate(x_, t, y=y_), feeds(b)
        ),
        "before: Keras `model.manipulate` with eager layers": lambda b: call_with(eager_manipulate, feeds(b)),
        "Keras: raw `tf.function` of the exported `manipulate`": lambda b: call_with(
            lambda *a: raw(*a)["x_edited"].numpy(), tensors(b)
        ),
        "SavedModel (`tf.saved_model.load`, signature)": lambda b: call_with(
            lambda x_, y_, t: signature(x=x_, y=y_, y_target=t)["x_edited"].numpy(), tensors(b)
        ),
    }
    for name, session in sessions.items():
        out[name] = lambda b, s=session: call_with(
            lambda x_, y_, t: s.run(None, {"x": x_, "y": y_, "y_target": t})[0], feeds(b)
        )
    return out, loaded


def check_agreement(fns, batch):
    """Max |difference| of every variant's output from the raw tf.function's."""
    import numpy as np

    reference = np.asarray(fns["Keras: raw `tf.function` of the exported `manipulate`"](batch)())
    return {name: float(np.max(np.abs(np.asarray(make(batch)()) - reference))) for name, make in fns.items()}


def edge_parts(export_dir, x, threads, rounds, block, budget):
    """Timings of the edge editor (PNG → PNG) and of its parts."""
    from serving.edge import Editor
    from serving.runtime.images import decode_image, encode_png

    editor = Editor(export_dir, threads=threads)
    png = encode_png(x[0])
    labels = {"glasses": 1}
    editor.edit(png, labels)  # session creation
    session = editor._session("manipulate")
    pixels = decode_image(png, editor.image_shape)[None]
    feeds = {"x": pixels, "y": editor.source_labels(labels)[None], "y_target": editor.target(labels)[None]}
    edited = session.run(None, feeds)[0]
    fns = {
        "edge `Editor.edit`: PNG in → PNG out": lambda: editor.edit(png, labels),
        "  part: `decode_image` (PIL decode + float)": lambda: decode_image(png, editor.image_shape),
        "  part: onnxruntime `manipulate` (batch 1)": lambda: session.run(None, feeds),
        "  part: `encode_png` (round + PIL encode)": lambda: encode_png(edited[0]),
    }
    return timed_blocks(fns, rounds, block, budget), len(png)


def timed_blocks(fns, rounds, block, budget):
    """Interleaved blocks of ``block`` consecutive calls per variant; {name: Timing of single calls}."""
    timings = {name: common.Timing() for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    start = time.perf_counter()
    for r in range(rounds):
        for name, fn in fns.items():
            for _ in range(block):
                timings[name].samples.append(common.time_call(fn))
        if r >= 1 and time.perf_counter() - start > budget:
            break
    return timings


@contextlib.contextmanager
def temporary_directory():
    with tempfile.TemporaryDirectory(prefix="csvae-bench-") as tmp:
        yield Path(tmp)


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16,256", help="batch sizes (default 1,16,256)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds of timing per batch size (default 12 (×4 for 256); quick 1)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    batches = [int(b) for b in args.batches.split(",")]
    budget = args.budget if args.budget is not None else (1.0 if quick else 12.0)

    report = common.Report("Inference: `manipulate` (`bench/bench_inference.py`)", argv, quick=quick)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    import numpy as np
    import tensorflow as tf

    log(f"TensorFlow {tf.__version__}")
    model, size = build_model(quick)
    with temporary_directory() as tmp:
        content, saved_model_path, x, y = export(model, size, tmp / "export", quick, log)
        x = np.concatenate([x] * (-(-max(batches) // len(x))))[: max(batches)]
        y = np.concatenate([y] * (-(-max(batches) // len(y))))[: max(batches)]
        y = 1.0 - y  # edits: every label switched
        fns, loaded = variants(model, content, tmp / "export", saved_model_path, x, y)
        agreement = check_agreement(fns, min(4, max(batches)))
        rows = {}
        for batch in batches:
            calls = {name: make(batch) for name, make in fns.items()}
            block = 1 if batch >= 256 else (4 if batch >= 16 else 20)
            rounds = 3 if quick else (8 if batch >= 256 else 12)
            timings = timed_blocks(calls, rounds, block, budget * (4 if batch >= 256 and not quick else 1))
            for name, t in timings.items():
                rows[(batch, name)] = t
            best = min(timings.items(), key=lambda kv: kv[1].wall)
            log(f"batch {batch}: fastest {best[0]} {best[1].wall * 1e3:.2f} ms (load {common.load_average()})")
        edge_timings, png_bytes = edge_parts(
            tmp / "export", x, threads=1, rounds=3 if quick else 12, block=20, budget=budget
        )
        int8_report = content.get("int8") or {}
        del loaded

    widths = (
        f"conv {'/'.join(map(str, model.conv_filters))}, dense {model.dense_units}, "
        f"decoder {'/'.join(map(str, model.decoder_filters))}"
    )
    report.heading(
        f"`manipulate`, synthetic_faces {size}×{size} model "
        f"({'tiny' if quick else 'the `synthetic_faces` preset'} widths: {widths}; "
        f"{manipulate_flops(model) / 1e6:.0f} MFLOP per edit)"
    )
    table = []
    for (batch, name), t in rows.items():
        table.append(
            (
                name,
                batch,
                batch / t.wall,
                t.wall_percentile(50) * 1e3,
                t.wall_percentile(99) * 1e3,
                t.cpu * 1e3,
                len(t),
                f"{agreement.get(name, float('nan')):.1e}",
            )
        )
    report.table(
        ["path", "batch", "edits/s", "p50 ms", "p99 ms", "CPU-ms (median)", "calls", "max |Δ| vs tf"],
        table,
        note="Wall-clock latency of one call (numpy in, numpy out); edits/s = batch ÷ p50. "
        "p99 of few calls is close to their maximum. 'max |Δ| vs tf': output difference from "
        "the raw tf.function on the same inputs (int8: quantisation error).",
    )
    if int8_report:
        report.text(
            f"int8 model: {'written' if int8_report.get('written') else 'not written'} by the export "
            f"(scaled mean abs error {int8_report.get('scaled_mean_abs_error', float('nan')):.4f}, "
            f"threshold {int8_report.get('threshold', {}).get('scaled_mean_abs_error')})."
        )
    report.heading(f"Edge path: PNG → PNG through onnxruntime ({png_bytes} byte {size}×{size} PNG, 1 thread)")
    report.table(
        ["step", "p50 ms", "p99 ms", "CPU-ms (median)", "calls"],
        [
            (name, t.wall_percentile(50) * 1e3, t.wall_percentile(99) * 1e3, t.cpu * 1e3, len(t))
            for name, t in edge_timings.items()
        ],
    )

    # Targets.
    sm = rows.get((1, "SavedModel (`tf.saved_model.load`, signature)"))
    ort_rows = {n: t for (b, n), t in rows.items() if b == 1 and n.startswith("onnxruntime,")}
    int8_rows = {n: t for (b, n), t in rows.items() if b == 1 and n.startswith("onnxruntime int8")}
    previous = {n: t for (b, n), t in rows.items() if b == 1 and n.startswith("previous export")}
    if sm and ort_rows:
        best_name, best = min(ort_rows.items(), key=lambda kv: kv[1].wall)
        default = ort_rows.get("onnxruntime, default session options")
        evidence = f"best: {best_name}"
        if previous:
            before = min(previous.values(), key=lambda t: t.wall)
            evidence += f"; previous export (ConvTranspose) {sm.wall / before.wall:.1f}× ({before.wall * 1e3:.2f} ms)"
        report.target(
            "onnxruntime `manipulate` batch 1 ≥ 3× faster than SavedModel (float32)",
            f"{sm.wall / best.wall:.1f}× ({best.wall * 1e3:.2f} vs {sm.wall * 1e3:.2f} ms p50; "
            f"default options {sm.wall / default.wall:.1f}×)",
            "≥ 3×",
            sm.wall / best.wall >= 3,
            evidence,
        )
    if sm and int8_rows:
        name, best = min(int8_rows.items(), key=lambda kv: kv[1].wall)
        report.target(
            "the same with the export's int8 model (quality-gated)",
            f"{sm.wall / best.wall:.1f}× ({best.wall * 1e3:.2f} vs {sm.wall * 1e3:.2f} ms p50)",
            "≥ 3×",
            sm.wall / best.wall >= 3,
            f"{name}; max |Δ| vs float32 {agreement.get(name, float('nan')):.1e}",
        )
    edit = edge_timings.get("edge `Editor.edit`: PNG in → PNG out")
    if edit:
        report.target(
            f"edge editor {size}×{size} PNG → PNG < 10 ms",
            f"{edit.wall * 1e3:.2f} ms p50, {edit.wall_percentile(99) * 1e3:.2f} ms p99",
            "< 10 ms (p50)",
            edit.wall < 0.010,
            "`serving.edge.Editor(threads=1).edit(png_bytes, {'glasses': 1})`"
            + (" (quick: tiny 32 px model)" if quick else ""),
        )
    eager = rows.get((1, "before: Keras `model.manipulate` with eager layers"))
    compiled = rows.get((1, "Keras `model.manipulate` (numpy API)"))
    if eager and compiled:
        report.text(
            f"Change (`LatentModel.graph_function`, used by `run_batched`): `model.manipulate` at batch 1 "
            f"{eager.wall * 1e3:.1f} → {compiled.wall * 1e3:.1f} ms "
            f"({eager.wall / compiled.wall:.1f}×); outputs differ by ≤ "
            f"{agreement.get('Keras `model.manipulate` (numpy API)', float('nan')):.1e}."
        )
    report.finish(args.output)


if __name__ == "__main__":
    main()
