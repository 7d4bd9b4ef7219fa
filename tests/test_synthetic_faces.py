"""The ``synthetic_faces`` renderer, its tfds builder, registry entry and preview."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_csvae import data
from keras_csvae.data import synthetic_faces as sf
from keras_csvae.data.synthetic_faces import ATTRIBUTES, STYLES, SyntheticFaces
from keras_csvae.training.presets import preset

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = (32, 64)
N = 48  # faces per renderer check: every style appears several times


def _digest(images: np.ndarray, factors: dict) -> str:
    """sha256 of the image bytes and of every factor array."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    for name in sorted(factors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(factors[name]).tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s}px")
def rendered(request):
    """``(renderer, factors, images, masks)`` for ``N`` faces at one size."""
    renderer = SyntheticFaces(request.param)
    factors = renderer.sample_factors(N, seed=7)
    images, masks = renderer.render(factors, return_masks=True)
    return renderer, factors, images, masks


def _faces(factors: dict, where: np.ndarray) -> dict:
    return sf.slice_factors(factors, np.flatnonzero(where))


def _aligned_features(images: np.ndarray, masks: np.ndarray, grid=(12, 12)):
    """float ``[n, grid_h * grid_w * 4]``: each image's colours and edge
    strength at a grid of points spread over the bounding box of its mask
    (nearest pixel). The mask depends on nuisance factors only, so this
    aligns the attribute region without looking at the labels; edges make
    shapes visible to a linear model whatever their colour."""
    pixels = images.astype(np.float64) / 255.0
    edges = np.zeros(pixels.shape[:3])
    edges[:, :, :-1] += np.abs(np.diff(pixels, axis=2)).max(axis=-1)
    edges[:, :-1, :] += np.abs(np.diff(pixels, axis=1)).max(axis=-1)
    fractions = [(np.arange(k) + 0.5) / k for k in grid]
    features = []
    for i in range(len(images)):
        rows, cols = np.nonzero(masks[i])
        r = np.round(rows.min() + fractions[0] * (rows.max() - rows.min())).astype(int)
        c = np.round(cols.min() + fractions[1] * (cols.max() - cols.min())).astype(int)
        features.append(np.concatenate([pixels[i][np.ix_(r, c)].ravel(), edges[i][np.ix_(r, c)].ravel()]))
    return np.array(features)


# ------------------------------------------------------------- determinism


def test_same_seed_same_bytes_in_another_process():
    seed, n = 123, 24
    renderer = SyntheticFaces(32)
    images, _, factors = renderer.sample(n, seed)
    # The child renders in chunks of 5: the output must not depend on it.
    script = (
        "from keras_csvae.data.synthetic_faces import SyntheticFaces\n"
        "import sys; sys.path.insert(0, 'tests')\n"
        "from test_synthetic_faces import _digest\n"
        f"images, _, factors = SyntheticFaces(32, chunk_size=5).sample({n}, {seed})\n"
        "print(_digest(images, factors))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONHASHSEED": "1"},
    )
    assert child.stdout.strip().splitlines()[-1] == _digest(images, factors)
    other_images, _, _ = renderer.sample(n, seed + 1)
    assert not np.array_equal(images, other_images)


