"""The edge editor: an export's ONNX files run with onnxruntime, numpy and Pillow only.

This module and ``serving.runtime`` never import TensorFlow, Keras or TFP, so
an app can ship them with ``EXPORT_DIR/onnx/*.onnx`` and
``EXPORT_DIR/metadata.json`` alone::

    from serving.edge import Editor

    editor = Editor("exports/faces")
    edited_png = editor.edit(png_bytes, {"glasses": 1})            # PNG in, PNG out
    edited = editor.edit(pixels, {"glasses": 1, "smile": 0}, style=4)  # [H, W, C] in [0, 1] in and out

or from the shell: ``csvae edit face.png --model exports/faces --set glasses=1 --out edited.png``.

How an edit works (as the exported graphs compute it): ``z`` = mean of
``q(z|x)``; the subspaces ``W_i`` of the labels the edit switches go to the
mean of the prior ``p(w_i | y_target_i)`` (switched on: ``edit_strength`` of
the metadata times as far from the absent mean), the others keep their posterior
mean ``E[w_i | x, y]`` under the picture's own labels ``y``
(``manipulate.onnx``); with a *style*, the columns ``i*w_dim:(i+1)*w_dim`` of
``w`` of each label set to 1 are a fixed point of ``W_i`` instead
(``edit_at.onnx``, with ``encode.onnx`` for the kept subspaces). The model
cannot read a picture's labels, so the source labels ``y`` are what the
caller says (``source=`` / ``--from``), and otherwise: a label being set to 1
was 0, a label being set to 0 was 1, and every other label is 0 and stays 0.

Pictures are read and written by ``serving.runtime.images``, as the server's
``manipulate_image`` does; the prior and the styles come from
``serving.runtime.contract``.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np

from serving.runtime.contract import (
    STYLE_SIDE,
    ContractError,
    check_edit_strength,
    edit_w,
    onnx_file,
    onnx_files,
    read_metadata,
    style_grid,
)
from serving.runtime.images import MAX_IMAGE_PIXELS, decode_image, encode_image, encode_png, output_format, resize
from serving.runtime.sessions import onnx_session

GRID_GAP = 2  # pixels between the tiles of a --grid mosaic


class EditError(ContractError):
    """A user error of an edit: unknown label, bad value or style, unreadable file, incomplete export."""


def mosaic(tiles: np.ndarray, columns: int, gap: int = GRID_GAP) -> np.ndarray:
    """``[n, H, W, C]`` -> one ``[rows·H + gaps, columns·W + gaps, C]`` picture, row-major, white gaps."""
    n, height, width, channels = tiles.shape
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, channels), np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[r * (height + gap) : r * (height + gap) + height, c * (width + gap) : c * (width + gap) + width] = tile
    return canvas


# -- the editor ---------------------------------------------------------------------------------------
class Editor:
    """Edits pictures with the ONNX files of an export (no TensorFlow).

    Args:
      export_dir: a ``csvae export`` directory (``metadata.json`` + ``onnx/``).
      threads: onnxruntime intra-op threads.

    Example:
      >>> editor = Editor("exports/faces")
      >>> editor.label_names
      ('glasses', 'smile', 'facial_hair')
      >>> png = editor.edit(open("face.png", "rb").read(), {"glasses": 1})
    """

    def __init__(self, export_dir, threads: int = 1):
        self.export_dir = Path(export_dir)
        self.metadata = read_metadata(self.export_dir)
        model = self.metadata.get("model") or {}
        self.label_names = tuple(model.get("label_names") or ())
        self.image_shape = tuple(model.get("image_shape") or ())
        if len(self.image_shape) != 3:
            raise EditError(
                f"{export_dir} holds a model of {model.get('data_shape')} vectors, not images: nothing to edit."
            )
        self.w_dim = model.get("w_dim")
        self.prior = model.get("prior")
        # a number or one per label; 1 in exports made before the field
        self.edit_strength = check_edit_strength(model.get("edit_strength", 1.0), len(self.label_names))
        self.threads = threads
        self._sessions = {}

    def _session(self, name: str):
        if name not in self._sessions:
            path = self.export_dir / onnx_files(self.metadata).get(name, onnx_file(name))
            if not path.is_file():
                raise EditError(f"{path} is missing: export the model with ONNX (`csvae export --format onnx`).")
            session = onnx_session(path, self.threads)
            inputs = sorted(i.name for i in session.get_inputs())
            # manipulate.onnx of exports before the per-label edit takes no source labels.
            expected = {
                "manipulate": (["x", "y", "y_target"], ["x", "y_target"]),
                "edit_at": (["w", "x"],),
                "encode": (["x", "y"],),
            }.get(name)
            if expected and inputs not in expected:
                raise EditError(
                    f"{path.name} takes inputs {inputs}; the editor needs {expected[0]} "
                    f"(a CSVAE export; this is a {self.metadata.get('model', {}).get('model_type')!r} model)."
                )
            self._sessions[name] = session
        return self._sessions[name]

    # -- inputs -----------------------------------------------------------------------
    def target(self, labels: dict, source: dict | None = None) -> np.ndarray:
        """``{"glasses": 1, ...}`` -> ``y_target`` ``[k]`` float32; labels not given
        keep their source value (``source_labels``).

        Raises:
          EditError: an unknown label or a value outside [0, 1]; the message lists the labels.
        """
        return self._label_vector(labels, self.source_labels(labels, source))

    def _source_and_target(self, labels: dict, source: dict | None):
        """``(y, y_target)`` ``[k]`` each: the source labels, and the targets on top of them."""
        y = self.source_labels(labels, source)
        return y, self._label_vector(labels, y)

    def source_labels(self, labels: dict, source: dict | None = None) -> np.ndarray:
        """The picture's own labels ``y`` ``[k]``: ``source`` where given; else a
        label set to 0 by ``labels`` was 1, one set above 0 was 0, and any other is 0."""
        zeros = np.zeros(len(self.label_names), np.float32)
        wanted = self._label_vector(labels, zeros)  # checks the names and values
        switched = {name: float(wanted[self.label_names.index(name)] == 0) for name in labels}
        return self._label_vector({**switched, **(source or {})}, zeros)

    def _label_vector(self, labels: dict, base: np.ndarray) -> np.ndarray:
        known = ", ".join(self.label_names)
        y = np.array(base, np.float32)
        for name, value in labels.items():
            if name not in self.label_names:
                raise EditError(f"unknown label {name!r}; this model's labels are: {known}.")
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not (0.0 <= number <= 1.0):
                raise EditError(
                    f"{name}={value!r}: a label value must be 0 (absent) or 1 (present) "
                    f"(fractions in between interpolate); labels: {known}."
                )
            y[self.label_names.index(name)] = number
        return y

    def _pixels(self, image) -> tuple[np.ndarray, bool]:
        """Any accepted picture -> (``[n, H, W, C]`` float32 at the model's size, came-as-bytes)."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            return decode_image(bytes(image), self.image_shape)[None], True
        if isinstance(image, (str, os.PathLike)):
            try:
                data = Path(image).read_bytes()
            except OSError as err:
                raise EditError(f"cannot read {image}: {err.strerror or err}") from err
            return decode_image(data, self.image_shape)[None], True
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / np.float32(255.0)
        if array.dtype.kind not in "fiu" or not np.all(np.isfinite(array)):
            raise EditError("a picture array must hold finite numbers: uint8 in [0, 255] or floats in [0, 1].")
        array = array.astype(np.float32)
        height, width, channels = self.image_shape
        if array.ndim == 2 and channels == 1:
            array = array[..., None]
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != channels:
            raise EditError(
                f"a picture array must be [H, W, {channels}] (or [n, H, W, {channels}]), got {list(np.shape(image))}."
            )
        if array.shape[1:3] != (height, width):
            array = np.stack([resize(np.clip(a, 0.0, 1.0), height, width) for a in array])
        return array, False

    def edit_w(self, x: np.ndarray, y: np.ndarray, y_target: np.ndarray) -> np.ndarray:
        """``w`` ``[n, k·w_dim]`` of the per-label edit, as ``manipulate.onnx`` computes it:
        ``edit_w`` (the target prior's mean at ``edit_strength`` 1) for the
        switched labels, ``E[w_i | x, y]`` (``encode.onnx``) for the others."""
        if self.prior is None or not self.w_dim:
            raise EditError("styles need a CSVAE export (its metadata has no w_dim / prior).")
        w = edit_w(y_target, self.prior, self.w_dim, self.edit_strength)
        keep = np.repeat(y == y_target, self.w_dim, axis=-1)
        if keep.any():
            session = self._session("encode")
            names = [o.name for o in session.get_outputs()]
            w_mean = session.run(None, {"x": x, "y": y})[names.index("w_mean")]
            w = np.where(keep, w_mean, w)
        return w

    def style_w(self, w: np.ndarray, present, style: int, points: np.ndarray | None = None) -> np.ndarray:
        """``w`` ``[n, k·w_dim]`` with the subspaces of the labels ``present``
        (indices) at style point ``style`` of ``style_grid``."""
        if self.prior is None or not self.w_dim:
            raise EditError("styles need a CSVAE export (its metadata has no w_dim / prior).")
        points = style_grid(self.prior, self.w_dim) if points is None else points
        if isinstance(style, bool) or not isinstance(style, (int, np.integer)) or not 0 <= style < len(points):
            raise EditError(f"--style must be an integer from 0 to {len(points) - 1}, got {style!r}.")
        if not present:
            raise EditError(
                "a style is a point in a present label's subspace: set at least one label to 1 "
                f"(labels: {', '.join(self.label_names)})."
            )
        w = np.array(w, np.float32)
        for i in present:
            w[:, i * self.w_dim : (i + 1) * self.w_dim] = points[style]
        return w

    def _styled(self, labels: dict) -> list[int]:
        """Indices of the labels that ``labels`` sets to 1: the ones a style draws."""
        return [self.label_names.index(name) for name, value in labels.items() if float(value) == 1.0]

    # -- edits ---------------------------------------------------------------------------
    def edit(self, image, labels: dict, style: int | None = None, source: dict | None = None):
        """Edits ``image`` to have ``labels``, optionally in style ``style``.

        Args:
          image: PNG/JPEG/GIF/BMP bytes or a path to such a file; or an array
            ``[H, W, C]`` / ``[n, H, W, C]`` (uint8, or float in [0, 1]),
            resized to the model's size if it differs.
          labels: ``{label_name: 0 or 1}``: the labels to set.
          source: ``{label_name: 0 or 1}``: the picture's own labels, where known
            (default: see ``source_labels``); labels not in ``labels`` keep them.
          style: ``None`` for the prior mean (``manipulate.onnx``), or ``K`` in
            ``[0, STYLE_SIDE²)``: the K-th point of ``style_grid`` in every
            present label's subspace (``edit_at.onnx``).

        Returns:
          PNG bytes at the model's size for bytes/path input, else float32
          ``[H, W, C]`` (``[n, H, W, C]`` for a batch) in [0, 1].
        """
        x, as_bytes = self._pixels(image)
        y, y_target = (np.repeat(v[None], len(x), axis=0) for v in self._source_and_target(labels, source))
        if style is None:
            session = self._session("manipulate")
            feeds = {"x": x, "y": y, "y_target": y_target}
            (edited,) = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
        else:
            w = self.style_w(self.edit_w(x, y, y_target), self._styled(labels), style)
            (edited,) = self._session("edit_at").run(None, {"x": x, "w": w})
        if as_bytes:
            return encode_png(edited[0])
        return edited if np.ndim(image) == 4 else edited[0]

    def grid(self, image, labels: dict, side: int = STYLE_SIDE, source: dict | None = None) -> np.ndarray:
        """A traversal of the present labels' subspaces: ``side × side`` edits of
        one picture, tile ``K`` (row-major) at ``style_grid(side)[K]`` — with the
        default ``side`` exactly the ``--style K`` edits. Returns a float32 mosaic."""
        if not isinstance(side, int) or not 1 <= side <= 16:
            raise EditError(f"--grid-size must be an integer from 1 to 16, got {side!r}.")
        x, _ = self._pixels(image)
        if len(x) != 1:
            raise EditError("--grid draws one picture at a time.")
        if self.prior is None or not self.w_dim:
            raise EditError("a traversal grid needs a CSVAE export (its metadata has no w_dim / prior).")
        points = style_grid(self.prior, self.w_dim, side=side)
        y, y_target = self._source_and_target(labels, source)
        base = self.edit_w(x, y[None], y_target[None])
        w = np.concatenate([self.style_w(base, self._styled(labels), k, points) for k in range(len(points))])
        (edited,) = self._session("edit_at").run(None, {"x": np.repeat(x, len(points), axis=0), "w": w})
        return mosaic(edited, columns=side)


# -- csvae edit ---------------------------------------------------------------------------------------------
def _label_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE (e.g. glasses=1), got {text!r}")
    return name.strip(), value.strip()


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``edit`` on the ``csvae`` sub-command parsers, with ``func=run``."""
    parser = subparsers.add_parser(
        "edit",
        help="edit a picture with an export's ONNX files (onnxruntime only, no TensorFlow)",
        description=(
            "Sets labels of a picture with the exported CSVAE: the rest of the picture (its z) is kept. "
            "Labels not given keep their value (--from, default 0). Uses only onnxruntime, numpy and Pillow."
        ),
    )
    parser.add_argument(
        "input",
        help=f"the picture to edit (PNG, JPEG, GIF or BMP; up to {MAX_IMAGE_PIXELS / 1e6:.0f} MP, "
        "EXIF orientation applied)",
    )
    parser.add_argument("--model", required=True, help="export directory (csvae export --out)")
    parser.add_argument(
        "--set",
        dest="labels",
        action="append",
        type=_label_value,
        required=True,
        metavar="LABEL=VALUE",
        help="a target label, 0 or 1 (repeat for several: --set glasses=1 --set smile=0)",
    )
    parser.add_argument(
        "--from",
        dest="source",
        action="append",
        type=_label_value,
        default=[],
        metavar="LABEL=VALUE",
        help="a label the picture has now, 0 or 1 (default: a label set to 1 was 0, set to 0 was 1, others 0)",
    )
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--style",
        type=int,
        metavar="K",
        help=f"the K-th of {STYLE_SIDE**2} fixed styles in each present label's subspace",
    )
    how.add_argument(
        "--grid",
        action="store_true",
        help="write a traversal grid of the present labels' subspaces (tile K = --style K)",
    )
    parser.add_argument(
        "--grid-size", type=int, default=STYLE_SIDE, help=f"tiles per side of --grid (default {STYLE_SIDE})"
    )
    parser.add_argument(
        "--out", required=True, help="the file to write; its extension picks the format: .png, .jpg/.jpeg or .webp"
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> Path:
    """Runs ``csvae edit`` for parsed ``args``; returns the path written.

    Raises:
      ContractError: on user errors (``EditError``, ``ImageError``, a missing or
        broken ``metadata.json``), reported by the CLI on one line, exit status 2.
    """
    for flag, pairs in (("--set", args.labels), ("--from", args.source)):
        names = [name for name, _ in pairs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise EditError(f"{flag} {', '.join(duplicates)} given more than once.")
    # --out is checked before any work, so that a typo costs nothing.
    out = Path(args.out)
    if out.is_dir():
        raise EditError(f"--out {out} is a directory; name the file to write, e.g. {out / 'edited.png'}.")
    if not out.parent.is_dir():
        raise EditError(f"cannot write {out}: {out.parent} is not a directory.")
    fmt = output_format(out)
    editor = Editor(args.model, threads=args.threads)
    labels, source = dict(args.labels), dict(args.source)
    data = Path(args.input)
    if not data.is_file():
        raise EditError(f"{args.input} does not exist." if not data.exists() else f"{args.input} is not a file.")
    pixels, _ = editor._pixels(data)
    if args.grid:
        edited = editor.grid(pixels[0], labels, side=args.grid_size, source=source)
    else:
        edited = editor.edit(pixels[0], labels, style=args.style, source=source)
    try:
        out.write_bytes(encode_image(edited, fmt))
    except OSError as err:
        raise EditError(f"cannot write {out}: {err.strerror or err}.") from err
    target = " ".join(f"{name}={value:g}" for name, value in zip(editor.label_names, editor.target(labels, source)))
    extra = f", {args.grid_size}x{args.grid_size} grid" if args.grid else ""
    if args.style is not None:
        extra = f", style {args.style}"
    print(f"Wrote {out} ({target}{extra})")
    return out


def main(argv=None) -> int:
    """``python -m serving.edge INPUT --model ... --set ... --out ...`` (same as ``csvae edit``)."""
    import sys

    parser = argparse.ArgumentParser(prog="csvae")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["edit", *(sys.argv[1:] if argv is None else argv)])
    try:
        run(args)
    except ContractError as err:
        print(f"csvae edit: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
