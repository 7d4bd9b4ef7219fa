"""The edge editor (``serving.edge``, ``csvae edit``): onnxruntime, numpy and
Pillow only, checked against the Keras model and the SavedModel it was exported from.

Uses the export of ``test_serving.shared_export`` (a tiny 16x16x3 CSVAE with
labels glasses/smile/facial_hair), built once per test session.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_serving import BLOCKER, SIZE, _tiny_model, decode_pngs, images, png_of, shared_export

from serving import edge
from serving.runtime.contract import ContractError, style_grid
from serving.runtime.images import EXIF_ORIENTATION, ImageError, decode_image, encode_png


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory)


@pytest.fixture(scope="module")
def model():
    """The Keras model of SavedModel version 1 / the ONNX files (same seed, same weights)."""
    return _tiny_model(0)


@pytest.fixture(scope="module")
def editor(export_dir):
    return edge.Editor(export_dir)


def test_edit_matches_the_keras_model_and_the_savedmodel(editor, model, export_dir):
    import tensorflow as tf

    x, _ = images(3, seed=20)
    pngs = [png_of(p) for p in x]
    pixels = np.stack([decode_image(p, (SIZE, SIZE, 3)) for p in pngs])
    labels = {"glasses": 1, "facial_hair": 1}
    y = np.array([[1, 0, 1]] * 3, np.float32)
    source = np.zeros_like(y)  # by default a label set to 1 was 0; smile, not given, is 0 and kept
    expected = model.manipulate(pixels, y, y=source)
    edited = np.stack([editor.edit(p, labels) for p in pixels])  # arrays in, arrays out
    np.testing.assert_allclose(edited, expected, atol=1e-5)
    as_png = decode_pngs([editor.edit(p, labels) for p in pngs])  # bytes in, PNG out
    loaded = tf.saved_model.load(str(export_dir / "savedmodel" / "csvae" / "1"))
    savedmodel = loaded.signatures["manipulate_image"](
        image_bytes=tf.constant(np.array(pngs, object)), y=tf.constant(source), y_target=tf.constant(y)
    )
    assert np.abs(as_png - decode_pngs(savedmodel["edited_image_bytes"].numpy())).max() <= 1
    # a batch, and a uint8 picture of another size (resized like the SavedModel does)
    np.testing.assert_allclose(editor.edit(pixels, labels), edited, atol=1e-6)
    big = np.random.default_rng(21).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    resized = tf.image.resize(big[None] / 255, [SIZE, SIZE], antialias=True).numpy().astype(np.float32)
    np.testing.assert_allclose(
        editor.edit(big, {"smile": 1}), model.manipulate(resized, [[0, 1, 0]], y=[[0, 0, 0]])[0], atol=1e-5
    )


def test_a_broken_edit_strength_in_the_metadata_is_a_clear_error(export_dir, tmp_path):
    assert edge.Editor(export_dir).edit_strength == (1.25, 1.0, 1.5)  # _tiny_model's, from metadata.json
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    for bad, message in (
        (-2, "edit_strength must be a finite number > 0"),
        ([1.25, 0, 1], "edit_strength must be a finite number > 0"),
        ([1.25, 1.0], "edit_strength has 2 values; expected 3, one per label"),
    ):
        metadata["model"]["edit_strength"] = bad
        (copy / "metadata.json").write_text(json.dumps(metadata))
        with pytest.raises(ContractError, match=message):
            edge.Editor(copy)
    del metadata["model"]["edit_strength"]  # an export made before the field: the prior's mean
    (copy / "metadata.json").write_text(json.dumps(metadata))
    assert edge.Editor(copy).edit_strength == 1.0


def test_decode_image_matches_tensorflow():
    import tensorflow as tf

    rng = np.random.default_rng(22)
    for shape, channels in [((40, 30, 3), 3), ((16, 16, 4), 3), ((9, 21, 1), 3), ((30, 30, 3), 1)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        png = encode_png(pixels / 255.0)
        ours = decode_image(png, (SIZE, SIZE, channels))
        image = tf.io.decode_png(png, channels=channels if channels != 1 else 3)
        if channels == 1:  # ITU-R 601 luma, as Pillow's "L"
            image = tf.cast(
                tf.round(tf.reduce_sum(tf.cast(image, tf.float32) * [0.299, 0.587, 0.114], -1, keepdims=True)), tf.uint8
            )
        theirs = tf.image.resize(tf.cast(image, tf.float32)[None] / 255, [SIZE, SIZE], antialias=True).numpy()[0]
        assert ours.shape == (SIZE, SIZE, channels) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-5 if channels != 1 else 2 / 255)


def test_styles_are_points_of_the_label_subspace(editor, model, export_dir):
    x, _ = images(1, seed=23)
    grid = style_grid(editor.prior, editor.w_dim)
    np.testing.assert_allclose(grid, model.subspace_grid("glasses", n=3, extent=2.0), atol=1e-6)
    for k in (0, 4, 8):
        edited = editor.edit(x[0], {"glasses": 1}, style=k)
        # glasses at the style point, the other subspaces at their posterior means
        expected = model.manipulate(x, [[1, 0, 0]], y=[[0, 0, 0]], w_points={"glasses": grid[k]})[0]
        np.testing.assert_allclose(edited, expected, atol=1e-5)
    assert np.abs(editor.edit(x[0], {"glasses": 1}, style=0) - editor.edit(x[0], {"glasses": 1}, style=8)).max() > 1e-4
    mosaic = editor.grid(x[0], {"glasses": 1})
    gap = edge.GRID_GAP
    assert mosaic.shape == (3 * SIZE + 2 * gap, 3 * SIZE + 2 * gap, 3)
    tile = mosaic[SIZE + gap : 2 * SIZE + gap, 2 * (SIZE + gap) : 3 * SIZE + 2 * gap]  # row 1, column 2: K = 5
    np.testing.assert_allclose(tile, editor.edit(x[0], {"glasses": 1}, style=5), atol=1e-6)


def test_source_labels_are_kept_and_switched(editor, model):
    x, _ = images(2, seed=27)
    # The picture smiles: smile is kept (its posterior w under smile = 1), glasses switched on.
    edited = editor.edit(x, {"glasses": 1}, source={"smile": 1})
    np.testing.assert_allclose(edited, model.manipulate(x, [[1, 1, 0]], y=[[0, 1, 0]]), atol=1e-5)
    # Setting a label to 0 assumes the picture had it.
    np.testing.assert_array_equal(editor.source_labels({"facial_hair": 0}), [0, 0, 1])
    np.testing.assert_array_equal(editor.target({"facial_hair": 0}, {"smile": 1}), [0, 1, 0])
    with pytest.raises(edge.EditError, match="unknown label 'hat'"):
        editor.edit(x, {"glasses": 1}, source={"hat": 1})


@pytest.mark.parametrize(
    "labels, style, message",
    [
        ({"hat": 1}, None, "unknown label 'hat'; this model's labels are: glasses, smile, facial_hair"),
        ({"glasses": 2}, None, "must be 0 (absent) or 1 (present)"),
        ({"glasses": "yes"}, None, "glasses='yes'"),
        ({"glasses": True}, None, "must be 0"),
        ({"smile": 1}, 9, "--style must be an integer from 0 to 8"),
        ({"smile": 0}, 3, "set at least one label to 1"),
    ],
)
def test_user_errors_name_the_labels(editor, labels, style, message):
    x, _ = images(1, seed=24)
    with pytest.raises(edge.EditError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        editor.edit(x[0], labels, style=style)
    assert "glasses" in str(error.value) or style is not None


def test_unreadable_inputs_and_incomplete_exports(editor, export_dir, tmp_path):
    with pytest.raises(ImageError, match="not a PNG/JPEG/GIF/BMP picture"):
        editor.edit(b"hello", {"glasses": 1})
    with pytest.raises(edge.EditError, match="cannot read"):
        editor.edit(tmp_path / "missing.png", {"glasses": 1})
    with pytest.raises(edge.EditError, match=r"must be \[H, W, 3\]"):
        editor.edit(np.zeros((16, 16)), {"glasses": 1})
    with pytest.raises(ContractError, match="metadata.json is missing"):
        edge.Editor(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(export_dir, partial, ignore=shutil.ignore_patterns("savedmodel", "edit_at.onnx"))
    x, _ = images(1, seed=25)
    assert partial_editor_works(partial, x[0])
    with pytest.raises(edge.EditError, match="edit_at.onnx is missing"):
        edge.Editor(partial).edit(x[0], {"glasses": 1}, style=1)
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    (vectors / "metadata.json").write_text(json.dumps({"model": {"data_shape": [3], "label_names": ["a"]}}))
    with pytest.raises(edge.EditError, match="not images"):
        edge.Editor(vectors)


def partial_editor_works(path, pixels) -> bool:
    return edge.Editor(path).edit(pixels, {"glasses": 1}).shape == (SIZE, SIZE, 3)


# -- csvae edit ---------------------------------------------------------------------------------
def _csvae_in_process(*args) -> int:
    """``csvae ARGS`` in this process; the exit status."""
    from keras_csvae import cli

    return cli.main([str(a) for a in args])


def test_csvae_edit_style_grid_and_errors(editor, export_dir, tmp_path, capsys):
    x, _ = images(1, seed=27)
    source = tmp_path / "face.png"
    source.write_bytes(png_of(x[0]))
    assert (
        _csvae_in_process(
            "edit", source, "--model", export_dir, "--set", "glasses=1", "--style", 4, "--out", tmp_path / "s.png"
        )
        == 0
    )
    assert (tmp_path / "s.png").read_bytes() == editor.edit(source.read_bytes(), {"glasses": 1}, style=4)
    assert (
        _csvae_in_process(
            "edit",
            source,
            "--model",
            export_dir,
            "--set",
            "glasses=1",
            "--from",
            "smile=1",
            "--out",
            tmp_path / "f.png",
        )
        == 0
    )
    assert (tmp_path / "f.png").read_bytes() == editor.edit(source.read_bytes(), {"glasses": 1}, source={"smile": 1})
    assert (
        _csvae_in_process(
            "edit", source, "--model", export_dir, "--set", "glasses=1", "--grid", "--out", tmp_path / "g.png"
        )
        == 0
    )
    assert decode_pngs([(tmp_path / "g.png").read_bytes()]).shape == (1, 3 * SIZE + 4, 3 * SIZE + 4, 3)
    capsys.readouterr()
    assert _csvae_in_process("edit", source, "--model", export_dir, "--set", "hat=1", "--out", tmp_path / "x.png") == 2
    error = capsys.readouterr().err
    assert (
        error.startswith("csvae edit: error: unknown label 'hat'")
        and "glasses, smile, facial_hair" in error
        and error.count("\n") == 1
    )
    assert (
        _csvae_in_process(
            "edit", tmp_path / "nope.png", "--model", export_dir, "--set", "glasses=1", "--out", tmp_path / "x.png"
        )
        == 2
    )
    assert "nope.png does not exist" in capsys.readouterr().err
    for bad in (["--set", "glasses"], ["--set", "glasses=1", "--style", "1", "--grid"]):
        with pytest.raises(SystemExit) as exit_:
            _csvae_in_process("edit", source, "--model", export_dir, *bad, "--out", tmp_path / "x.png")
        assert exit_.value.code == 2
    assert not (tmp_path / "x.png").exists()


# -- camera photos, output formats, error paths --------------------------------------------------------------
def _two_tone(height, width, first=(255, 0, 0), second=(0, 0, 255), split="columns"):
    """uint8 picture: left/right (or top/bottom) halves in two colours."""
    a = np.zeros((height, width, 3), np.uint8)
    if split == "columns":
        a[:, : width // 2], a[:, width // 2 :] = first, second
    else:
        a[: height // 2], a[height // 2 :] = first, second
    return a


def _jpeg(pixels, **save) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90, **save)
    return buffer.getvalue()


def test_exif_rotated_photo_is_edited_upright(editor, export_dir, tmp_path):
    """A phone JPEG stored landscape with EXIF orientation 6 (display rotated 90°
    clockwise): red left half, blue right half as stored, so red on top upright."""
    from PIL import Image

    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    photo = _jpeg(_two_tone(48, 96), exif=exif.tobytes())
    upright = decode_image(photo, (SIZE, SIZE, 3))
    top, bottom = upright[: SIZE // 2 - 2].mean(axis=(0, 1)), upright[SIZE // 2 + 2 :].mean(axis=(0, 1))
    assert top[0] > 0.9 and top[2] < 0.1 and bottom[2] > 0.9 and bottom[0] < 0.1, (top, bottom)
    sideways = decode_image(_jpeg(_two_tone(48, 96)), (SIZE, SIZE, 3))  # the same picture without the tag
    assert sideways[:, : SIZE // 2 - 2].mean(axis=(0, 1))[0] > 0.9  # red on the left
    source = tmp_path / "phone.jpg"
    source.write_bytes(photo)
    assert (
        _csvae_in_process("edit", source, "--model", export_dir, "--set", "glasses=1", "--out", tmp_path / "up.png")
        == 0
    )
    assert (tmp_path / "up.png").read_bytes() == encode_png(editor.edit(upright, {"glasses": 1}))


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".JPEG", "JPEG"), (".webp", "WEBP"), (".png", "PNG")])
def test_csvae_edit_writes_the_format_out_names(editor, export_dir, tmp_path, suffix, fmt):
    from PIL import Image

    x, _ = images(1, seed=28)
    source = tmp_path / "face.png"
    source.write_bytes(png_of(x[0]))
    out = tmp_path / f"edited{suffix}"
    assert _csvae_in_process("edit", source, "--model", export_dir, "--set", "smile=1", "--out", out) == 0
    with Image.open(out) as written:
        assert written.format == fmt and written.size == (SIZE, SIZE)
        pixels = np.asarray(written.convert("RGB"), np.float32) / 255
    expected = editor.edit(x[0], {"smile": 1})
    # PNG and lossless WebP hold the rounded edit exactly; JPEG (quality 95) nearly
    assert np.abs(pixels - expected).max() <= (0.5 / 255 + 1e-6 if fmt != "JPEG" else 0.1)


# One fresh interpreter where TensorFlow & co. cannot be imported (BLOCKER) runs
# `csvae edit` on every error (and then on a 48 MP photo): after each,
# TensorFlow must still be absent from sys.modules.
EDIT_ERRORS_SCRIPT = (
    BLOCKER
    + r"""
