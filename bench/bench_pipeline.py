"""Input pipeline: images/s the ``tf.data`` pipelines deliver vs what the train step consumes.

- ``synthetic_faces``: exactly what training uses,
  ``keras_csvae.training.train.dataset_for`` (``load(...)`` + shuffle +
  batch + prefetch): the first pass renders the faces, later passes read the
  kept uint8 chunks. Also without the shuffle, and a proposed variant that
  shuffles and batches uint8 and converts to float per batch.
- CelebA-style: ``celeba.py``'s own transform (``registry.load("celeba_…")``:
  central 148×148 crop, antialiased resize, labels from the 40 attributes) on
  generated 218×178 JPEGs decoded in the pipeline (as tfds does), with
  ``dataset_for``'s shuffle + batch + prefetch. The tfds reader itself is
  replaced by an in-memory source (no CelebA download here).
- Train consumption: samples/s of the train step of the models these
  datasets train (their default widths, float32 and mixed_bfloat16), and
  ``fit`` fed by the real pipeline vs by an in-memory batch.

Target: every pipeline delivers ≥ 5× what the train step consumes.

    python bench/bench_pipeline.py            # full, ~100 s (2 cores, light load)
    python bench/bench_pipeline.py --quick    # CI smoke run, ~20 s
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

common.quiet_tensorflow()

import contextlib  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402

TARGET_RATIO = 5.0


def faces_config(size, n, batch):
    from keras_csvae.training import TrainConfig

    return TrainConfig(dataset="synthetic_faces", dataset_options={"image_size": size, "num_examples": n},
                       batch_size=batch, precision="float32").resolved()


def stub_model(shape, labels):
    """What ``dataset_for`` needs of a model: the static shape check."""
    import types

    return types.SimpleNamespace(check_static_shapes=lambda x, y: None, data_shape=shape, num_labels=labels)


def passes(makers: dict, rounds: int) -> dict:
    """Builds every dataset, times one first pass of each, then ``rounds`` more
    passes of each, interleaved. Returns ``{name: ((img/s wall, img per CPU-s) of
    the first pass, (same) median of the later passes)}``."""
    datasets = {name: make() for name, make in makers.items()}
    counts = {}

    def one_pass(name):
        seen = 0
        for x, _ in datasets[name]:
            seen += int(x.shape[0])
        counts[name] = seen

    first = {name: common.time_call(lambda name=name: one_pass(name)) for name in datasets}
    later = common.interleaved({name: (lambda name=name: one_pass(name)) for name in datasets}, rounds, warmup=0)
    return {name: ((counts[name] / first[name].wall, counts[name] / first[name].cpu),
                   (counts[name] / later[name].wall, counts[name] / later[name].cpu)) for name in datasets}


# -- synthetic faces -------------------------------------------------------------------------------
def faces_variants(size, n, batch):
    """name -> () -> dataset, all of ``n`` faces at ``size`` px in batches of ``batch``."""
    import tensorflow as tf

    from keras_csvae import data
    from keras_csvae.data import synthetic_faces
    from keras_csvae.training.train import dataset_for

    config = faces_config(size, n, batch)
    model = stub_model((size, size, 3), 3)

    def proposed():
        # Same renderer and cache, but shuffle and batch uint8 and convert a batch at a time.
        renderer = synthetic_faces.SyntheticFaces(size)
        chunks = tf.data.Dataset.from_generator(
            synthetic_faces._RenderedChunks(renderer, n, synthetic_faces.SPLIT_SEEDS["train"]),
            output_signature=(tf.TensorSpec((None, size, size, 3), tf.uint8), tf.TensorSpec((None, 3), tf.float32)))
        return (chunks.unbatch().shuffle(min(n, 10_000), seed=0, reshuffle_each_iteration=True).batch(batch)
                .map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE))

    return {
        "`dataset_for` (as `csvae train`: shuffle 10k + batch + prefetch)": lambda: dataset_for(config, model, "train",
                                                                                                shuffle=True),
        "`load(...)` + batch + prefetch (no shuffle)": lambda: data.load(
            "synthetic_faces", split="train", image_size=size, num_examples=n).batch(batch).prefetch(tf.data.AUTOTUNE),
        "proposed: shuffle + batch uint8, then float per batch": proposed,
    }


# -- CelebA-style ----------------------------------------------------------------------------------
def fake_celeba_jpegs(count, seed=0):
    """``count`` JPEGs of 218×178 faces (synthetic faces upscaled, plus grain) and random attributes."""
    import numpy as np
    import tensorflow as tf

    from keras_csvae.data.synthetic_faces import SyntheticFaces

    rng = np.random.default_rng(seed)
    faces = SyntheticFaces(64).sample(count, seed=seed)[0]
    images = tf.image.resize(tf.constant(faces, tf.float32), (218, 178)).numpy()
    images = np.clip(images + rng.normal(0, 6, images.shape), 0, 255).astype(np.uint8)
    jpegs = [tf.io.encode_jpeg(image, quality=90).numpy() for image in images]
    attributes = rng.random((count, 40)) < 0.2
    return jpegs, attributes


CELEBA_ATTRIBUTE_NAMES = ("Eyeglasses", "Goatee", "Mustache", "No_Beard")


@contextlib.contextmanager
def celeba_source(jpegs, attributes, repeat, skip_decoding=False, method="bilinear"):
    """Replaces ``celeba._load_split`` (the tfds reader) with an in-memory source
    of the same structure: ``{"image": uint8 [218, 178, 3], "attributes": {name: bool}}``,
    the JPEG decoded in the source's map as tfds does.

    ``skip_decoding``: the proposed change. The source leaves the JPEG bytes
    undecoded (tfds's ``decoders={"image": tfds.decode.SkipDecoding()}``) and
    ``celeba._crop_and_resize`` decodes only the central crop
    (``tf.io.decode_and_crop_jpeg``), then resizes as before.
    """
    import tensorflow as tf

    from keras_csvae.data import celeba

    names = CELEBA_ATTRIBUTE_NAMES + tuple(f"attr_{i}" for i in range(40 - len(CELEBA_ATTRIBUTE_NAMES)))

    def load_split(split, data_dir):
        source = tf.data.Dataset.from_tensor_slices((list(jpegs), attributes)).repeat(repeat)

        def decode(jpeg, attrs):
            image = jpeg if skip_decoding else tf.io.decode_jpeg(jpeg, channels=3)
            return {"image": image, "attributes": dict(zip(names, tf.unstack(attrs, num=len(names))))}

        return source.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    old_load, old_crop = celeba._load_split, celeba._crop_and_resize
    celeba._load_split = load_split
    if skip_decoding:
        celeba._crop_and_resize = lambda jpeg, size: crop_and_resize_jpeg(jpeg, size, method)
    try:
        yield
    finally:
        celeba._load_split, celeba._crop_and_resize = old_load, old_crop


def crop_and_resize_jpeg(jpeg, image_size: int, method: str = "bilinear"):
    """Proposed ``celeba._crop_and_resize`` on undecoded JPEG bytes: decode the central
    148×148 crop only, then the same float conversion and antialiased resize
    (``method="area"``: a box-filter resize instead, faster, slightly different pixels)."""
    import tensorflow as tf

    from keras_csvae.data import celeba
    from keras_csvae.data._images import resize

    shape = tf.io.extract_jpeg_shape(jpeg)
    top = (shape[0] - celeba.CROP_SIZE) // 2
    left = (shape[1] - celeba.CROP_SIZE) // 2
    image = tf.io.decode_and_crop_jpeg(jpeg, tf.stack([top, left, celeba.CROP_SIZE, celeba.CROP_SIZE]), channels=3)
    image = tf.cast(image, tf.float32) / 255.0
    if method == "area":
        return tf.clip_by_value(tf.image.resize(image, (image_size, image_size), method="area"), 0.0, 1.0)
    return resize(image, image_size)


def celeba_variants(size, batch, jpegs, attributes, repeat):
    import tensorflow as tf

    from keras_csvae.training import TrainConfig
    from keras_csvae.training.train import dataset_for

    config = TrainConfig(dataset="celeba_glasses_facial_hair", dataset_options={"image_size": size},
                         batch_size=batch, precision="float32").resolved()
    model = stub_model((size, size, 3), 2)

    def with_source(skip_decoding, method="bilinear"):
        def make_dataset():
            with celeba_source(jpegs, attributes, repeat, skip_decoding, method):
                return dataset_for(config, model, "train", shuffle=True)
        return make_dataset

    def source_only():
        from keras_csvae.data import celeba

        with celeba_source(jpegs, attributes, repeat):
            source = celeba._load_split("train", None)
        return source.map(lambda e: (e["image"], e["attributes"]["Eyeglasses"])).batch(batch).prefetch(tf.data.AUTOTUNE)

    return {
        "`dataset_for` on `celeba_glasses_facial_hair` (JPEG decode + crop + resize + labels)": with_source(False),
        "proposed: the same with `SkipDecoding` + `decode_and_crop_jpeg` (decode the 148×148 crop only)":
            with_source(True),
        "option: as proposed, with an area (box-filter) resize instead of antialiased bilinear":
            with_source(True, "area"),
        "the fake tfds source alone (JPEG decode 218×178 + attribute dict), batched": source_only,
    }


def proposed_gap(size, jpegs, method="bilinear"):
    """(max, mean) |difference| between celeba.py's transform and the proposed one."""
    import numpy as np
    import tensorflow as tf

    from keras_csvae.data import celeba

    gaps = [np.abs(celeba._crop_and_resize(tf.io.decode_jpeg(jpeg, channels=3), size)
                   - crop_and_resize_jpeg(jpeg, size, method)) for jpeg in jpegs]
    return float(max(np.max(g) for g in gaps)), float(np.mean([np.mean(g) for g in gaps]))


# -- train consumption --------------------------------------------------------------------------------
def consumption(consumers, batch, rounds, budget, log):
    """{(arch, size, mode): Timing per step} of the train step, interleaved per model."""
    import bench_train

    out = {}
    for arch, size, modes in consumers:
        models = {mode: bench_train.build(arch, size, mode) for mode in modes}
        x, y = bench_train.random_batch(arch, size, batch)
        steps = {mode: bench_train.train_step_fn(m, x, y) for mode, m in models.items()}
        for step in steps.values():
            step()  # trace
        timings = common.interleaved(steps, rounds, warmup=1, budget_s=budget)
        for mode, t in timings.items():
            out[(arch, size, mode)] = t
            log(f"  train {arch} {size} {mode}: {batch / t.wall:.0f} samples/s wall, {batch / t.cpu:.0f} per CPU-s")
        del models, steps
        gc.collect()
    return out


def fit_comparison(size, n, batch, steps, log):
    """The train step fed by the real ``dataset_for`` pipeline vs by a repeated
    in-memory batch: blocks of ``steps`` calls of Keras's train function (what
    ``fit`` runs per step), interleaved. One iterator each, created (and its
    shuffle buffer filled) before timing, as within an epoch of ``fit``."""
    import tensorflow as tf

    import bench_train
    from keras_csvae.training.train import dataset_for

    model = bench_train.build("default", size, "float32")
    x, y = bench_train.random_batch("default", size, batch)
    iterators = {
        "in-memory batch": iter(tf.data.Dataset.from_tensors((x, y)).repeat()),
        "`dataset_for` pipeline": iter(dataset_for(faces_config(size, n, batch), model, "train", shuffle=True).repeat()),
    }
    model.make_train_function()

    def block(iterator):
        for _ in range(steps):
            float(model.train_function(iterator)["loss"])

    for iterator in iterators.values():
        block(iterator)  # trace; the pipeline renders and fills its shuffle buffer
    timings = common.interleaved({name: (lambda it=it: block(it)) for name, it in iterators.items()},
                                 rounds=3, warmup=0)
    for name, t in timings.items():
        log(f"  train step on {name}: {t.wall / steps * 1e3:.0f} ms/step")
    del model, iterators
    gc.collect()
    return timings


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=None, help="faces per pass (default 4096; quick 256)")
    parser.add_argument("--celeba", type=int, default=None, help="CelebA-style images per pass (default 2048; quick 128)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    quick = args.quick
    n_faces = args.faces or (256 if quick else 4096)
    n_celeba = args.celeba or (128 if quick else 2048)
    batch = 32 if quick and args.batch_size == 64 else args.batch_size
    sizes = (32,) if quick else (32, 64)

    report = common.Report("Input pipeline (`bench/bench_pipeline.py`)", argv, quick=quick)
    started = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", flush=True)

    import tensorflow as tf

    log(f"TensorFlow {tf.__version__}")

    # 1. synthetic faces
    rounds = 2 if quick else 3
    faces_rows = {}
    for size in sizes:
        for name, (first, later) in passes(faces_variants(size, n_faces, batch), rounds).items():
            faces_rows[(size, name)] = (first, later)
            log(f"  faces {size}px {name[:40]}: first {first[1]:.0f}/CPU-s, then {later[1]:.0f}/CPU-s")

    # 2. CelebA-style
    distinct = min(n_celeba, 64 if quick else 256)
    jpegs, attributes = fake_celeba_jpegs(distinct)
    celeba_rows, celeba_gap = {}, {}
    for size in sizes:
        variants = celeba_variants(size, batch, jpegs, attributes, repeat=max(1, n_celeba // distinct))
        for name, (first, later) in passes(variants, rounds).items():
            celeba_rows[(size, name)] = (first, later)
            log(f"  celeba {size}px {name[:40]}: {later[1]:.0f}/CPU-s")
        celeba_gap[size] = (proposed_gap(size, jpegs[:16]), proposed_gap(size, jpegs[:16], "area"))

    # 3. what the train step consumes
    if quick:
        consumers = [("default", 32, ("float32",))]
    else:
        consumers = [("default", 32, ("float32", "bf16")), ("default", 64, ("float32", "bf16")),
                     ("celeba", 32, ("float32", "bf16")), ("celeba", 64, ("float32", "bf16"))]
    train = consumption(consumers, batch, rounds=3 if quick else 6, budget=1.0 if quick else 10.0, log=log)
    fit = None if quick else fit_comparison(64, n_faces, batch, steps=8, log=log)

    report.heading(f"synthetic_faces through tf.data ({n_faces} faces per pass, batch {batch})")
    report.table(["pipeline", "size", "first pass img/s (wall)", "first pass img per CPU-s",
                  "later passes img/s (wall)", "later passes img per CPU-s"],
                 [(name, f"{size} px", f[0], f[1], s[0], s[1]) for (size, name), (f, s) in faces_rows.items()],
                 note=f"Later passes: median of {rounds} passes per pipeline, interleaved. "
                      "First pass: renders every face (then kept as uint8 in memory). The shuffle buffer of "
                      "`dataset_for` (10 000 elements, or the whole split when smaller) must fill before the first "
                      "batch comes out.")
    report.heading(f"CelebA-style pipeline ({n_celeba} images of 218×178 per pass, {distinct} distinct JPEGs)")
    report.table(["pipeline", "size", f"img/s (wall, median of {rounds} passes)", "img per CPU-s"],
                 [(name, f"{size} px", s[0], s[1]) for (size, name), (_, s) in celeba_rows.items()],
                 note="celeba.py's own `_tf_data` (crop 148×148, antialiased resize, labels), fed by an in-memory "
                      "source that decodes JPEG like tfds (tfds's TFRecord reading is not included). The proposed "
                      "variant gives the same pixels (max |Δ| "
                      + ", ".join(f"{exact[0]:.1e} at {size} px" for size, (exact, _) in celeba_gap.items())
                      + "); the area-resize option changes them slightly ("
                      + ", ".join(f"mean |Δ| {area[1]:.4f}, max {area[0]:.3f} at {size} px"
                                  for size, (_, area) in celeba_gap.items()) + ").")
    report.heading(f"What the train step consumes (batch {batch}, both optimisers)")
    report.table(["model", "mode", "samples/s (wall)", "samples per CPU-s"],
                 [(f"{'synthetic_faces' if arch == 'default' else 'CelebA'} default widths {size}×{size}",
                   mode, batch / t.wall, batch / t.cpu) for (arch, size, mode), t in train.items()])
    if fit:
        mem, real = fit["in-memory batch"], fit["`dataset_for` pipeline"]
        report.heading("The train step fed by the pipeline vs by an in-memory batch "
                       "(synthetic_faces 64 px, default widths, float32, batch 64)")
        report.table(["input", "ms/step (wall)", "CPU-ms/step"],
                     [(name, t.wall / 8 * 1e3, t.cpu / 8 * 1e3) for name, t in fit.items()],
                     note=f"Blocks of 8 steps, 3 rounds, interleaved. Pipeline overhead: "
                          f"{100 * (real.wall / mem.wall - 1):+.0f} % wall, "
                          f"{100 * (real.cpu / mem.cpu - 1):+.0f} % CPU (the pipeline shares the two cores with the step).")

    # Ratios: each pipeline at a size vs the fastest consumer at that size.
    report.heading("Pipeline ÷ train consumption")
    ratio_rows, worst = [], None
    pipelines = [("default", k, v) for k, v in faces_rows.items()] + [("celeba", k, v) for k, v in celeba_rows.items()]
    for consumer_arch, (size, name), (_, (wall, cpu)) in pipelines:
        if "source alone" in name:
            continue
        consumers_at = [(k, t) for k, t in train.items() if k[1] == size and k[0] == consumer_arch]
        if not consumers_at:
            continue
        (arch, _, mode), t = min(consumers_at, key=lambda kt: kt[1].cpu)
        r_wall, r_cpu = wall / (batch / t.wall), cpu / (batch / t.cpu)
        ratio_rows.append((name, f"{size} px", f"{arch} {mode}", r_wall, r_cpu))
        if name.startswith("`dataset_for`") and (worst is None or r_cpu < worst[1]):
            worst = (f"{name.split(' (')[0]} {size} px vs {arch} {mode}", r_cpu, r_wall)
    report.table(["pipeline (steady state)", "size", "fastest consumer (its own model)", "ratio (wall)", "ratio (CPU)"],
                 ratio_rows,
                 note="Ratio (CPU): images the pipeline makes per CPU-second ÷ samples the step trains per CPU-second; "
                      "its inverse is the share of the cores the pipeline takes from training.")
    if worst:
        report.target("input pipeline ≥ 5× train consumption (worst `dataset_for` case)",
                      f"{worst[1]:.1f}× (CPU), {worst[2]:.1f}× (wall)", f"≥ {TARGET_RATIO:.0f}×",
                      worst[1] >= TARGET_RATIO, worst[0])
    report.finish(args.output)


if __name__ == "__main__":
    main()
