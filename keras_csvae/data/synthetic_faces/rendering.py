"""Painting ``synthetic_faces`` from their factors (``factors.py``).

Rendering uses only IEEE basic arithmetic and ``sqrt`` (no
``exp``/``sin``/reductions, whose SIMD implementations differ between CPUs),
so a seed gives the same bytes on any machine. Each image is rendered
independently of the others in its batch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_csvae.data.synthetic_faces.factors import (
    ATTRIBUTES,
    FACTOR_NAMES,
    HAIR_STYLES,
    STYLES,
    slice_factors,
    style_of,
)


def _rgb(*rows) -> np.ndarray:
    """``[len(rows), 3]`` float64 colours in [0, 1] from 0..255 triples."""
    return np.array(rows, np.float64) / 255.0


SKIN_PALETTE = _rgb(
    (255, 224, 196),
    (241, 194, 160),
    (224, 172, 130),
    (198, 134, 90),
    (160, 100, 65),
    (112, 72, 48),
)
HAIR_PALETTE = _rgb(
    (30, 25, 25),
    (80, 48, 28),
    (135, 70, 32),
    (205, 160, 85),
    (175, 175, 175),
)
# Saturated or dark frames, so a frame never disappears against any skin tone.
FRAME_PALETTE = _rgb((20, 20, 28), (190, 30, 45), (35, 75, 175), (25, 120, 70))
_EYE_WHITE = _rgb((250, 250, 250))[0]
_PUPIL = _rgb((35, 28, 30))[0]
_TEETH = _rgb((252, 250, 240))[0]
_MOUTH_INSIDE = _rgb((95, 20, 32))[0]
_LIP_DARK = _rgb((50, 8, 15))[0]
_TONGUE = _rgb((225, 95, 110))[0]
_DARK_LENS = _rgb((22, 24, 34))[0]


def _palette(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Colours ``[n, 3]`` at positions ``t`` ``[n]`` in ``[0, 1]`` along a palette
    (piecewise linear between its rows)."""
    position = np.clip(t, 0.0, 1.0) * (len(palette) - 1)
    lower = np.minimum(np.floor(position).astype(np.int64), len(palette) - 2)
    frac = (position - lower)[:, None]
    return palette[lower] * (1.0 - frac) + palette[lower + 1] * frac


# --------------------------------------------------------------------------
# Pixel machinery. Geometry is in pixel units; pixel (i, j) has its centre at
# (x, y) = (j + 0.5, i + 0.5). A shape's coverage is its signed distance
# (positive inside, in pixels) + 0.5, clipped to [0, 1]: one pixel of
# anti-aliasing, and exactly 0 from half a pixel outside the shape, so
# painting only inside a shape's bounding window changes nothing.
# --------------------------------------------------------------------------

_F32 = np.float32


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """In place: ``clip(signed_distance + 0.5, 0, 1)``."""
    signed_distance += _F32(0.5)
    return np.clip(signed_distance, 0.0, 1.0, out=signed_distance)


def _ellipse(dx, dy, rx, ry):
    """Coverage ``[m, h, w]`` of ellipses; ``dx`` ``[m, 1, w]`` and ``dy``
    ``[m, h, 1]`` are offsets from the centres, ``rx``, ``ry`` ``[m, 1, 1]``."""
    u, v = dx / rx, dy / ry
    rho = u * u + v * v
    np.sqrt(rho, out=rho)
    # (1 - rho) * min radius: the exact distance for a circle, close enough
    # for the mildly elongated ellipses drawn here.
    r_min = np.minimum(rx, ry)
    rho *= -r_min
    rho += r_min
    return _coverage(rho)


def _ring(rho, radius, half_thickness):
    """Coverage of the outline ``rho == 1`` of a normalised radius field
    (computed in place: ``rho`` is overwritten)."""
    rho -= 1.0
    np.abs(rho, out=rho)
    rho *= -radius
    rho += half_thickness
    return _coverage(rho)


def _norm_radius(dx, dy, rx, ry, power4=False):
    """``[m, h, w]`` normalised radius: 1 on the ellipse (or, with ``power4``,
    on the rounded rectangle ``u**4 + v**4 == 1``)."""
    u, v = dx / rx, dy / ry
    u, v = u * u, v * v
    if power4:
        u, v = u * u, v * v
    rho = u + v
    np.sqrt(rho, out=rho)
    if power4:
        np.sqrt(rho, out=rho)
    return rho


