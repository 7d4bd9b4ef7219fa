"""A PNG preview of ``synthetic_faces``: sample faces with their labels, and
ground-truth counterfactuals (one attribute switched on, in each style).

    python -m keras_csvae.data.preview docs/synthetic_faces_preview.png
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keras_csvae.data.synthetic_faces import ATTRIBUTES, STYLES, SyntheticFaces

_TILE = 128  # px per face in the preview, whatever the image size
_PAD = 6
_TEXT = (40, 40, 40)
_TEXT_OFF = (165, 165, 165)
_MASK_OUTLINE = (255, 255, 255)
_BACKGROUND = (255, 255, 255)
_SHORT = {"glasses": "glasses", "smile": "smile", "facial_hair": "facial hair"}


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _upscale(image: np.ndarray) -> Image.Image:
    """uint8 ``[S, S, 3]`` -> a ``_TILE`` px PIL image (nearest neighbour keeps
    the real pixels visible and compresses well)."""
    return Image.fromarray(image).resize((_TILE, _TILE), Image.NEAREST)


def _outline(mask: np.ndarray) -> np.ndarray:
    """bool ``[S, S]``: the mask pixels with a 4-neighbour outside it."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def _label_lines(factors: dict, i: int) -> list[tuple[str, tuple]]:
    lines = []
    for attribute in ATTRIBUTES:
        style = int(factors[f"{attribute}_style"][i])
        if style < 0:
            lines.append((f"no {_SHORT[attribute]}", _TEXT_OFF))
        else:
            name = STYLES[attribute][style].replace("_", " ")
            lines.append((f"{_SHORT[attribute]}: {name}", _TEXT))
    return lines


def _balanced_faces(renderer: SyntheticFaces, n: int, seed: int) -> dict:
    """Factors of ``n`` faces from ``seed`` in which every attribute is off,
    and in each style, about equally often (a random sample of 16 can easily
    miss a style): faces are taken in sampling order, skipping any that would
    over-represent a state."""
    pool = renderer.sample_factors(max(64 * n, 1024), seed)
    states = len(STYLES[ATTRIBUTES[0]]) + 1  # off, then each style
    cap = -(-n // states)
    counts = {(a, s): 0 for a in ATTRIBUTES for s in range(-1, states - 1)}
    chosen = []
    for i in range(len(pool["face_x"])):
        keys = [(a, int(pool[f"{a}_style"][i])) for a in ATTRIBUTES]
        if all(counts[key] < cap for key in keys):
            chosen.append(i)
            for key in keys:
                counts[key] += 1
            if len(chosen) == n:
                break
    else:  # a small cap may be unreachable: fill up in sampling order
        rest = [i for i in range(len(pool["face_x"])) if i not in set(chosen)]
        chosen += rest[: n - len(chosen)]
    return {name: value[np.array(chosen)] for name, value in pool.items()}


def preview_grid(
    out_png: str, image_size: int = 64, n: int = 16, seed: int = 0, columns: int = 8, counterfactual_rows: int = 1
) -> str:
    """Writes a preview PNG and returns its path.

    Top: ``n`` faces sampled with ``seed`` (balanced so that every style
    shows), each captioned with its labels and styles. Below: per attribute, ``counterfactual_rows`` rows of two faces
    with that attribute off, the same faces with it switched on in each
    style, and the attribute mask outlined in white on the original (every
    pixel outside it is identical across the row).
    """
    renderer = SyntheticFaces(image_size)
    factors = _balanced_faces(renderer, n, seed)
    images = renderer.render(factors)
    font, title_font = _font(11), _font(14)
    line_height = 13
    caption = 3 * line_height + 4
    rows = -(-n // columns)
    width = columns * (_TILE + _PAD) + _PAD
    title_height = 22
    cf_row_height = _TILE + line_height + 6
    height = (
        title_height
        + rows * (_TILE + caption + _PAD)
        + title_height
        + len(ATTRIBUTES) * counterfactual_rows * cf_row_height
        + _PAD
    )
    sheet = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    y = _PAD
    draw.text((_PAD, y), f"synthetic_faces ({image_size} px): samples and labels", fill=_TEXT, font=title_font)
    y += title_height
    for i in range(n):
        x = _PAD + (i % columns) * (_TILE + _PAD)
        top = y + (i // columns) * (_TILE + caption + _PAD)
        sheet.paste(_upscale(images[i]), (x, top))
        for j, (text, color) in enumerate(_label_lines(factors, i)):
            draw.text((x + 2, top + _TILE + 2 + j * line_height), text, fill=color, font=font)
    y += rows * (_TILE + caption + _PAD)

    draw.text(
        (_PAD, y),
        "counterfactuals: one attribute switched on, in each style "
        "(white: the attribute's mask; all pixels outside it are unchanged)",
        fill=_TEXT,
        font=title_font,
    )
    y += title_height
    # Faces to edit come from another seed, so they are not the samples above.
    pool = renderer.sample_factors(64, seed + 1)
    faces_per_row = columns // (1 + len(STYLES[ATTRIBUTES[0]]))
    for attribute in ATTRIBUTES:
        off = np.flatnonzero(pool[attribute] == 0)
        for row in range(counterfactual_rows):
            chosen = off[row * faces_per_row : (row + 1) * faces_per_row]
            base = {name: value[chosen] for name, value in pool.items()}
            originals, masks = renderer.render(base, return_masks=True)
            switched = [
                renderer.counterfactual(base, attribute, 1, style)[0] for style in range(len(STYLES[attribute]))
            ]
            for k in range(len(chosen)):
                tiles = [originals[k]] + [edited[k] for edited in switched]
                texts = [f"no {_SHORT[attribute]}"] + ["+ " + name.replace("_", " ") for name in STYLES[attribute]]
                outlined = originals[k].copy()
                outlined[_outline(masks[attribute][k])] = _MASK_OUTLINE
                tiles[0] = outlined
                for t, (tile, text) in enumerate(zip(tiles, texts)):
                    x = _PAD + (k * len(tiles) + t) * (_TILE + _PAD)
                    sheet.paste(_upscale(tile), (x, y))
                    draw.text((x + 2, y + _TILE + 2), text, fill=_TEXT if t else _TEXT_OFF, font=font)
            y += cf_row_height
    directory = os.path.dirname(out_png)
    if directory:
        os.makedirs(directory, exist_ok=True)
    sheet.save(out_png, optimize=True)
    return out_png


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_png")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = preview_grid(args.out_png, args.image_size, args.n, args.seed)
    print(f"wrote {path} ({os.path.getsize(path) // 1024} KB)")


if __name__ == "__main__":
    main()
