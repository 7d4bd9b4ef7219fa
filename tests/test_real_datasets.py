"""The real-data loaders: CelebA (tfds, mocked), TFD (generated .mat), digits.

Nothing here touches the network: CelebA runs under ``tfds.testing.mock_data``
(random examples with the real feature structure) or against an empty data
directory; TFD reads small files the tests write in TFD's format.
"""

import time

import h5py
import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from keras_csvae import data
from keras_csvae.data import digits as digits_module
from keras_csvae.data import tfd as tfd_module
from keras_csvae.data.registry import DatasetError
from keras_csvae.training.presets import preset

# ---------------------------------------------------------------- helpers


def assert_valid_examples(x, y, input_shape, num_labels, *, one_hot=False):
    """The registry's contract: float32 images in [0, 1], float32 binary labels."""
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == np.float32 and y.dtype == np.float32
    assert x.shape[1:] == tuple(input_shape)
    assert y.shape == (x.shape[0], num_labels)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(y)) <= {0.0, 1.0}
    if one_hot:
        np.testing.assert_array_equal(y.sum(axis=1), 1.0)


def collect(dataset):
    """All ``(x, y)`` of an unbatched ``tf.data.Dataset`` as numpy arrays."""
    pairs = list(dataset.as_numpy_iterator())
    return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])


# ---------------------------------------------------------------- CelebA

NUM_MOCK = 6

# The label rules, restated on the raw attributes (not the loader's code).
EXPECTED_CELEBA_LABELS = {
    "celeba_glasses": lambda a: [a["Eyeglasses"]],
    "celeba_facial_hair": lambda a: [a["Goatee"] or a["Mustache"] or not a["No_Beard"]],
    "celeba_glasses_facial_hair": lambda a: [
        a["Eyeglasses"],
        a["Goatee"] or a["Mustache"] or not a["No_Beard"],
    ],
}


@pytest.fixture
def mock_celeba():
    with tfds.testing.mock_data(num_examples=NUM_MOCK, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def raw_celeba(split, data_dir):
    return list(tfds.as_numpy(tfds.load("celeb_a", split=split, data_dir=data_dir, download=False)))


@pytest.mark.parametrize("name", sorted(EXPECTED_CELEBA_LABELS))
def test_celeba_subset_streams_cropped_images_and_derived_labels(name, mock_celeba, tmp_path):
    stream = data.load(name, "train", data_dir=str(tmp_path))
    info = data.info(name)
    assert info.input_shape == (64, 64, 3)
    assert stream.element_spec[0].shape == (64, 64, 3)
    x, y = collect(stream)
    assert_valid_examples(x, y, info.input_shape, info.num_labels)

    raw = raw_celeba("train", str(tmp_path))
    assert len(raw) == len(x) == NUM_MOCK
    expected = np.array([EXPECTED_CELEBA_LABELS[name](e["attributes"]) for e in raw], np.float32)
    np.testing.assert_array_equal(y, expected)
    # Resizing keeps an image's mean, so each x is the mean of its 148x148 centre crop.
    crop_means = [e["image"][35:183, 15:163].mean() / 255.0 for e in raw]
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), crop_means, atol=0.01)


def test_celeba_is_stored_as_uint8_crops_and_cached_when_small(mock_celeba, tmp_path):
    stored = data.load_stored("celeba_glasses", "train", image_size=32, data_dir=str(tmp_path))
    assert stored.element_spec[0].dtype.name == "uint8"
    assert type(stored).__name__ == "CacheDataset"  # NUM_MOCK 32 px images fit in memory
    images = np.stack([x for x, _ in stored.as_numpy_iterator()])
    x, _ = collect(data.load("celeba_glasses", "train", image_size=32, data_dir=str(tmp_path)))
    np.testing.assert_allclose(x, images / 255.0, atol=1e-7)


@pytest.mark.parametrize("split", ["validation", "test"])
def test_celeba_arrays_take_num_examples_at_size_32(split, mock_celeba, tmp_path):
    x, y = data.load_arrays("celeba_glasses_facial_hair", split, image_size=32, num_examples=4, data_dir=str(tmp_path))
    assert_valid_examples(x, y, (32, 32, 3), 2)
    assert len(x) == 4