def test_first_faces_do_not_depend_on_n_or_chunking(rendered):
    renderer, factors, images, _ = rendered
    fewer = renderer.sample_factors(N // 3, seed=7)
    for name in factors:
        np.testing.assert_array_equal(fewer[name], factors[name][: N // 3])
    rechunked = SyntheticFaces(renderer.image_size, chunk_size=5)
    np.testing.assert_array_equal(rechunked.render(factors), images)


def test_windows_and_mask_clipping_change_no_pixel(rendered):
    """Painting only in bounding windows, and clipping each attribute to its
    mask, are invisible: the windows and the masks bound every shape."""
    renderer, factors, images, _ = rendered
    unoptimised = SyntheticFaces(renderer.image_size)
    unoptimised._use_windows = False
    unoptimised._clip_to_masks = False
    np.testing.assert_array_equal(unoptimised.render(factors), images)


# ---------------------------------------------------------- counterfactuals


def _edits(factors):
    """Every (attribute, faces, value, style) edit: on->off, and off->on and
    on->on into every style."""
    for attribute in ATTRIBUTES:
        on = factors[attribute] == 1
        yield attribute, on, 0, None
        for style in range(len(STYLES[attribute])):
            yield attribute, ~on, 1, style
            yield attribute, on & (factors[f"{attribute}_style"] != style), 1, style


def test_counterfactual_changes_only_pixels_inside_the_mask(rendered):
    renderer, factors, images, masks = rendered
    for attribute, faces, value, style in _edits(factors):
        index = np.flatnonzero(faces)
        assert len(index) > 0, (attribute, value, style)
        edited, new_factors = renderer.counterfactual(_faces(factors, faces), attribute, value, style)
        _, new_masks = renderer.render(new_factors, return_masks=True)
        mask = masks[attribute][index]
        # The mask depends on nuisance factors only, not on the edit.
        np.testing.assert_array_equal(new_masks[attribute], mask)
        outside = ~mask
        np.testing.assert_array_equal(edited[outside], images[index][outside])
        changed = np.any(edited != images[index], axis=(1, 2, 3))
        assert changed.all(), (attribute, value, style, index[~changed])
        assert np.all(SyntheticFaces.style_of(new_factors, attribute) == (-1 if value == 0 else style))


def test_switching_on_and_off_again_restores_the_face(rendered):
    renderer, factors, images, _ = rendered
    for attribute in ATTRIBUTES:
        off = factors[attribute] == 0
        _, switched = renderer.counterfactual(factors, attribute, 1, style=1)
        restored, _ = renderer.counterfactual(switched, attribute, 0)
        np.testing.assert_array_equal(restored[off], images[off])


def test_default_style_is_the_sampled_one(rendered):
    renderer, factors, images, _ = rendered
    for attribute in ATTRIBUTES:
        on = factors[attribute] == 1
        _, off_factors = renderer.counterfactual(factors, attribute, 0)
        back, back_factors = renderer.counterfactual(off_factors, attribute, 1)
        np.testing.assert_array_equal(back_factors[f"{attribute}_style"][on], factors[f"{attribute}_style"][on])
        np.testing.assert_array_equal(back[on], images[on])


# ----------------------------------------------------- attributes and styles


def test_every_style_renders_a_distinct_image(rendered):
    """For every face, the attribute off and each of its styles differ in a
    few clearly changed pixels (a channel moves by > 40 / 255)."""
    renderer, factors, images, _ = rendered
    min_pixels = 3 * (renderer.image_size // 32) ** 2
    for attribute in ATTRIBUTES:
        off = factors[attribute] == 0
        variants = [images[off]] + [
            renderer.counterfactual(_faces(factors, off), attribute, 1, style)[0]
            for style in range(len(STYLES[attribute]))
        ]
        for i in range(len(variants)):
            for j in range(i):
                change = np.abs(variants[i].astype(int) - variants[j]).max(axis=-1)
                changed_pixels = (change > 40).sum(axis=(1, 2))
                assert changed_pixels.min() >= min_pixels, (attribute, i - 1, j - 1)


def test_labels_and_styles_are_readable_from_pixels():
    """A linear classifier on aligned pixels recovers every label and style
    of held-out faces at 32 px (a small CNN does better): the renderer
    cannot be ignoring them."""
    from sklearn.linear_model import RidgeClassifier

    renderer = SyntheticFaces(32)
    train_test = []
    for seed in (1, 2):
        factors = renderer.sample_factors(300, seed)
        images, masks = renderer.render(factors, return_masks=True)
        train_test.append((factors, images, masks))
    (train_factors, train_images, train_masks), (test_factors, test_images, test_masks) = train_test
    for attribute in ATTRIBUTES:
        train = _aligned_features(train_images, train_masks[attribute])
        test = _aligned_features(test_images, test_masks[attribute])
        for target in (attribute, f"{attribute}_style"):
            probe = RidgeClassifier(alpha=1.0).fit(train, train_factors[target])
            accuracy = probe.score(test, test_factors[target])
            assert accuracy > 0.9, (target, accuracy)
        # The same probe fitted to shuffled labels is at chance: it is the
        # pixels that carry the label, not the probe's capacity.
        shuffled = np.random.default_rng(0).permutation(train_factors[attribute])
        chance = RidgeClassifier(alpha=1.0).fit(train, shuffled)
        assert chance.score(test, test_factors[attribute]) < 0.65


def test_labels_are_independent_and_balanced():
    factors = SyntheticFaces(32).sample_factors(4000, seed=3)
    labels = SyntheticFaces.labels(factors)
    assert labels.shape == (4000, len(ATTRIBUTES)) and labels.dtype == np.int32
    np.testing.assert_allclose(labels.mean(0), 0.5, atol=0.03)
    correlation = np.corrcoef(
        np.column_stack([labels, factors["skin_tone"], factors["hair_style"], factors["face_size"]]).T
    )
    off_diagonal = correlation - np.eye(len(correlation))
    assert np.abs(off_diagonal).max() < 0.06
    for attribute in ATTRIBUTES:
        styles = SyntheticFaces.style_of(factors, attribute)
        assert np.all((styles == -1) == (factors[attribute] == 0))
        counts = np.bincount(styles[styles >= 0], minlength=len(STYLES[attribute]))
        assert counts.min() > 0.8 * counts.sum() / len(counts)  # ~uniform


def test_api_and_errors():
    renderer = SyntheticFaces(32, attribute_probs=(1.0, 0.0, 0.5))
    images, labels, factors = renderer.sample(8, seed=0)
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
    assert set(factors) == set(renderer.factor_names)
    assert set(renderer.nuisance_names) < set(renderer.factor_names)
    assert labels[:, 0].all() and not labels[:, 1].any()
    assert renderer.attributes == ATTRIBUTES and renderer.styles == STYLES
    assert SyntheticFaces.style_id("smile", "grin") == STYLES["smile"].index("grin")
    with pytest.raises(data.DatasetError, match="32 or 64"):
        SyntheticFaces(48)
    with pytest.raises(ValueError, match="attribute"):
        renderer.counterfactual(factors, "hat", 1)
    with pytest.raises(ValueError, match="styles are"):
        renderer.counterfactual(factors, "glasses", 1, style=3)
    with pytest.raises(ValueError, match="Unknown smile style"):
        renderer.counterfactual(factors, "smile", 1, style="frown")
    with pytest.raises(KeyError, match="lack"):
        renderer.render({"face_x": factors["face_x"]})


# ----------------------------------------------------- registry, tfds, preview


def test_registry_load_gives_float_images_and_labels():
    dataset = data.load("synthetic_faces", split="train", image_size=32, num_examples=16)
    image_spec, label_spec = dataset.element_spec
    assert image_spec.shape == (32, 32, 3) and image_spec.dtype.name == "float32"
    assert label_spec.shape == (3,) and label_spec.dtype.name == "float32"
    assert int(dataset.cardinality()) == 16
    pairs = list(dataset.as_numpy_iterator())
    x = np.stack([p[0] for p in pairs])
    y = np.stack([p[1] for p in pairs])
    assert x.min() >= 0.0 and x.max() <= 1.0 and len(np.unique(y)) == 2
    arrays_x, arrays_y = data.load_arrays("synthetic_faces", split="train", image_size=32, num_examples=16)
    np.testing.assert_array_equal(x, arrays_x)
    np.testing.assert_array_equal(y, arrays_y)
    images, labels, _ = SyntheticFaces(32).sample(16, sf.SPLIT_SEEDS["train"])
    np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(y, labels)
    info = data.info("synthetic_faces", image_size=32)
    assert info.input_shape == (32, 32, 3)
    assert info.label_names == ("glasses", "smile", "facial_hair")
    assert preset("synthetic_faces").model["architecture"] == "conv"
    # Splits differ.
    val_x, _ = data.load_arrays("synthetic_faces", split="validation", image_size=32, num_examples=16)
    assert not np.array_equal(val_x, arrays_x)


@pytest.mark.parametrize("call", ["info", "load", "load_arrays"])
def test_registry_rejects_bad_options(call):
    with pytest.raises(data.DatasetError, match="32 or 64 px"):
        getattr(data, call)("synthetic_faces", image_size=48)
    with pytest.raises(data.DatasetError, match="num_examples"):
        data.load_arrays("synthetic_faces", num_examples=0)


def test_tfds_builder_round_trip(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from keras_csvae.data.synthetic_faces_tfds import SyntheticFacesBuilder

    sizes = {"train": 6, "validation": 3, "test": 3}
    monkeypatch.setattr(SyntheticFacesBuilder, "SPLIT_SIZES", sizes)
    splits = tfds.load("synthetic_faces/32", data_dir=str(tmp_path))
    renderer = SyntheticFaces(32)
    for split, n in sizes.items():
        examples = list(tfds.as_numpy(splits[split]))
        assert len(examples) == n
        images, labels, factors = renderer.sample(n, sf.SPLIT_SEEDS[split])
        for i, example in enumerate(examples):
            np.testing.assert_array_equal(example["image"], images[i])
            for j, attribute in enumerate(ATTRIBUTES):
                assert example["labels"][attribute] == bool(labels[i, j])
                assert example["styles"][attribute] == factors[f"{attribute}_style"][i]
            for name, value in example["factors"].items():
                np.testing.assert_allclose(value, factors[name][i], rtol=1e-6)
    builder = tfds.builder("synthetic_faces/32", data_dir=str(tmp_path))
    assert builder.info.splits["train"].num_examples == sizes["train"]
    assert builder.info.features["image"].shape == (32, 32, 3)


def test_preview_grid_writes_a_small_png(tmp_path):
    from PIL import Image

    from keras_csvae.data.preview import preview_grid

    path = preview_grid(str(tmp_path / "preview.png"), image_size=32, n=8, seed=0)
    with Image.open(path) as image:
        assert image.size[0] > 500 and image.size[1] > 500
    assert (tmp_path / "preview.png").stat().st_size < 300_000