def _hcapsule(dx, dy, half_length, half_thickness):
    """Coverage of horizontal segments with round caps (``dx``, ``dy``
    offsets from the segment centres)."""
    beyond = np.maximum(np.abs(dx) - half_length, 0.0)
    dist = beyond * beyond + dy * dy
    np.sqrt(dist, out=dist)
    np.subtract(half_thickness, dist, out=dist)
    return _coverage(dist)


def _slab(offset, half_width):
    """Coverage ``clip(half_width - |offset| + 0.5)`` along one axis."""
    return _coverage(half_width - np.abs(offset))


def _above(offset):
    """Coverage of ``offset < 0`` along a (near-)vertical distance."""
    return _coverage(-offset)


class _Window:
    """A rectangular pixel window shared by a subset of a batch of faces.

    ``X`` ``[1, 1, w]`` and ``Y`` ``[1, h, 1]`` are the pixel centres of the
    window; ``param(values)`` turns float64 ``[n]`` per-face parameters into
    float32 ``[m, 1, 1]`` for the ``m`` faces ``index`` (a slice or an index
    array), so that shapes broadcast to ``[m, h, w]``.
    """

    def __init__(self, size: int, index, top, bottom, left, right):
        """``top``.. ``right``: float64 ``[m]`` pixel boxes; the window is their
        union, grown by 1 px for the shapes' anti-aliased fringe."""
        self.index = index
        if np.size(top) == 0:
            self.rows = self.cols = slice(0, 0)
        else:
            self.rows = slice(int(max(np.floor(np.min(top)) - 1, 0)), int(min(np.ceil(np.max(bottom)) + 1, size)))
            self.cols = slice(int(max(np.floor(np.min(left)) - 1, 0)), int(min(np.ceil(np.max(right)) + 1, size)))
        centres = np.arange(size, dtype=_F32) + _F32(0.5)
        self.X = centres[self.cols][None, None, :]
        self.Y = centres[self.rows][None, :, None]

    @classmethod
    def full(cls, size: int) -> _Window:
        """The whole image, for every face."""
        whole = np.array([0.0, float(size)])
        return cls(size, slice(None), whole, whole, whole, whole)

    def param(self, values: np.ndarray) -> np.ndarray:
        return values[self.index].astype(_F32)[:, None, None]

    def color(self, rgb: np.ndarray) -> np.ndarray:
        """``[n, 3]`` colours -> ``[3, m, 1, 1]`` for ``_Patch.paint``."""
        return rgb[self.index].T.astype(_F32)[:, :, None, None]


class _Patch(_Window):
    """A window of a canvas being painted: ``pixels`` float32 ``[3, m, h, w]``.

    The canvas is planar (``[3, n, S, S]``) so that the innermost loop of every
    numpy op runs along an image row rather than over 3 channels (several
    times faster). An index-array subset is gathered into a copy: use the
    patch as a context manager so that it is written back.
    """

    def __init__(self, canvas: np.ndarray, index, top, bottom, left, right):
        super().__init__(canvas.shape[-1], index, top, bottom, left, right)
        self._canvas = canvas
        self.pixels = canvas[:, index, self.rows, self.cols]

    @property
    def empty(self) -> bool:
        return self.pixels.size == 0

    def paint(self, alpha: np.ndarray, color) -> None:
        """Composites ``color`` (``[3, m, 1, 1]`` from ``color()``, or one RGB
        triple) over the window with coverage ``alpha`` ``[m, h, w]``."""
        if np.ndim(color) == 1:
            color = np.asarray(color, _F32)[:, None, None, None]
        layer = color - self.pixels
        layer *= alpha
        self.pixels += layer

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        gathered = not isinstance(self.index, slice)
        if exc[0] is None and gathered and not self.empty:
            self._canvas[:, self.index, self.rows, self.cols] = self.pixels