def test_celeba_without_data_fails_fast_with_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetError) as error:
        data.load("celeba_glasses", "train", data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert str(tmp_path / "celeb_a" / "2.1.0") in message
    assert "tfds build celeb_a" in message and "download=True" in message
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or created
    with pytest.raises(DatasetError, match="not prepared"):
        data.load_arrays("celeba_facial_hair", "test", data_dir=str(tmp_path))
    # The shapes are known without the data, so models can still be built.
    assert data.info("celeba_facial_hair", data_dir=str(tmp_path)).input_shape == (64, 64, 3)


def test_csvae_train_data_dir_reaches_tfds_and_the_error_names_the_flag(tmp_path, monkeypatch, capsys):
    """``csvae train --data-dir DIR`` reads CelebA from DIR (the path tfds is
    asked for is DIR's); without the data, the one-line error names the flag
    and ``TFDS_DATA_DIR``."""
    from keras_csvae import cli

    asked = []
    load = tfds.load

    def recording_load(name, **kwargs):
        asked.append(kwargs.get("data_dir"))
        return load(name, **kwargs)

    monkeypatch.setattr(tfds, "load", recording_load)
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    start = time.monotonic()
    code = cli.main(
        [
            "train",
            "--dataset",
            "celeba_glasses",
            "--data-dir",
            str(data_dir),
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    error = capsys.readouterr().err
    assert code == 2 and time.monotonic() - start < 60
    assert asked and set(asked) == {str(data_dir)}
    assert error.startswith("csvae train: error: CelebA is not prepared") and error.count("\n") == 1
    assert "csvae train --data-dir DIR" in error and "TFDS_DATA_DIR" in error
    assert str(data_dir / "celeb_a" / "2.1.0") in error
    assert list(data_dir.iterdir()) == []  # nothing downloaded


# ---------------------------------------------------------------- TFD

# Rows of a tiny TFD file: (expression 1..7 or -1, identity, fold-0 split, fold-1 split).
# Fold codes: 1 train, 2 validation, 3 test, 0 none.
TFD_ROWS = [
    (1, 10, 1, 3),
    (4, 10, 1, 3),
    (7, 10, 3, 1),
    (4, 10, 3, 1),
    (2, 11, 1, 1),
    (5, 11, 2, 1),
    (6, 11, 3, 2),
    (6, 11, 3, 2),
    (3, 12, 1, 2),
    (7, 12, 2, 3),
    (1, 12, 3, 1),
    (5, 12, 1, 1),
    (-1, 0, 0, 0),
    (-1, 0, 0, 0),
    (-1, 13, 1, 3),  # unlabelled although in a split: must still be dropped
]


def tfd_arrays(size=48):
    """TFD's variables; image i is constant grey level 10·i, so rows can be traced."""
    n = len(TFD_ROWS)
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None] * 10, size * size).reshape(n, size, size)
    folds = np.zeros((n, 5), np.float64)
    folds[:, 0] = [r[2] for r in TFD_ROWS]
    folds[:, 1] = [r[3] for r in TFD_ROWS]
    return {
        "images": images,
        # MATLAB keeps vectors as columns.
        "labs_ex": np.array([[r[0]] for r in TFD_ROWS], np.float64),
        "labs_id": np.array([[r[1]] for r in TFD_ROWS], np.float64),
        "folds": folds,
    }


def write_tfd(path, **overrides):
    arrays = {**tfd_arrays(), **overrides}
    scipy.io.savemat(path, {k: v for k, v in arrays.items() if v is not None})
    return str(path)


@pytest.fixture
def tfd_file(tmp_path):
    return write_tfd(tmp_path / "TFD_48x48.mat")


def traced_rows(x):
    return np.rint(x.mean(axis=(1, 2, 3)) * 255 / 10).astype(int)


@pytest.mark.parametrize("fold", [0, 1])
@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_tfd_respects_folds_and_drops_unlabelled(split, fold, tfd_file):
    x, y = data.load_arrays("tfd", split, path=tfd_file, fold=fold)
    assert_valid_examples(x, y, (48, 48, 1), 7, one_hot=True)
    code = {"train": 1, "validation": 2, "test": 3}[split]
    expected = [i for i, r in enumerate(TFD_ROWS) if r[0] != -1 and r[2 + fold] == code]
    np.testing.assert_array_equal(traced_rows(x), expected)
    np.testing.assert_array_equal(y.argmax(axis=1), [TFD_ROWS[i][0] - 1 for i in expected])


@pytest.mark.parametrize("image_size", [32, 64])
def test_tfd_resizes_and_streams(image_size, tfd_file):
    stream = data.load("tfd", "train", path=tfd_file, image_size=image_size)
    x, y = collect(stream)
    assert data.info("tfd", image_size=image_size).input_shape == (image_size, image_size, 1)
    assert_valid_examples(x, y, (image_size, image_size, 1), 7, one_hot=True)


def test_tfd_identity_pairs_are_same_person_with_different_expressions(tfd_file):
    split = tfd_module.tfd_identity_pairs(tfd_file, "test", fold=0)
    x, y = data.load_arrays("tfd", "test", path=tfd_file, fold=0)
    np.testing.assert_array_equal(split.x, x)
    np.testing.assert_array_equal(split.y, y)
    rows = traced_rows(x)
    np.testing.assert_array_equal(split.identity, [TFD_ROWS[i][1] for i in rows])
    expression = y.argmax(axis=1)
    expected = sorted(
        (i, j)
        for i in range(len(x))
        for j in range(len(x))
        if split.identity[i] == split.identity[j] and expression[i] != expression[j]
    )
    assert expected  # the file has such pairs (identities 10 and 12)
    assert [tuple(p) for p in split.pairs] == expected


def test_tfd_reads_matlab_v73_hdf5(tmp_path, tfd_file):
    path = tmp_path / "TFD_v73.mat"
    with h5py.File(path, "w") as f:
        for key, value in tfd_arrays().items():
            f[key] = value.T  # MATLAB v7.3 writes column-major
    np.testing.assert_array_equal(
        data.load_arrays("tfd", "train", path=str(path))[0], data.load_arrays("tfd", "train", path=tfd_file)[0]
    )


def _corrupt(tmp_path):
    path = tmp_path / "corrupt.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 4)
    return str(path)


def _truncated(tmp_path):
    good = write_tfd(tmp_path / "good.mat")
    path = tmp_path / "truncated.mat"
    path.write_bytes(open(good, "rb").read()[:2000])
    return str(path)


@pytest.mark.parametrize(
    "make_path, options, message",
    [
        (lambda tmp: None, {}, "needs option path"),
        (lambda tmp: str(tmp / "absent.mat"), {}, "does not exist"),
        (_corrupt, {}, "Cannot read TFD file"),
        (_truncated, {}, "Cannot read TFD file"),
        (lambda tmp: write_tfd(tmp / "no_folds.mat", folds=None), {}, r"lacks \['folds'\]"),
        (lambda tmp: write_tfd(tmp / "flat.mat", images=np.zeros((15, 2304), np.uint8)), {}, "images must be"),
        (lambda tmp: write_tfd(tmp / "short.mat", folds=np.ones((3, 5))), {}, "folds must have shape"),
        (lambda tmp: write_tfd(tmp / "labels.mat", labs_ex=np.full((15, 1), 9.0)), {}, "labs_ex must be"),
        (lambda tmp: write_tfd(tmp / "ok.mat"), {"fold": 5}, "fold must be an integer in 0..4"),
    ],
    ids=[
        "no-path",
        "missing-file",
        "corrupt",
        "truncated",
        "missing-key",
        "wrong-shape",
        "wrong-rows",
        "bad-label",
        "bad-fold",
    ],
)
def test_tfd_bad_input_raises_clear_errors(make_path, options, message, tmp_path):
    path = make_path(tmp_path)
    with pytest.raises(DatasetError, match=message):
        data.load_arrays("tfd", "train", **({"path": path} if path else {}), **options)


# ---------------------------------------------------------------- digits


def test_digits_one_hot_images_in_unit_range():
    info = data.info("digits")
    assert info.input_shape == (16, 16, 1) and info.label_names[0] == "digit_0"
    sizes = {}
    for split in ("train", "validation", "test"):
        x, y = data.load_arrays("digits", split)
        assert_valid_examples(x, y, info.input_shape, 10, one_hot=True)
        assert x.max() == pytest.approx(1.0)
        sizes[split] = len(x)
    assert sizes == {"train": 1257, "validation": 270, "test": 270}


def test_digits_splits_disjoint_stratified_deterministic():
    from sklearn.datasets import load_digits

    raw = load_digits()
    rows = digits_module.split_indices()
    union = np.concatenate(list(rows.values()))
    assert len(union) == len(set(union.tolist())) == len(raw.target)
    for split, index in rows.items():
        x, y = data.load_arrays("digits", split, image_size=8)
        np.testing.assert_array_equal(x[..., 0] * 16, raw.images[index])
        np.testing.assert_array_equal(y.argmax(axis=1), raw.target[index])
        share = np.bincount(raw.target[index], minlength=10) / np.bincount(raw.target, minlength=10)
        np.testing.assert_allclose(share, len(index) / len(raw.target), atol=0.02)
        again = data.load_arrays("digits", split, image_size=8)
        np.testing.assert_array_equal(again[0], x)


def test_digits_upsampling_keeps_the_image():
    small, _ = data.load_arrays("digits", "test", image_size=8)
    large, _ = data.load_arrays("digits", "test", image_size=16)
    np.testing.assert_allclose(large.mean(axis=(1, 2, 3)), small.mean(axis=(1, 2, 3)), atol=0.02)


# ---------------------------------------------------------------- shared option checks

REAL_DATASETS = {
    "celeba_glasses": [32, 64],
    "celeba_facial_hair": [32, 64],
    "celeba_glasses_facial_hair": [32, 64],
    "tfd": [32, 48, 64],
    "digits": [8, 16, 32],
}


@pytest.mark.parametrize("name", sorted(REAL_DATASETS))
def test_wrong_image_size_names_the_allowed_sizes(name):
    allowed = REAL_DATASETS[name]
    with pytest.raises(DatasetError, match=f"image_size=40.*{allowed}".replace("[", r"\[").replace("]", r"\]")):
        data.info(name, image_size=40)
    for size in allowed:
        assert data.info(name, image_size=size).input_shape[:2] == (size, size)


@pytest.mark.parametrize("name", sorted(REAL_DATASETS))
def test_preset_fits_the_conv_model(name):
    defaults = preset(name)
    model = defaults.model
    assert defaults.epochs > 0 and defaults.batch_size > 0
    assert model["architecture"] == "conv" and model["w_dim"] == 2
    assert len(model["conv_filters"]) == len(model["decoder_filters"]) == 3
    height = data.info(name).input_shape[0]
    assert height % 2 ** len(model["conv_filters"]) == 0


def test_unknown_option_is_rejected():
    with pytest.raises(DatasetError, match="does not take"):
        data.info("digits", data_dir="/tmp")