import contextlib, io, json, re, sys
from keras_csvae import cli
cases = json.loads(sys.argv[1])
results = []
for argv in cases:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    results.append({"argv": argv, "code": code, "stderr": err.getvalue(), "tensorflow": "tensorflow" in sys.modules})
# VmHWM: this process's peak RSS (ru_maxrss would include the forking parent's)
peak = int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024
imported = sorted(m for m in ("tensorflow", "keras", "tensorflow_probability") if m in sys.modules)
print(json.dumps({"results": results, "peak_mb": peak, "imported": imported}))
"""
)


def _bomb_png(width, height) -> bytes:
    import zlib

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def test_csvae_edit_errors_are_one_line_without_tensorflow_and_a_48mp_photo_fits(editor, export_dir, tmp_path):
    """Each error: exit 2, one line, no traceback, TensorFlow never imported. Then a
    48 MP JPEG (8000x6000) is edited into a JPEG; decoding at 1/8 scale keeps the
    process's peak memory below what the full picture alone would take (144 MB
    as uint8, 576 MB as floats)."""
    from PIL import Image

    x, _ = images(1, seed=29)
    face = tmp_path / "face.png"
    face.write_bytes(png_of(x[0]))
    (tmp_path / "text.png").write_text("not a picture")
    (tmp_path / "bomb.png").write_bytes(_bomb_png(60000, 60000))  # Pillow's own bomb check
    (tmp_path / "huge.png").write_bytes(_bomb_png(12000, 12000))  # 144 MP: over MAX_IMAGE_PIXELS, under Pillow's limit
    (tmp_path / "outdir").mkdir()
    photo = tmp_path / "photo48mp.jpg"
    big = Image.fromarray(_two_tone(6000, 8000, (230, 180, 150), (40, 60, 90)))
    big.save(photo, format="JPEG", quality=85)
    del big
    model = ["--model", str(export_dir), "--set", "glasses=1"]
    errors = {
        "--out names a directory": (["edit", str(face), *model, "--out", str(tmp_path / "outdir")], "is a directory"),
        "--out of an unknown format": (["edit", str(face), *model, "--out", str(tmp_path / "x.tiff")], "'.tiff'"),
        "--out without an extension": (
            ["edit", str(face), *model, "--out", str(tmp_path / "edited")],
            "without an extension",
        ),
        "--out in a missing directory": (
            ["edit", str(face), *model, "--out", str(tmp_path / "no" / "x.png")],
            "is not a directory",
        ),
        "missing input": (
            ["edit", str(tmp_path / "nope.png"), *model, "--out", str(tmp_path / "x.png")],
            "does not exist",
        ),
        "input is a directory": (
            ["edit", str(tmp_path / "outdir"), *model, "--out", str(tmp_path / "x.png")],
            "is not a file",
        ),
        "not a picture": (
            ["edit", str(tmp_path / "text.png"), *model, "--out", str(tmp_path / "x.png")],
            "not a PNG/JPEG/GIF/BMP picture",
        ),
        "decompression bomb": (
            ["edit", str(tmp_path / "bomb.png"), *model, "--out", str(tmp_path / "x.png")],
            "decompression bomb",
        ),
        "picture over the limit": (
            ["edit", str(tmp_path / "huge.png"), *model, "--out", str(tmp_path / "x.png")],
            "larger than the limit",
        ),
        "unknown label": (
            ["edit", str(face), "--model", str(export_dir), "--set", "hat=1", "--out", str(tmp_path / "x.png")],
            "unknown label 'hat'",
        ),
        "not an export": (
            ["edit", str(face), "--model", str(tmp_path), "--set", "glasses=1", "--out", str(tmp_path / "x.png")],
            "metadata.json is missing",
        ),
    }
    out = tmp_path / "edited48.jpg"
    cases = [argv for argv, _ in errors.values()] + [["edit", str(photo), *model, "--out", str(out)]]
    result = subprocess.run(
        [sys.executable, "-c", EDIT_ERRORS_SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for (description, (_, message)), answer in zip(errors.items(), report["results"]):
        assert answer["code"] == 2, (description, answer)
        assert answer["stderr"].startswith("csvae") and "error:" in answer["stderr"] and message in answer["stderr"], (
            description,
            answer,
        )
        assert answer["stderr"].count("\n") == 1 and "Traceback" not in answer["stderr"], (description, answer)
        assert not answer["tensorflow"], description
    assert (
        not (tmp_path / "x.png").exists() and not (tmp_path / "x.tiff").exists() and not (tmp_path / "edited").exists()
    )
    edited = report["results"][-1]
    assert edited["code"] == 0, edited
    with Image.open(out) as written:
        assert written.format == "JPEG" and written.size == (SIZE, SIZE)
    assert report["imported"] == []
    # ~70 MB here (onnxruntime, numpy, Pillow and the 1000x750 draft); the full
    # picture alone would add 144 MB as uint8
    assert report["peak_mb"] < 180, report["peak_mb"]
