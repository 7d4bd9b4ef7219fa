"""CelebA, as the paper's three attribute subsets, read through tensorflow-datasets.

Registered datasets (all three share the images; only the labels differ):

- ``celeba_glasses``: ``y = [eyeglasses]``
- ``celeba_facial_hair``: ``y = [facial_hair]``
- ``celeba_glasses_facial_hair``: ``y = [eyeglasses, facial_hair]``

Label rules, from CelebA's 40 boolean attributes:

- ``eyeglasses = Eyeglasses``
- ``facial_hair = Goatee or Mustache or not No_Beard``. CelebA has no "beard"
  attribute, only its negation ``No_Beard``; goatees and moustaches are
  listed separately because annotators did not always clear ``No_Beard`` for
  them. ``5_o_Clock_Shadow`` (stubble) and ``Sideburns`` do not count: they
  are barely visible at 64x64 and would blur the label.

Every image of the split is used: the subsets are label sets, not filters.

Each example is ``(x, y)``:

- ``x``: float32 ``[S, S, 3]`` in [0, 1], ``S = image_size`` (64, the paper's
  size, or 32). The aligned 218x178 image is cropped to its central 148x148
  square (rows 35-182, columns 15-162: the usual face crop, which drops most
  background) and resized bilinearly with antialiasing. 64 and 32 are both
  divisible by 8, as the conv model's three stride-2 convolutions need.
- ``y``: float32 ``[k]`` in {0, 1}.

Splits: tfds's ``train`` (162,770 images), ``validation`` (19,867) and
``test`` (19,962), which are CelebA's official partition.

Options: ``image_size`` (64 or 32), ``data_dir`` (tfds data directory, ``csvae
train --data-dir``; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``), ``num_examples`` (first n
examples of the split). ``load`` streams the split without holding it in
memory; ``load_arrays`` holds it, so it reads at most ``num_examples``
(default 5,000, about 245 MB at 64x64).

Where the data must live: the *prepared* tfds dataset, i.e.
``<data_dir>/celeb_a/2.1.0/`` (``dataset_info.json`` plus
``celeb_a-{train,validation,test}.tfrecord-*``). Loading never downloads:
an unprepared ``celeb_a`` with ``download=True`` retries Google Drive
forever. Prepare it once with internet access::

    tfds build celeb_a --data_dir DATA_DIR

or, when Google Drive refuses (quota), download ``img_align_celeba.zip``,
``list_eval_partition.txt``, ``list_attr_celeba.txt``,
``list_landmarks_align_celeba.txt`` and ``identity_CelebA.txt`` from the
CelebA site into ``DATA_DIR/downloads/manual/`` and run the same command.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from keras_csvae.data._images import check_image_size, check_positive_int, resize
from keras_csvae.data.registry import Dataset, DatasetError, DatasetInfo, as_float_images, register_dataset

TFDS_NAME = "celeb_a"
IMAGE_SIZES = (32, 64)
DEFAULT_IMAGE_SIZE = 64
CROP_SIZE = 148
ARRAYS_DEFAULT_NUM_EXAMPLES = 5000
CACHE_BYTES = 1 << 30  # splits whose uint8 images fit (train: 32 px 0.5 GB yes, 64 px 2 GB no) are cached
OPTIONS = ("image_size", "data_dir", "num_examples")

# Registered name -> label names (the order of y).
SUBSETS = {
    "celeba_glasses": ("eyeglasses",),
    "celeba_facial_hair": ("facial_hair",),
    "celeba_glasses_facial_hair": ("eyeglasses", "facial_hair"),
}


def _eyeglasses(attributes):
    return attributes["Eyeglasses"]


def _facial_hair(attributes):
    import tensorflow as tf

    return tf.logical_or(
        tf.logical_or(attributes["Goatee"], attributes["Mustache"]),
        tf.logical_not(attributes["No_Beard"]),
    )


_LABEL_RULES = {"eyeglasses": _eyeglasses, "facial_hair": _facial_hair}


def _missing_data_message(data_dir, error: BaseException) -> str:
    import tensorflow_datasets as tfds

    # The builder only computes paths here; it touches neither disk nor network.
    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    version_dir = os.fspath(builder.data_dir)
    root = os.path.dirname(os.path.dirname(version_dir))
    return (
        f"CelebA is not prepared in {root!r}: tensorflow-datasets expects the prepared files "
        f"(dataset_info.json and celeb_a-<split>.tfrecord-*) in {version_dir!r} "
        f"(celeb_a/{builder.version}). Nothing was downloaded: loading uses download=False because "
        f"an unprepared celeb_a retries its Google Drive downloads forever. To prepare it, on a "
        f"machine with internet run `tfds build celeb_a --data_dir {root}` (or "
        f"tfds.load('celeb_a', data_dir=..., download=True)) and copy its celeb_a/{builder.version} "
        f"folder here; if Google Drive refuses (quota), download img_align_celeba.zip, "
        f"list_eval_partition.txt, list_attr_celeba.txt, list_landmarks_align_celeba.txt and "
        f"identity_CelebA.txt from the CelebA site into {os.path.join(root, 'downloads', 'manual')!r} "
        f"and run the same command. To read it from another directory, pass `csvae train --data-dir DIR` "
        f"or set the TFDS_DATA_DIR environment variable (Python: data_dir=DIR). (tfds said: {error})"
    )


def _load_split(split: str, data_dir):
    """The raw tfds split: dicts with ``image`` (the JPEG bytes of a 218×178
    face, left undecoded: ``_crop_and_resize`` decodes what it needs) and
    ``attributes``."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(
            TFDS_NAME,
            split=split,
            data_dir=data_dir,
            download=False,
            shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except (AssertionError, FileNotFoundError) as error:
        # tfds reports "could not find data" with a bare assert.
        raise DatasetError(_missing_data_message(data_dir, error)) from error


