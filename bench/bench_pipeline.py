"""Input pipeline: images/s the ``tf.data`` pipelines deliver vs what the train step consumes.

- ``synthetic_faces``: exactly what training uses,
  ``keras_csvae.training.train.dataset_for`` (``load_stored(...)``: uint8
  images, shuffled and batched, converted to float per batch): the first
  pass renders the faces, later passes read the kept uint8 chunks. Also
  without the shuffle, and the pipeline before that change (float32 per
  image, shuffled and batched as float32).
- CelebA-style: ``celeba.py``'s own transform (JPEG bytes → decode of the
  central 148×148 crop only → antialiased resize → uint8; cached in memory
  when the split fits in 1 GB; labels from the 40 attributes) on generated
  218×178 JPEGs, with ``dataset_for``'s shuffle + batch + prefetch; and the
  transform before that change (tfds decodes the whole JPEG, float32, no
  cache). The tfds reader itself is replaced by an in-memory source (no
  CelebA download here).
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


# Columns of the pipeline tables: the first pass fills the caches, later passes read them.
PASS_COLUMNS = [
    "pipeline",
    "size",
    "first pass img/s (wall)",
    "first pass img per CPU-s",
    "later passes img/s (wall)",
    "later passes img per CPU-s",
]


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
    return {
        name: (
            (counts[name] / first[name].wall, counts[name] / first[name].cpu),
            (counts[name] / later[name].wall, counts[name] / later[name].cpu),
        )
        for name in datasets
    }


# -- synthetic faces -------------------------------------------------------------------------------
def faces_variants(size, n, batch):
    """name -> () -> dataset, all of ``n`` faces at ``size`` px in batches of ``batch``."""
    import tensorflow as tf

    from keras_csvae import data
    from keras_csvae.training.train import dataset_for

    config = common.faces_config(size, n, batch)
    model = stub_model((size, size, 3), 3)

    def before():
        # The pipeline before the uint8 change: float32 per image, shuffled and batched as float32.
        return (
            data.load("synthetic_faces", "train", image_size=size, num_examples=n)
            .shuffle(min(n, 10_000), seed=0, reshuffle_each_iteration=True)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )

    return {
        "`dataset_for` (as `csvae train`: shuffle 10k + batch + prefetch)": lambda: dataset_for(
            config, model, "train", shuffle=True
        ),
        "`load(...)` + batch + prefetch (no shuffle)": lambda: (
            data.load("synthetic_faces", split="train", image_size=size, num_examples=n)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        ),
        "before: float32 per image, shuffled and batched as float32": before,
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


CELEBA_TRAIN_SIZE = 162_770
CELEBA_ATTRIBUTE_NAMES = ("Eyeglasses", "Goatee", "Mustache", "No_Beard")


@contextlib.contextmanager
def celeba_source(jpegs, attributes, repeat, before=False):
    """Replaces ``celeba._load_split`` (the tfds reader) with an in-memory source
    of the same structure: ``{"image": JPEG bytes, "attributes": {name: bool}}``,
    as tfds gives with ``decoders={"image": SkipDecoding()}``.

    ``before``: the pipeline before the change: the source decodes the whole
    218×178 JPEG (tfds's default) and ``before_crop_and_resize`` makes float32
    crops; no uint8, no cache.
    """
    import tensorflow as tf

    from keras_csvae.data import celeba

    names = CELEBA_ATTRIBUTE_NAMES + tuple(f"attr_{i}" for i in range(40 - len(CELEBA_ATTRIBUTE_NAMES)))

    def load_split(split, data_dir):
        source = tf.data.Dataset.from_tensor_slices((list(jpegs), attributes)).repeat(repeat)

        def decode(jpeg, attrs):
            image = tf.io.decode_jpeg(jpeg, channels=3) if before else jpeg
            return {"image": image, "attributes": dict(zip(names, tf.unstack(attrs, num=len(names))))}

        return source.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    old_load, old_crop, old_cache = celeba._load_split, celeba._crop_and_resize, celeba.CACHE_BYTES
    celeba._load_split = load_split
    if before:
        celeba._crop_and_resize = before_crop_and_resize
        celeba.CACHE_BYTES = -1
    else:
        # Cache exactly when the real split would be: scale the limit to this source's size.
        celeba.CACHE_BYTES = int(old_cache * len(jpegs) * repeat / CELEBA_TRAIN_SIZE)
    try:
        yield
    finally:
        celeba._load_split, celeba._crop_and_resize, celeba.CACHE_BYTES = old_load, old_crop, old_cache


def before_crop_and_resize(image, image_size: int):
    """``celeba._crop_and_resize`` before the change: decoded uint8 ``[218, 178, 3]``
    -> float32 ``[S, S, 3]`` (crop of the fully decoded image)."""
    import tensorflow as tf

    from keras_csvae.data import celeba
    from keras_csvae.data._images import resize

    shape = tf.shape(image)
    image = tf.image.crop_to_bounding_box(
        image,
        (shape[0] - celeba.CROP_SIZE) // 2,
        (shape[1] - celeba.CROP_SIZE) // 2,
        celeba.CROP_SIZE,
        celeba.CROP_SIZE,
    )
    return resize(tf.cast(image, tf.float32) / 255.0, image_size)


def celeba_variants(size, batch, jpegs, attributes, repeat):
    import tensorflow as tf

    from keras_csvae.training import TrainConfig
    from keras_csvae.training.train import dataset_for

    config = TrainConfig(
        dataset="celeba_glasses_facial_hair",
        dataset_options={"image_size": size},
        batch_size=batch,
        precision="float32",
    ).resolved()
    model = stub_model((size, size, 3), 2)

    def with_source(before):
        def make_dataset():
            with celeba_source(jpegs, attributes, repeat, before):
                return dataset_for(config, model, "train", shuffle=True)

        return make_dataset

    def source_only():
        from keras_csvae.data import celeba

        with celeba_source(jpegs, attributes, repeat, before=True):
            source = celeba._load_split("train", None)
        return source.map(lambda e: (e["image"], e["attributes"]["Eyeglasses"])).batch(batch).prefetch(tf.data.AUTOTUNE)

    return {
        "`dataset_for` on `celeba_glasses_facial_hair` (decode the crop, resize, uint8, cache)": with_source(False),
        "before: tfds decodes the whole JPEG, float32 crops, no cache": with_source(True),
        "the fake tfds source alone (JPEG decode 218×178 + attribute dict), batched": source_only,
    }


def pixel_gap(size, jpegs):
    """(max, mean) |difference| between the transform before and after the change, in [0, 1] units."""
    import numpy as np
    import tensorflow as tf

    from keras_csvae.data import celeba

    gaps = [
        np.abs(
            before_crop_and_resize(tf.io.decode_jpeg(jpeg, channels=3), size).numpy()
            - celeba._crop_and_resize(jpeg, size).numpy() / 255.0
        )
        for jpeg in jpegs
    ]
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
    import bench_train
    import tensorflow as tf

    from keras_csvae.training.train import dataset_for

    model = bench_train.build("default", size, "float32")
    x, y = bench_train.random_batch("default", size, batch)
    iterators = {
        "in-memory batch": iter(tf.data.Dataset.from_tensors((x, y)).repeat()),
        "`dataset_for` pipeline": iter(
            dataset_for(common.faces_config(size, n, batch), model, "train", shuffle=True).repeat()
        ),
    }
    model.make_train_function()

    def block(iterator):
        for _ in range(steps):
            float(model.train_function(iterator)["loss"])

    for iterator in iterators.values():
        block(iterator)  # trace; the pipeline renders and fills its shuffle buffer
    timings = common.interleaved(
        {name: (lambda it=it: block(it)) for name, it in iterators.items()}, rounds=3, warmup=0
    )
    for name, t in timings.items():
        log(f"  train step on {name}: {t.wall / steps * 1e3:.0f} ms/step")
    del iterators
    gc.collect()
    return timings


def main(argv=None):
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=None, help="faces per pass (default 4096; quick 256)")
    parser.add_argument(
        "--celeba", type=int, default=None, help="CelebA-style images per pass (default 2048; quick 128)"
    )
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
        celeba_gap[size] = pixel_gap(size, jpegs[:16])

    # 3. what the train step consumes
    if quick:
        consumers = [("default", 32, ("float32",))]
    else:
        consumers = [
            ("default", 32, ("float32", "bf16")),
            ("default", 64, ("float32", "bf16")),
            ("celeba", 32, ("float32", "bf16")),
            ("celeba", 64, ("float32", "bf16")),
        ]
    train = consumption(consumers, batch, rounds=3 if quick else 6, budget=1.0 if quick else 10.0, log=log)
    fit = None if quick else fit_comparison(64, n_faces, batch, steps=8, log=log)

    report.heading(f"synthetic_faces through tf.data ({n_faces} faces per pass, batch {batch})")
    report.table(
        PASS_COLUMNS,
        [(name, f"{size} px", f[0], f[1], s[0], s[1]) for (size, name), (f, s) in faces_rows.items()],
        note=f"Later passes: median of {rounds} passes per pipeline, interleaved. "
        "First pass: renders every face (then kept as uint8 in memory). The shuffle buffer of "
        "`dataset_for` (10 000 elements, or the whole split when smaller) must fill before the first "
        "batch comes out.",
    )
    report.heading(f"CelebA-style pipeline ({n_celeba} images of 218×178 per pass, {distinct} distinct JPEGs)")
    report.table(
        PASS_COLUMNS,
        [(name, f"{size} px", f[0], f[1], s[0], s[1]) for (size, name), (f, s) in celeba_rows.items()],
        note="celeba.py's own `_tf_data` (crop 148×148, antialiased resize, labels), fed by an in-memory "
        "source of JPEG bytes (tfds's TFRecord reading is not included). First pass: decodes every "
        "image; later passes: from the in-memory cache where the split fits in 1 GB (CelebA's "
        "162 770 training images: 0.5 GB at 32 px, cached; 2 GB at 64 px, decoded every epoch; the bench "
        "scales the limit to its own image count so that it caches when CelebA would). "
        "The change keeps the pixels to half a grey level (uint8 rounding; max |Δ| "
        + ", ".join(f"{g[0]:.1e} at {size} px" for size, g in celeba_gap.items())
        + ").",
    )
    report.heading(f"What the train step consumes (batch {batch}, both optimisers)")
    report.table(
        ["model", "mode", "samples/s (wall)", "samples per CPU-s"],
        [
            (
                f"{'synthetic_faces' if arch == 'default' else 'CelebA'} default widths {size}×{size}",
                mode,
                batch / t.wall,
                batch / t.cpu,
            )
            for (arch, size, mode), t in train.items()
        ],
    )
    if fit:
        mem, real = fit["in-memory batch"], fit["`dataset_for` pipeline"]
        report.heading(
            "The train step fed by the pipeline vs by an in-memory batch "
            "(synthetic_faces 64 px, default widths, float32, batch 64)"
        )
        report.table(
            ["input", "ms/step (wall)", "CPU-ms/step"],
            [(name, t.wall / 8 * 1e3, t.cpu / 8 * 1e3) for name, t in fit.items()],
            note=f"Blocks of 8 steps, 3 rounds, interleaved. Pipeline overhead: "
            f"{100 * (real.wall / mem.wall - 1):+.0f} % wall, "
            f"{100 * (real.cpu / mem.cpu - 1):+.0f} % CPU (the pipeline shares the two cores with the step).",
        )

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
    report.table(
        ["pipeline (steady state)", "size", "fastest consumer (its own model)", "ratio (wall)", "ratio (CPU)"],
        ratio_rows,
        note="Ratio (CPU): images the pipeline makes per CPU-second ÷ samples the step trains per CPU-second; "
        "its inverse is the share of the cores the pipeline takes from training.",
    )
    if worst:
        report.target(
            "input pipeline ≥ 5× train consumption (worst `dataset_for` case)",
            f"{worst[1]:.1f}× (CPU), {worst[2]:.1f}× (wall)",
            f"≥ {TARGET_RATIO:.0f}×",
            worst[1] >= TARGET_RATIO,
            worst[0],
        )
    report.finish(args.output)


if __name__ == "__main__":
    main()