@dataclasses.dataclass
class _Geometry:
    """Per-face derived geometry (float64 ``[n]``, pixels) and colours ``[n, 3]``."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray  # head half-width
    b: np.ndarray  # head half-height
    eye_dx: np.ndarray  # horizontal offset of each eye from cx
    eye_y: np.ndarray
    mouth_y: np.ndarray
    line: np.ndarray  # half-thickness of thin strokes (>= 0.6 px)
    halo: np.ndarray  # skin-coloured margin around the mouth
    frame: np.ndarray  # half-thickness of glasses frames
    lens_max: np.ndarray  # largest lens radius any glasses may have
    skin: np.ndarray
    hair: np.ndarray


class FaceRenderer:
    """Paints faces from their factors.

    Args:
      image_size: side ``S`` of the square images, px.
      chunk_size: faces rendered per numpy pass (a cache / Python-overhead
        trade-off; the result does not depend on it). Default: 64 at 64 px,
        256 at 32 px (about 1 MB of float32 canvas, which fits in L2).
    """

    def __init__(self, image_size: int, chunk_size: int | None = None):
        self.image_size = image_size
        self.chunk_size = int(chunk_size or 262144 // self.image_size**2)
        # Test hooks: painting only inside bounding windows, and clipping
        # each attribute to its mask, must both be invisible.
        self._use_windows = True
        self._clip_to_masks = True

    def render(self, factors: dict, return_masks: bool = False):
        """Renders faces from their factors.

        Returns:
          uint8 ``[n, S, S, 3]``; with ``return_masks`` also a dict attribute
          -> bool ``[n, S, S]`` of the pixels that attribute may change (the
          union of what it touches on and off, in any style; it depends on the
          nuisance factors only).
        """
        missing = set(FACTOR_NAMES) - set(factors)
        if missing:
            raise KeyError(f"factors lack {sorted(missing)}")
        n = len(factors["face_x"])
        size = self.image_size
        images = np.empty((n, size, size, 3), np.uint8)
        masks = {a: np.empty((n, size, size), bool) for a in ATTRIBUTES}
        for start in range(0, n, self.chunk_size):
            part = slice(start, start + self.chunk_size)
            chunk = slice_factors(factors, part)
            self._render_chunk(chunk, out=images[part])
            if return_masks:
                geometry = self._geometry(chunk)
                for attribute in ATTRIBUTES:
                    masks[attribute][part] = self._full_mask(geometry, attribute)
        return (images, masks) if return_masks else images

    def _geometry(self, f: dict) -> _Geometry:
        size = self.image_size
        a = f["face_size"] * size
        b = a * f["face_aspect"]
        cy = f["face_y"] * size
        eye_dx = f["eye_spacing"] * a
        return _Geometry(
            cx=f["face_x"] * size,
            cy=cy,
            a=a,
            b=b,
            eye_dx=eye_dx,
            eye_y=cy - 0.12 * b,
            mouth_y=cy + 0.5 * b,
            line=np.maximum(0.05 * a, 0.6),
            halo=np.maximum(0.05 * a, 0.6),
            frame=np.maximum(0.05 * a, 0.55),
            lens_max=0.74 * 1.1 * eye_dx,
            skin=_palette(SKIN_PALETTE, f["skin_tone"]),
            hair=_palette(HAIR_PALETTE, f["hair_color"]),
        )

    def _render_chunk(self, f: dict, out: np.ndarray) -> None:
        """Renders a chunk of factors into ``out``, uint8 ``[m, S, S, 3]``."""
        g = self._geometry(f)
        n = len(g.cx)
        size = self.image_size
        # Planar float32 [3, m, S, S], starting as the flat background.
        canvas = np.empty((3, n, size, size), _F32)
        canvas[...] = f["background_color"].T.astype(_F32)[:, :, None, None]
        self._paint_body(canvas, f, g)
        self._paint_hair_back(canvas, f, g)
        self._paint_head(canvas, f, g)
        self._paint_hair_front(canvas, f, g)
        self._paint_eyes(canvas, f, g)
        self._paint_facial_hair(canvas, f, g)
        self._paint_mouth(canvas, f, g)
        self._paint_glasses(canvas, f, g)
        self._finish(canvas, f, out)

    def _patch(self, canvas, index, top, bottom, left, right) -> _Patch:
        """A patch of ``canvas`` for the faces ``index`` bounding the pixel
        boxes ``top``..``right`` (float64 ``[n]``, the painted shapes' bounds)."""
        if not self._use_windows:
            whole = np.array([0.0, float(self.image_size)])
            return _Patch(canvas, index, whole, whole, whole, whole)
        if not isinstance(index, slice):
            top, bottom, left, right = (v[index] for v in (top, bottom, left, right))
        return _Patch(canvas, index, top, bottom, left, right)

    def _finish(self, pixels: np.ndarray, f: dict, out: np.ndarray) -> None:
        """Light gradient, then quantisation of planar ``pixels`` into ``out``,
        uint8 ``[m, S, S, 3]``."""
        s = self.image_size
        window = _Window.full(s)
        centre = _F32(s / 2)
        light = window.param(f["light_x"] / s) * (window.X - centre) + window.param(f["light_y"] / s) * (
            window.Y - centre
        )
        light += _F32(1.0)
        pixels *= light
        pixels *= _F32(255.0)
        pixels += _F32(0.5)  # round half up by truncation below
        np.clip(pixels, 0.0, 255.0, out=pixels)
        # One pass: truncating cast (exact: values are in [0.5, 255.5)) and
        # planar -> interleaved channels.
        np.copyto(out, pixels.transpose(1, 2, 3, 0), casting="unsafe")

    # Body parts. Each paints one kind of shape for the faces that have it;
    # the bounding boxes handed to _patch bound the shapes they paint.

    def _paint_body(self, canvas, f, g):
        """Shirt (shoulders) and neck."""
        cx, cy, a, b = g.cx, g.cy, g.a, g.b
        shoulder_y = cy + 0.88 * b
        with self._patch(canvas, slice(None), shoulder_y - 1, shoulder_y + 2 * b, cx - 1.8 * a, cx + 1.8 * a) as p:
            if not p.empty:
                shirt = _ellipse(
                    p.X - p.param(cx), p.Y - p.param(shoulder_y + 0.6 * b), p.param(1.75 * a), p.param(0.6 * b)
                )
                p.paint(shirt, p.color(f["shirt_color"]))
        neck_top, neck_bottom = cy + 0.4 * b, cy + 0.98 * b
        with self._patch(canvas, slice(None), neck_top, neck_bottom + 0.16 * b, cx - 0.45 * a, cx + 0.45 * a) as p:
            if not p.empty:
                dx = p.X - p.param(cx)
                neck = _slab(dx, p.param(0.4 * a)) * _slab(
                    p.Y - p.param((neck_top + neck_bottom) / 2), p.param((neck_bottom - neck_top) / 2)
                )
                collar = _ellipse(dx, p.Y - p.param(neck_bottom), p.param(0.4 * a), p.param(0.14 * b))
                neck_color = p.color(g.skin * 0.86)
                p.paint(neck, neck_color)
                p.paint(collar, neck_color)

    def _paint_hair_back(self, canvas, f, g):
        """Hair behind the head: long hair and afro."""
        cx, cy, a, b = g.cx, g.cy, g.a, g.b
        long_index = np.flatnonzero(f["hair_style"] == HAIR_STYLES.index("long"))
        with self._patch(canvas, long_index, cy - 1.15 * b, cy + 1.2 * b, cx - 1.32 * a, cx + 1.32 * a) as p:
            if not p.empty:
                back = _ellipse(p.X - p.param(cx), p.Y - p.param(cy + 0.15 * b), p.param(1.3 * a), p.param(1.28 * b))
                back *= _above(p.Y - p.param(cy + 1.15 * b))
                p.paint(back, p.color(g.hair))
        afro_index = np.flatnonzero(f["hair_style"] == HAIR_STYLES.index("afro"))
        with self._patch(canvas, afro_index, cy - 1.3 * b, cy + 0.75 * b, cx - 1.5 * a, cx + 1.5 * a) as p:
            if not p.empty:
                afro = _ellipse(p.X - p.param(cx), p.Y - p.param(cy - 0.3 * b), p.param(1.48 * a), p.param(1.0 * b))
                p.paint(afro, p.color(g.hair))

    def _paint_head(self, canvas, f, g):
        """Ears, then the head: an egg, narrower towards the chin."""
        cx, cy, a, b = g.cx, g.cy, g.a, g.b
        ear_rx, ear_ry = 0.17 * a, 0.24 * b
        with self._patch(
            canvas, slice(None), cy - 0.02 * b - ear_ry, cy - 0.02 * b + ear_ry, cx - a - ear_rx, cx + a + ear_rx
        ) as p:
            if not p.empty:
                ears = _ellipse(
                    np.abs(p.X - p.param(cx)) - p.param(0.97 * a),
                    p.Y - p.param(cy - 0.02 * b),
                    p.param(ear_rx),
                    p.param(ear_ry),
                )
                p.paint(ears, p.color(g.skin * 0.92))
        with self._patch(canvas, slice(None), cy - b, cy + b, cx - a, cx + a) as p:
            if not p.empty:
                head = _coverage(self._egg_inside(p, g, 1.0, 1.0, 0.0))
                p.paint(head, p.color(g.skin))

    @staticmethod
    def _egg_inside(p, g, scale_x, scale_y, shift_y):
        """Signed distance (px, positive inside) to the head outline scaled by
        ``(scale_x, scale_y)`` about a centre moved down by ``shift_y * b``."""
        a, b = p.param(g.a * scale_x), p.param(g.b * scale_y)
        dx = (p.X - p.param(g.cx)) / a
        dy = (p.Y - p.param(g.cy + shift_y * g.b)) / b
        # Narrow the lower half linearly, by 14 % at the chin.
        narrowing = _F32(1.0) - _F32(0.14) * np.clip(dy, 0.0, 1.0)
        rho = (dx * dx) / (narrowing * narrowing) + dy * dy
        np.sqrt(rho, out=rho)
        rho -= 1.0
        rho *= -a
        return rho

    def _paint_hair_front(self, canvas, f, g):
        """Hair over the head: a cap down to a curved hairline (short, long,
        afro) or a fringe at the sides (bald)."""
        cx, cy, a, b = g.cx, g.cy, g.a, g.b
        hairline_centre = {"short": -0.45, "long": -0.42, "afro": -0.55}
        for style, centre in hairline_centre.items():
            index = np.flatnonzero(f["hair_style"] == HAIR_STYLES.index(style))
            with self._patch(canvas, index, cy - 1.08 * b, cy + 0.2 * b, cx - 1.08 * a, cx + 1.08 * a) as p:
                if p.empty:
                    continue
                dx = p.X - p.param(cx)
                cap = _coverage(self._egg_inside(p, g, 1.07, 1.05, -0.03))
                u = dx / p.param(a)
                hairline = p.param(cy + centre * b) + p.param(0.5 * b) * (u * u)
                cap *= _above(p.Y - hairline)
                p.paint(cap, p.color(g.hair))
        bald = np.flatnonzero(f["hair_style"] == HAIR_STYLES.index("bald"))
        with self._patch(canvas, bald, cy - 0.5 * b, cy + 0.15 * b, cx - 1.08 * a, cx + 1.08 * a) as p:
            if not p.empty:
                # A band along the head outline, over the ears' level only.
                fringe = _coverage(self._egg_inside(p, g, 1.06, 1.04, 0.0))
                fringe *= _coverage(-self._egg_inside(p, g, 0.9, 0.96, 0.0))
                fringe *= _slab(p.Y - p.param(cy - 0.15 * b), p.param(0.25 * b))
                p.paint(fringe, p.color(g.hair))

    def _paint_eyes(self, canvas, f, g):
        """Eyebrows, eyes, pupils and the nose."""
        cx, a, b = g.cx, g.a, g.b
        eye_rx = 0.18 * a * f["eye_size"]
        eye_ry = 0.14 * a * f["eye_size"]
        brow_y = g.eye_y - 0.32 * a
        with self._patch(
            canvas, slice(None), brow_y - 0.1 * a, g.eye_y + eye_ry, cx - g.eye_dx - 0.3 * a, cx + g.eye_dx + 0.3 * a
        ) as p:
            if not p.empty:
                dx = np.abs(p.X - p.param(cx)) - p.param(g.eye_dx)
                brows = _hcapsule(dx, p.Y - p.param(brow_y), p.param(0.16 * a), p.param(g.line))
                p.paint(brows, p.color(g.hair * 0.75))
                dy = p.Y - p.param(g.eye_y)
                p.paint(_ellipse(dx, dy, p.param(eye_rx), p.param(eye_ry)), _EYE_WHITE)
                pupil = p.param(np.maximum(0.09 * a * f["eye_size"], 0.75))
                p.paint(_ellipse(dx, dy, pupil, pupil), _PUPIL)
        nose_y = g.cy + 0.17 * b
        with self._patch(canvas, slice(None), nose_y - 0.12 * a, nose_y + 0.12 * a, cx - 0.1 * a, cx + 0.1 * a) as p:
            if not p.empty:
                nose = _ellipse(p.X - p.param(cx), p.Y - p.param(nose_y), p.param(0.08 * a), p.param(0.1 * a))
                p.paint(nose, p.color(g.skin * 0.8))

    # The three attributes. Each paints through its mask (a no-op by design:
    # the mask bounds every shape; the clip makes the counterfactual
    # guarantee hold even if a future shape overshoots).

    def _mask_box(self, g: _Geometry, attribute: str):
        """Pixel box ``(top, bottom, left, right)`` ``[n]`` of the attribute
        mask. Depends on nuisance geometry only."""
        cx, a, b = g.cx, g.a, g.b
        if attribute == "glasses":
            half_height = g.lens_max + g.frame + 1.0
            return (
                g.eye_y - half_height,
                g.eye_y + half_height,
                cx - 1.02 * a - g.frame - 1.0,
                cx + 1.02 * a + g.frame + 1.0,
            )
        if attribute == "smile":
            # The closed arc's corners rise to mouth_y - 0.05 a, and its stroke
            # (line + halo) is steep there: up to twice as tall.
            stroke = g.line + g.halo + 1.0
            return (
                g.mouth_y - 0.1 * a - 2 * stroke,
                g.mouth_y + 0.42 * a + stroke,
                cx - 0.55 * a - stroke,
                cx + 0.55 * a + stroke,
            )
        # facial_hair: the lower face, from just below the eyes to below the
        # chin, narrowed to the (grown) head outline in _mask.
        return (g.cy - 0.1 * b, g.cy + 1.22 * b, cx - 1.12 * a, cx + 1.12 * a)

    def _mask(self, p: _Window, g: _Geometry, attribute: str) -> np.ndarray:
        """float32 0/1 ``[m, h, w]`` mask of ``attribute`` over a patch."""
        top, bottom, left, right = (p.param(v) for v in self._mask_box(g, attribute))
        inside = ((p.Y >= top) & (p.Y <= bottom)) & ((p.X >= left) & (p.X <= right))
        if attribute == "facial_hair":
            inside &= self._egg_inside(p, g, 1.12, 1.12, 0.04) >= -1.0
        return inside.astype(_F32)

    def _full_mask(self, g: _Geometry, attribute: str) -> np.ndarray:
        """bool ``[n, S, S]`` mask of ``attribute``."""
        n, s = len(g.cx), self.image_size
        window = _Window.full(s)
        return np.broadcast_to(self._mask(window, g, attribute) > 0, (n, s, s)).copy()

    def _style_patches(self, canvas, f, g, attribute, off=None):
        """Yields ``(style_name, patch, mask)`` for each style of ``attribute``
        that faces of the chunk have: the patch of those faces over the
        attribute's mask box, and the mask over it. With ``off``, the faces
        without the attribute come first, under the style name ``off``. Each
        patch is written back when the caller moves on to the next."""
        style = style_of(f, attribute)
        styles = list(enumerate(STYLES[attribute]))
        if off is not None:
            styles.insert(0, (-1, off))
        for style_id, name in styles:
            index = np.flatnonzero(style == style_id)
            with self._patch(canvas, index, *self._mask_box(g, attribute)) as p:
                if not p.empty:
                    yield name, p, self._mask(p, g, attribute)

    def _clip(self, alpha, mask):
        if self._clip_to_masks:
            alpha *= mask
        return alpha

    @staticmethod
    def facial_hair_rgb(factors: dict) -> np.ndarray:
        """``[n, 3]`` facial hair colours: ``facial_hair_color`` along the hair
        palette; where that is within 0.35 (per channel) of the skin, it is
        darkened or lightened, whichever contrasts more, so that a beard is
        always visible."""
        color = _palette(HAIR_PALETTE, factors["facial_hair_color"])
        skin = _palette(SKIN_PALETTE, factors["skin_tone"])

        def contrast(rgb):
            return np.max(np.abs(rgb - skin), axis=1, keepdims=True)

        darker, lighter = color * 0.4, color * 0.3 + 0.65
        shifted = np.where(contrast(darker) >= contrast(lighter), darker, lighter)
        return np.where(contrast(color) < 0.35, shifted, color)

    def _paint_facial_hair(self, canvas, f, g):
        cx, cy, a, b = g.cx, g.cy, g.a, g.b
        color = self.facial_hair_rgb(f)
        thickness = f["facial_hair_thickness"]
        for name, p, mask in self._style_patches(canvas, f, g, "facial_hair"):
            dx = p.X - p.param(cx)
            if name in ("moustache", "full_beard"):
                # A band between two downward-bending curves, thinning
                # towards its tips.
                u = dx / p.param(0.45 * a)
                u2 = u * u
                lower = p.param(g.mouth_y - 0.12 * a) + p.param(0.12 * a) * u2
                # At least 1.5 px thick, to stay visible at 32 px.
                height = np.maximum(0.18 * a * thickness, 1.5)
                upper = lower - p.param(height) * (_F32(1.0) - _F32(0.4) * u2)
                hair = _above(p.Y - lower) * _coverage(p.Y - upper)
                hair *= _slab(dx, p.param(0.45 * a))
                p.paint(self._clip(hair, mask), p.color(color))
            if name == "goatee":
                # Low on the chin, so that an open mouth does not hide it.
                chin_y = g.mouth_y + 0.45 * a
                hair = _ellipse(dx, p.Y - p.param(chin_y), p.param(0.2 * a * thickness), p.param(0.24 * a))
                hair *= _coverage(p.Y - p.param(g.mouth_y + 0.12 * a))
                p.paint(self._clip(hair, mask), p.color(color))
            if name == "full_beard":
                # The head outline grown by 6 %, below a line that rises
                # from the mouth corners to sideburns at the ears.
                u = np.clip(dx / p.param(a), -1.0, 1.0)
                top = p.param(cy + 0.05 * b) + p.param(0.36 * b) * (_F32(1.0) - u * u)
                hair = _coverage(self._egg_inside(p, g, 1.06, 1.06, 0.04))
                hair *= _coverage(p.Y - top)
                p.paint(self._clip(hair, mask), p.color(color))

    def _paint_mouth(self, canvas, f, g):
        """The smile attribute: a neutral straight mouth when off; a closed
        arc, an open mouth (dark, teeth, tongue) or a wide grin (teeth) when
        on. Every mouth sits on a skin-coloured halo so it stays visible over
        a beard."""
        # Dark enough to stand out from any skin, even as a 1 px line.
        lips = g.skin * 0.25 + _LIP_DARK * 0.75
        for name, p, mask in self._style_patches(canvas, f, g, "smile", off="neutral"):
            shape = self._mouth_shape(p, f, g, name)
            p.paint(self._clip(shape(p.param(g.halo)), mask), p.color(g.skin))
            p.paint(self._clip(shape(_F32(0.0)), mask), p.color(lips))
            if name in ("open", "grin"):
                self._paint_mouth_inside(p, f, g, name, mask, lips)

    @staticmethod
    def _mouth_arcs(p, f, g, name):
        """``(half_width, upper, lower, top_y, upper_sag, lower_sag)`` of an
        open mouth or grin: ``upper`` and ``lower`` ``[m, 1, w]`` are the arcs
        bounding it, ``y = top_y + sag * (1 - u^2)``; the rest ``[m, 1, 1]``."""
        a, width, curvature = g.a, f["smile_width"], f["smile_curvature"]
        if name == "open":  # narrow and deep
            half_width = 0.27 * a * width
            upper_sag, lower_sag = 0.03 * a, (0.3 + 0.08 * curvature) * a
        else:  # grin: wide and shallow
            half_width = 0.48 * a * width
            upper_sag, lower_sag = 0.02 * a, (0.16 + 0.06 * curvature) * a
        top_y = g.mouth_y - 0.06 * a
        u = (p.X - p.param(g.cx)) / p.param(half_width)
        bulge = _F32(1.0) - u * u
        upper = p.param(top_y) + p.param(upper_sag) * bulge
        lower = p.param(top_y) + p.param(lower_sag) * bulge
        return (p.param(half_width), upper, lower, p.param(top_y), p.param(upper_sag), p.param(lower_sag))

    def _mouth_shape(self, p, f, g, name):
        """A function ``grow [m, 1, 1] -> coverage [m, h, w]`` of the mouth's
        outline stroke thickened by ``grow`` px."""
        a = g.a
        dx = p.X - p.param(g.cx)
        line = p.param(g.line)
        if name == "neutral":
            return lambda grow: _hcapsule(dx, p.Y - p.param(g.mouth_y), p.param(0.2 * a), line + grow)
        if name == "closed":
            # A thin upward arc, y = top + sag * (1 - u^2), |u| <= 1.
            half_width = 0.36 * a * f["smile_width"]
            sag = (0.2 + 0.1 * f["smile_curvature"]) * a
            # Clamped so the arc does not keep rising past the corners.
            u = np.clip(dx / p.param(half_width), -1.0, 1.0)
            curve = p.param(g.mouth_y - 0.05 * a) + p.param(sag) * (_F32(1.0) - u * u)
            slope = p.param(2 * sag / half_width) * u
            normal_scale = _F32(1.0) / np.sqrt(_F32(1.0) + slope * slope)
            distance = np.abs(p.Y - curve) * normal_scale
            return lambda grow: _coverage(line + grow - distance) * _slab(dx, p.param(half_width) + grow)
        half_width, upper, lower, *_ = self._mouth_arcs(p, f, g, name)

        def outlined_region(grow):
            thick = line + grow
            region = _coverage(p.Y - upper + thick) * _above(p.Y - lower - thick)
            # Cut the region's pointed tips beyond the mouth corners.
            return region * _slab(dx, half_width + thick)

        return outlined_region

    def _paint_mouth_inside(self, p, f, g, name, mask, lips):
        half_width, upper, lower, top_y, upper_sag, lower_sag = self._mouth_arcs(p, f, g, name)
        inside = _coverage(p.Y - upper) * _above(p.Y - lower)
        if name == "grin":  # all teeth, with a line between the rows
            p.paint(self._clip(inside, mask), _TEETH)
            middle = _coverage(p.param(g.line) * _F32(0.6) - np.abs(p.Y - (upper + lower) * _F32(0.5)))
            p.paint(self._clip(middle * inside, mask), p.color(lips))
            return
        p.paint(self._clip(inside, mask), _MOUTH_INSIDE)
        teeth = inside * _above(p.Y - upper - p.param(0.08 * g.a))
        p.paint(self._clip(teeth, mask), _TEETH)
        tongue = _ellipse(
            p.X - p.param(g.cx), p.Y - (top_y + lower_sag), half_width * _F32(0.6), (lower_sag - upper_sag) * _F32(0.4)
        )
        p.paint(self._clip(tongue * inside, mask), _TONGUE)

    def _paint_glasses(self, canvas, f, g):
        cx, a = g.cx, g.a
        frame_color = _palette(FRAME_PALETTE, f["glasses_color"])
        lens = 0.74 * g.eye_dx * f["glasses_size"]  # <= g.lens_max
        for name, p, mask in self._style_patches(canvas, f, g, "glasses"):
            dx = np.abs(p.X - p.param(cx)) - p.param(g.eye_dx)  # from each eye
            dy = p.Y - p.param(g.eye_y)
            radius = p.param(lens)
            frame = p.param(g.frame)
            if name == "round":
                rx, ry = radius, radius
                rho = _norm_radius(dx, dy, rx, ry)
            elif name == "square":
                rx, ry = radius * _F32(1.1), radius * _F32(0.8)
                rho = _norm_radius(dx, dy, rx, ry, power4=True)
                frame = frame * _F32(1.5)
            else:  # sunglasses: large dark lenses hanging a little low
                rx, ry = radius * _F32(1.1), radius * _F32(0.9)
                dy = dy - radius * _F32(0.1)
                rho = _norm_radius(dx, dy, rx, ry)
            lens_fill = _coverage((_F32(1.0) - rho) * ry)
            if name == "sunglasses":
                p.paint(self._clip(lens_fill, mask), p.color(_DARK_LENS * 0.8 + frame_color * 0.2))
                glint = _ellipse(dx + rx * _F32(0.35), dy + ry * _F32(0.4), rx * _F32(0.22), ry * _F32(0.16))
                p.paint(self._clip(glint * _F32(0.8), mask), _EYE_WHITE)
            else:  # clear lenses with a faint blue tint
                p.paint(self._clip(lens_fill * _F32(0.25), mask), (0.75, 0.88, 1.0))
            p.paint(self._clip(_ring(rho, ry, frame), mask), p.color(frame_color))
            # The bridge between the lenses and the temples to the ears.
            bar_y = dy + ry * _F32(0.3)
            centre_dx = p.X - p.param(cx)
            bridge_half = p.param(g.eye_dx) - rx
            bridge = _hcapsule(centre_dx, bar_y, bridge_half, frame)
            temple_start = p.param(g.eye_dx) + rx
            temple_end = p.param(0.98 * a)
            temple_half = np.maximum((temple_end - temple_start) * _F32(0.5), 0.0)
            temples = _hcapsule(np.abs(centre_dx) - (temple_start + temple_half), bar_y, temple_half, frame)
            bars = np.maximum(bridge, temples)
            p.paint(self._clip(bars, mask), p.color(frame_color))