def _crop_and_resize(jpeg, image_size: int):
    """JPEG bytes of a face -> uint8 ``[S, S, 3]``: the central ``CROP_SIZE``
    square, resized to ``S`` (antialiased bilinear), rounded to grey levels.

    Only the crop is decoded (``decode_and_crop_jpeg``): decoding is most of
    the input pipeline's cost. uint8 is the registry's stored form, a quarter
    of float32's memory in the cache and shuffle buffer.
    """
    import tensorflow as tf

    shape = tf.io.extract_jpeg_shape(jpeg)
    window = tf.stack([(shape[0] - CROP_SIZE) // 2, (shape[1] - CROP_SIZE) // 2, CROP_SIZE, CROP_SIZE])
    image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
    image = resize(tf.cast(image, tf.float32) / 255.0, image_size)
    return tf.cast(tf.round(image * 255.0), tf.uint8)


def _labels(attributes, label_names):
    import tensorflow as tf

    return tf.cast(tf.stack([_LABEL_RULES[name](attributes) for name in label_names]), tf.float32)


def _validated(name, image_size, num_examples):
    image_size = check_image_size(name, image_size, IMAGE_SIZES)
    if num_examples is not None:
        num_examples = check_positive_int(name, "num_examples", num_examples)
    return image_size, num_examples


def _info(*, name, label_names, image_size=DEFAULT_IMAGE_SIZE, data_dir=None, num_examples=None):
    image_size, _ = _validated(name, image_size, num_examples)
    return DatasetInfo(
        name=name,
        input_shape=(image_size, image_size, 3),
        label_names=label_names,
        description=f"CelebA faces {image_size}x{image_size} (tfds celeb_a), labels: {', '.join(label_names)}",
    )


def _tf_data(split, *, name, label_names, image_size=DEFAULT_IMAGE_SIZE, data_dir=None, num_examples=None):
    import tensorflow as tf

    image_size, num_examples = _validated(name, image_size, num_examples)
    examples = _load_split(split, data_dir)
    if num_examples is not None:
        # take() rather than a "train[:n]" split: it also applies under tfds's mock_data.
        examples = examples.take(num_examples)
    examples = examples.map(
        lambda example: (
            _crop_and_resize(example["image"], image_size),
            _labels(example["attributes"], label_names),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    count = int(examples.cardinality())
    if 0 <= count * image_size * image_size * 3 <= CACHE_BYTES:
        # Decoding and resizing cost more than a 32 px train step consumes:
        # decode once, then serve later epochs from memory.
        examples = examples.cache()
    return examples


def _arrays(
    split,
    *,
    name,
    label_names,
    image_size=DEFAULT_IMAGE_SIZE,
    data_dir=None,
    num_examples=ARRAYS_DEFAULT_NUM_EXAMPLES,
):
    examples = _tf_data(
        split, name=name, label_names=label_names, image_size=image_size, data_dir=data_dir, num_examples=num_examples
    )
    xs, ys = [], []
    for x, y in examples.batch(256).map(as_float_images).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0, image_size, image_size, 3), np.float32), np.zeros((0, len(label_names)), np.float32)
    return np.concatenate(xs), np.concatenate(ys)


def _register():
    for name, label_names in SUBSETS.items():
        subset = {"name": name, "label_names": label_names}
        register_dataset(
            name,
            Dataset(
                info_fn=functools.partial(_info, **subset),
                arrays_fn=functools.partial(_arrays, **subset),
                tf_data_fn=functools.partial(_tf_data, **subset),
                options=OPTIONS,
            ),
        )


_register()
