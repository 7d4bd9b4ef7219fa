"""``synthetic_faces``: procedural cartoon faces with ground-truth counterfactuals.

A benchmark made for the CSVAE: each face has three binary attributes (the
labels ``y``), each attribute comes in several discrete *styles* plus
continuous variation (what the CSVAE's ``w`` subspace should capture), and
the rest of the face varies through nuisance factors independent of the
labels (what ``z`` should capture). Because the faces are rendered from
factors, the true counterfactual of any face is known exactly: the same
factors with one attribute switched, which changes no pixel outside that
attribute's mask.

Attributes (label order) and their styles::

    glasses      round, square, sunglasses
    smile        closed, open, grin      (off: a neutral straight mouth)
    facial_hair  moustache, goatee, full_beard

The factors dict
----------------
``SyntheticFaces.sample_factors(n, seed)`` returns a ``dict[str, np.ndarray]``
with these keys (arrays of length ``n``; colours ``[n, 3]``; floats are
float64, ids int32; positions and sizes are fractions of the image side, so
the same factors render at 32 and 64 px):

Nuisance factors (independent of the labels)::

    face_x, face_y      centre of the head
    face_size           half-width of the head
    face_aspect         head height / width
    skin_tone           0 (light) .. 1 (dark), along a skin palette
    hair_color          0 .. 1 along a hair palette (black .. blond .. grey)
    hair_style          int id into HAIR_STYLES (short, long, afro, bald)
    eye_spacing         half the distance between the eyes / face half-width
    eye_size            scale of the eyes
    background_color    [n, 3] RGB in [0, 1]
    shirt_color         [n, 3] RGB in [0, 1]
    light_x, light_y    slope of a multiplicative light gradient

Per attribute ``A`` in ``glasses``, ``smile``, ``facial_hair``::

    A                   int32 label, 0 or 1
    A_style             int32 style id into STYLES[A], -1 when A == 0
    A_style_u           uniform [0, 1): picks the style when A is switched on
                        by ``counterfactual`` without an explicit style
    glasses_color, glasses_size             frame colour, lens size
    smile_curvature, smile_width            curvature, mouth width
    facial_hair_color, facial_hair_thickness
                        (the colour drawn is ``facial_hair_rgb(factors)``: the
                        palette colour, pushed away from the skin if too close)

The continuous style parameters exist (and stay fixed) whether the
attribute is on or off, so switching an attribute on and off again returns
the same face.

Determinism: the factors come from one ``np.random.default_rng(seed)``
matrix of uniforms, ``[n, F]`` filled row by row, so the first ``m`` faces of
``sample(n, seed)`` are ``sample(m, seed)``; rendering uses only IEEE basic
arithmetic and ``sqrt`` (no ``exp``/``sin``/reductions, whose SIMD
implementations differ between CPUs), so a seed gives the same bytes on any
machine. Each image is rendered independently of the others in its batch.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from keras_csvae.data import registry

ATTRIBUTES = ("glasses", "smile", "facial_hair")
STYLES = {
    "glasses": ("round", "square", "sunglasses"),
    "smile": ("closed", "open", "grin"),
    "facial_hair": ("moustache", "goatee", "full_beard"),
}
HAIR_STYLES = ("short", "long", "afro", "bald")
IMAGE_SIZES = (32, 64)

# A distinct fixed seed per split; the registry and the tfds builder share them.
SPLIT_SEEDS = {"train": 20180101, "validation": 20180102, "test": 20180103}
DEFAULT_SPLIT_SIZES = {"train": 20000, "validation": 2000, "test": 2000}

# (name, low, high, width): uniform factors; width 3 means an RGB colour.
_NUISANCE_UNIFORM = (
    ("face_x", 0.44, 0.56, 1),
    ("face_y", 0.43, 0.50, 1),
    ("face_size", 0.245, 0.29, 1),
    ("face_aspect", 1.12, 1.28, 1),
    ("skin_tone", 0.0, 1.0, 1),
    ("hair_color", 0.0, 1.0, 1),
    ("eye_spacing", 0.33, 0.43, 1),
    ("eye_size", 0.85, 1.15, 1),
    ("background_color", 0.45, 0.95, 3),
    ("shirt_color", 0.1, 0.85, 3),
    ("light_x", -0.3, 0.3, 1),
    ("light_y", -0.3, 0.3, 1),
)
# Continuous style parameters of each attribute: (name, low, high).
_STYLE_UNIFORM = {
    "glasses": (("glasses_color", 0.0, 1.0), ("glasses_size", 0.9, 1.1)),
    "smile": (("smile_curvature", 0.0, 1.0), ("smile_width", 0.9, 1.1)),
    "facial_hair": (
        ("facial_hair_color", 0.0, 1.0),
        ("facial_hair_thickness", 0.8, 1.2),
    ),
}



def _rgb(*rows) -> np.ndarray:
    """``[len(rows), 3]`` float64 colours in [0, 1] from 0..255 triples."""
    return np.array(rows, np.float64) / 255.0


SKIN_PALETTE = _rgb(
    (255, 224, 196), (241, 194, 160), (224, 172, 130),
    (198, 134, 90), (160, 100, 65), (112, 72, 48),
)
HAIR_PALETTE = _rgb(
    (30, 25, 25), (80, 48, 28), (135, 70, 32), (205, 160, 85), (175, 175, 175),
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


def _check_image_size(image_size) -> int:
    if image_size not in IMAGE_SIZES:
        raise registry.DatasetError(
            f"synthetic_faces renders {' or '.join(map(str, IMAGE_SIZES))} px "
            f"images; got image_size={image_size!r}."
        )
    return int(image_size)


def _palette(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Colours ``[n, 3]`` at positions ``t`` ``[n]`` in ``[0, 1]`` along a palette
    (piecewise linear between its rows)."""
    position = np.clip(t, 0.0, 1.0) * (len(palette) - 1)
    lower = np.minimum(np.floor(position).astype(np.int64), len(palette) - 2)
    frac = (position - lower)[:, None]
    return palette[lower] * (1.0 - frac) + palette[lower + 1] * frac


def slice_factors(factors: dict, index) -> dict:
    """The factors of a subset of faces (``index``: a slice or index array)."""
    return {name: value[index] for name, value in factors.items()}


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
            self.rows = slice(int(max(np.floor(np.min(top)) - 1, 0)),
                              int(min(np.ceil(np.max(bottom)) + 1, size)))
            self.cols = slice(int(max(np.floor(np.min(left)) - 1, 0)),
                              int(min(np.ceil(np.max(right)) + 1, size)))
        centres = np.arange(size, dtype=_F32) + _F32(0.5)
        self.X = centres[self.cols][None, None, :]
        self.Y = centres[self.rows][None, :, None]

    @classmethod
    def full(cls, size: int) -> "_Window":
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


class SyntheticFaces:
    """Renderer of cartoon faces with known attributes, styles and factors.

    Args:
      image_size: 32 or 64 (anything else raises ``DatasetError``).
      attribute_probs: probability of each attribute being on (``k`` floats
        in ATTRIBUTES order); the labels are sampled independently.
      chunk_size: faces rendered per numpy pass (a cache / Python-overhead
        trade-off; the result does not depend on it). Default: 64 at 64 px,
        256 at 32 px (about 1 MB of float32 canvas, which fits in L2).
    """

    attributes = ATTRIBUTES
    styles = STYLES
    hair_styles = HAIR_STYLES

    def __init__(self, image_size: int = 64, attribute_probs=(0.5, 0.5, 0.5),
                 chunk_size: int | None = None):
        self.image_size = _check_image_size(image_size)
        probs = np.asarray(attribute_probs, np.float64)
        if probs.shape != (len(ATTRIBUTES),) or np.any((probs < 0) | (probs > 1)):
            raise ValueError(
                f"attribute_probs must be {len(ATTRIBUTES)} probabilities, "
                f"got {attribute_probs!r}."
            )
        self.attribute_probs = probs
        self.chunk_size = int(chunk_size or 262144 // self.image_size**2)
        # Test hooks: painting only inside bounding windows, and clipping
        # each attribute to its mask, must both be invisible.
        self._use_windows = True
        self._clip_to_masks = True

    # ---------------------------------------------------------------- factors

    @property
    def factor_names(self) -> tuple[str, ...]:
        """Every key of a factors dict, in sampling order."""
        names = [name for name, *_ in _NUISANCE_UNIFORM] + ["hair_style"]
        for attribute in ATTRIBUTES:
            names += [attribute, f"{attribute}_style", f"{attribute}_style_u"]
            names += [name for name, *_ in _STYLE_UNIFORM[attribute]]
        return tuple(names)

    @property
    def nuisance_names(self) -> tuple[str, ...]:
        """The factors independent of the labels (what ``z`` should hold)."""
        return tuple(name for name, *_ in _NUISANCE_UNIFORM) + ("hair_style",)

    def sample_factors(self, n: int, seed: int) -> dict[str, np.ndarray]:
        """Samples the factors of ``n`` faces (see the module docstring)."""
        columns = self._columns()
        uniforms = np.random.default_rng(seed).random((n, columns["_total"]))
        factors: dict[str, np.ndarray] = {}
        for name, low, high, width in _NUISANCE_UNIFORM:
            u = uniforms[:, columns[name] : columns[name] + width]
            factors[name] = low + (high - low) * (u if width > 1 else u[:, 0])
        factors["hair_style"] = self._categorical(
            uniforms[:, columns["hair_style"]], len(HAIR_STYLES)
        )
        for attribute, prob in zip(ATTRIBUTES, self.attribute_probs):
            on = (uniforms[:, columns[attribute]] < prob).astype(np.int32)
            style_u = uniforms[:, columns[f"{attribute}_style_u"]]
            factors[attribute] = on
            factors[f"{attribute}_style"] = np.where(
                on == 1, self._categorical(style_u, len(STYLES[attribute])), -1
            ).astype(np.int32)
            factors[f"{attribute}_style_u"] = style_u
            for name, low, high in _STYLE_UNIFORM[attribute]:
                factors[name] = low + (high - low) * uniforms[:, columns[name]]
        return {name: factors[name] for name in self.factor_names}

    @staticmethod
    def _columns() -> dict[str, int]:
        """Column of each factor in the uniform matrix (fixed order: adding a
        factor at the end would keep every existing face)."""
        columns, total = {}, 0
        for name, _, _, width in _NUISANCE_UNIFORM:
            columns[name], total = total, total + width
        names = ["hair_style"]
        for attribute in ATTRIBUTES:
            names += [attribute, f"{attribute}_style_u"]
            names += [name for name, *_ in _STYLE_UNIFORM[attribute]]
        for name in names:
            columns[name], total = total, total + 1
        columns["_total"] = total
        return columns

    @staticmethod
    def _categorical(u: np.ndarray, count: int) -> np.ndarray:
        return np.minimum(np.floor(u * count), count - 1).astype(np.int32)

    @staticmethod
    def labels(factors: dict) -> np.ndarray:
        """int32 ``[n, k]`` labels in ATTRIBUTES order."""
        return np.stack([factors[a] for a in ATTRIBUTES], axis=1).astype(np.int32)

    @staticmethod
    def style_of(factors: dict, attribute: str) -> np.ndarray:
        """int32 ``[n]`` ground-truth style id of ``attribute`` (index into
        ``STYLES[attribute]``), -1 where the attribute is off."""
        _check_attribute(attribute)
        return np.where(factors[attribute] == 1, factors[f"{attribute}_style"], -1
                        ).astype(np.int32)

    def sample(self, n: int, seed: int):
        """Samples and renders ``n`` faces.

        Returns:
          ``(images, labels, factors)``: uint8 ``[n, S, S, 3]``, int32
          ``[n, k]`` and the factors dict.
        """
        factors = self.sample_factors(n, seed)
        return self.render(factors), self.labels(factors), factors

    def iter_chunks(self, n: int, seed: int, chunk: int = 512
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
        """``sample(n, seed)`` in consecutive pieces of at most ``chunk`` faces."""
        factors = self.sample_factors(n, seed)
        for start in range(0, n, chunk):
            part = slice_factors(factors, slice(start, start + chunk))
            yield self.render(part), self.labels(part), part

    # ---------------------------------------------------------- counterfactual

    def counterfactual(self, factors: dict, attribute: str, value, style=None):
        """The same faces with ``attribute`` set to ``value``.

        Args:
          factors: a factors dict (``[n]`` arrays).
          attribute: one of ATTRIBUTES.
          value: 0 or 1 (scalar or ``[n]``).
          style: where switched on: a style id or name (scalar or ``[n]``);
            None keeps the current style of faces that are already on and
            gives the others ``floor(A_style_u * num_styles)`` (the style
            they were sampled with, deterministic).

        Returns:
          ``(images, new_factors)``: uint8 ``[n, S, S, 3]``; pixels outside
          ``render(..., return_masks=True)[1][attribute]`` equal those of
          ``render(factors)``.
        """
        _check_attribute(attribute)
        n = len(factors[attribute])
        value = np.broadcast_to(np.asarray(value), (n,)).astype(np.int32)
        if np.any((value != 0) & (value != 1)):
            raise ValueError(f"value must be 0 or 1, got {np.unique(value)}.")
        num_styles = len(STYLES[attribute])
        if style is None:
            default = self._categorical(factors[f"{attribute}_style_u"], num_styles)
            style = np.where(factors[attribute] == 1,
                             factors[f"{attribute}_style"], default)
        else:
            if isinstance(style, str):
                style = self.style_id(attribute, style)
            style = np.broadcast_to(np.asarray(style), (n,)).astype(np.int32)
            if np.any((style < 0) | (style >= num_styles)):
                raise ValueError(
                    f"{attribute} styles are 0..{num_styles - 1} {STYLES[attribute]}; "
                    f"got {np.unique(style)}."
                )
        new_factors = dict(factors)
        new_factors[attribute] = value
        new_factors[f"{attribute}_style"] = np.where(value == 1, style, -1
                                                     ).astype(np.int32)
        return self.render(new_factors), new_factors

    @staticmethod
    def style_id(attribute: str, style_name: str) -> int:
        _check_attribute(attribute)
        if style_name not in STYLES[attribute]:
            raise ValueError(
                f"Unknown {attribute} style {style_name!r}; use one of {STYLES[attribute]}."
            )
        return STYLES[attribute].index(style_name)

    # -------------------------------------------------------------- rendering

    def render(self, factors: dict, return_masks: bool = False):
        """Renders faces from their factors.

        Returns:
          uint8 ``[n, S, S, 3]``; with ``return_masks`` also a dict attribute
          -> bool ``[n, S, S]`` of the pixels that attribute may change (the
          union of what it touches on and off, in any style; it depends on the
          nuisance factors only).
        """
        missing = set(self.factor_names) - set(factors)
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
        light = (window.param(f["light_x"] / s) * (window.X - centre)
                 + window.param(f["light_y"] / s) * (window.Y - centre))
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
        with self._patch(canvas, slice(None), shoulder_y - 1, shoulder_y + 2 * b,
                         cx - 1.8 * a, cx + 1.8 * a) as p:
            if not p.empty:
                shirt = _ellipse(p.X - p.param(cx), p.Y - p.param(shoulder_y + 0.6 * b),
                                 p.param(1.75 * a), p.param(0.6 * b))
                p.paint(shirt, p.color(f["shirt_color"]))
        neck_top, neck_bottom = cy + 0.4 * b, cy + 0.98 * b
        with self._patch(canvas, slice(None), neck_top, neck_bottom + 0.16 * b,
                         cx - 0.45 * a, cx + 0.45 * a) as p:
            if not p.empty:
                dx = p.X - p.param(cx)
                neck = _slab(dx, p.param(0.4 * a)) * _slab(
                    p.Y - p.param((neck_top + neck_bottom) / 2),
                    p.param((neck_bottom - neck_top) / 2))
                collar = _ellipse(dx, p.Y - p.param(neck_bottom), p.param(0.4 * a),
                                  p.param(0.14 * b))
                neck_color = p.color(g.skin * 0.86)
                p.paint(neck, neck_color)
                p.paint(collar, neck_color)

    def _paint_hair_back(self, canvas, f, g):
        """Hair behind the head: long hair and afro."""
        cx, cy, a, b = g.cx, g.cy, g.a, g.b
        long_index = np.flatnonzero(f["hair_style"] == HAIR_STYLES.index("long"))
        with self._patch(canvas, long_index, cy - 1.15 * b, cy + 1.2 * b,
                         cx - 1.32 * a, cx + 1.32 * a) as p:
            if not p.empty:
                back = _ellipse(p.X - p.param(cx), p.Y - p.param(cy + 0.15 * b),
                                p.param(1.3 * a), p.param(1.28 * b))
                back *= _above(p.Y - p.param(cy + 1.15 * b))
                p.paint(back, p.color(g.hair))
        afro_index = np.flatnonzero(f["hair_style"] == HAIR_STYLES.index("afro"))
        with self._patch(canvas, afro_index, cy - 1.3 * b, cy + 0.75 * b,
                         cx - 1.5 * a, cx + 1.5 * a) as p:
            if not p.empty:
                afro = _ellipse(p.X - p.param(cx), p.Y - p.param(cy - 0.3 * b),
                                p.param(1.48 * a), p.param(1.0 * b))
                p.paint(afro, p.color(g.hair))

    def _paint_head(self, canvas, f, g):
        """Ears, then the head: an egg, narrower towards the chin."""
        cx, cy, a, b = g.cx, g.cy, g.a, g.b
        ear_rx, ear_ry = 0.17 * a, 0.24 * b
        with self._patch(canvas, slice(None), cy - 0.02 * b - ear_ry,
                         cy - 0.02 * b + ear_ry, cx - a - ear_rx,
                         cx + a + ear_rx) as p:
            if not p.empty:
                ears = _ellipse(np.abs(p.X - p.param(cx)) - p.param(0.97 * a),
                                p.Y - p.param(cy - 0.02 * b), p.param(ear_rx), p.param(ear_ry))
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
            with self._patch(canvas, index, cy - 1.08 * b, cy + 0.2 * b,
                             cx - 1.08 * a, cx + 1.08 * a) as p:
                if p.empty:
                    continue
                dx = p.X - p.param(cx)
                cap = _coverage(self._egg_inside(p, g, 1.07, 1.05, -0.03))
                u = dx / p.param(a)
                hairline = p.param(cy + centre * b) + p.param(0.5 * b) * (u * u)
                cap *= _above(p.Y - hairline)
                p.paint(cap, p.color(g.hair))
        bald = np.flatnonzero(f["hair_style"] == HAIR_STYLES.index("bald"))
        with self._patch(canvas, bald, cy - 0.5 * b, cy + 0.15 * b,
                         cx - 1.08 * a, cx + 1.08 * a) as p:
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
        with self._patch(canvas, slice(None), brow_y - 0.1 * a, g.eye_y + eye_ry,
                         cx - g.eye_dx - 0.3 * a, cx + g.eye_dx + 0.3 * a) as p:
            if not p.empty:
                dx = np.abs(p.X - p.param(cx)) - p.param(g.eye_dx)
                brows = _hcapsule(dx, p.Y - p.param(brow_y), p.param(0.16 * a), p.param(g.line))
                p.paint(brows, p.color(g.hair * 0.75))
                dy = p.Y - p.param(g.eye_y)
                p.paint(_ellipse(dx, dy, p.param(eye_rx), p.param(eye_ry)), _EYE_WHITE)
                pupil = p.param(np.maximum(0.09 * a * f["eye_size"], 0.75))
                p.paint(_ellipse(dx, dy, pupil, pupil), _PUPIL)
        nose_y = g.cy + 0.17 * b
        with self._patch(canvas, slice(None), nose_y - 0.12 * a, nose_y + 0.12 * a,
                         cx - 0.1 * a, cx + 0.1 * a) as p:
            if not p.empty:
                nose = _ellipse(p.X - p.param(cx), p.Y - p.param(nose_y), p.param(0.08 * a),
                                p.param(0.1 * a))
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
            return (g.eye_y - half_height, g.eye_y + half_height,
                    cx - 1.02 * a - g.frame - 1.0, cx + 1.02 * a + g.frame + 1.0)
        if attribute == "smile":
            # The closed arc's corners rise to mouth_y - 0.05 a, and its stroke
            # (line + halo) is steep there: up to twice as tall.
            stroke = g.line + g.halo + 1.0
            return (g.mouth_y - 0.1 * a - 2 * stroke, g.mouth_y + 0.42 * a + stroke,
                    cx - 0.55 * a - stroke, cx + 0.55 * a + stroke)
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

    def _attribute_patch(self, canvas, g, attribute, index) -> _Patch:
        return self._patch(canvas, index, *self._mask_box(g, attribute))

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
        style = self.style_of(f, "facial_hair")
        color = self.facial_hair_rgb(f)
        thickness = f["facial_hair_thickness"]
        for style_id, name in enumerate(STYLES["facial_hair"]):
            index = np.flatnonzero(style == style_id)
            with self._attribute_patch(canvas, g, "facial_hair", index) as p:
                if p.empty:
                    continue
                mask = self._mask(p, g, "facial_hair")
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
                    hair = _ellipse(dx, p.Y - p.param(chin_y), p.param(0.2 * a * thickness),
                                    p.param(0.24 * a))
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
        style = self.style_of(f, "smile")
        # Dark enough to stand out from any skin, even as a 1 px line.
        lips = g.skin * 0.25 + _LIP_DARK * 0.75
        for style_id, name in [(-1, "neutral"), *enumerate(STYLES["smile"])]:
            index = np.flatnonzero(style == style_id)
            with self._attribute_patch(canvas, g, "smile", index) as p:
                if p.empty:
                    continue
                mask = self._mask(p, g, "smile")
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
        return (p.param(half_width), upper, lower, p.param(top_y), p.param(upper_sag),
                p.param(lower_sag))

    def _mouth_shape(self, p, f, g, name):
        """A function ``grow [m, 1, 1] -> coverage [m, h, w]`` of the mouth's
        outline stroke thickened by ``grow`` px."""
        a = g.a
        dx = p.X - p.param(g.cx)
        line = p.param(g.line)
        if name == "neutral":
            return lambda grow: _hcapsule(dx, p.Y - p.param(g.mouth_y), p.param(0.2 * a),
                                          line + grow)
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
            return lambda grow: (_coverage(line + grow - distance)
                                 * _slab(dx, p.param(half_width) + grow))
        half_width, upper, lower, *_ = self._mouth_arcs(p, f, g, name)

        def outlined_region(grow):
            thick = line + grow
            region = _coverage(p.Y - upper + thick) * _above(p.Y - lower - thick)
            # Cut the region's pointed tips beyond the mouth corners.
            return region * _slab(dx, half_width + thick)

        return outlined_region

    def _paint_mouth_inside(self, p, f, g, name, mask, lips):
        half_width, upper, lower, top_y, upper_sag, lower_sag = self._mouth_arcs(
            p, f, g, name)
        inside = _coverage(p.Y - upper) * _above(p.Y - lower)
        if name == "grin":  # all teeth, with a line between the rows
            p.paint(self._clip(inside, mask), _TEETH)
            middle = _coverage(p.param(g.line) * _F32(0.6)
                               - np.abs(p.Y - (upper + lower) * _F32(0.5)))
            p.paint(self._clip(middle * inside, mask), p.color(lips))
            return
        p.paint(self._clip(inside, mask), _MOUTH_INSIDE)
        teeth = inside * _above(p.Y - upper - p.param(0.08 * g.a))
        p.paint(self._clip(teeth, mask), _TEETH)
        tongue = _ellipse(p.X - p.param(g.cx), p.Y - (top_y + lower_sag),
                          half_width * _F32(0.6), (lower_sag - upper_sag) * _F32(0.4))
        p.paint(self._clip(tongue * inside, mask), _TONGUE)

    def _paint_glasses(self, canvas, f, g):
        cx, a = g.cx, g.a
        style = self.style_of(f, "glasses")
        frame_color = _palette(FRAME_PALETTE, f["glasses_color"])
        lens = 0.74 * g.eye_dx * f["glasses_size"]  # <= g.lens_max
        for style_id, name in enumerate(STYLES["glasses"]):
            index = np.flatnonzero(style == style_id)
            with self._attribute_patch(canvas, g, "glasses", index) as p:
                if p.empty:
                    continue
                mask = self._mask(p, g, "glasses")
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
                    p.paint(self._clip(lens_fill, mask),
                            p.color(_DARK_LENS * 0.8 + frame_color * 0.2))
                    glint = _ellipse(dx + rx * _F32(0.35), dy + ry * _F32(0.4),
                                     rx * _F32(0.22), ry * _F32(0.16))
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
                temples = _hcapsule(np.abs(centre_dx) - (temple_start + temple_half),
                                    bar_y, temple_half, frame)
                bars = np.maximum(bridge, temples)
                p.paint(self._clip(bars, mask), p.color(frame_color))


def _check_attribute(attribute: str) -> None:
    if attribute not in ATTRIBUTES:
        raise ValueError(f"Unknown attribute {attribute!r}; use one of {ATTRIBUTES}.")


# --------------------------------------------------------------------------
# Registry: keras_csvae.data.load("synthetic_faces", split, image_size=...,
# num_examples=...).
# --------------------------------------------------------------------------

# CPU-sized defaults: widths a quarter of the paper's (conv 64/128/256, dense
# 2048, decoder 256/128/32; pass those with --model-config on a GPU). β2 = 5
# instead of 1: with β2 = 1 the posteriors of W_i stay far from p(w|y) within
# this budget and edits at the prior mean leave the face (see RESULTS.md).
DEFAULTS = {
    "epochs": 15,
    "batch_size": 64,
    "model": {
        "architecture": "conv",
        "z_dim": 16,
        "w_dim": 2,
        "conv_filters": [16, 32, 64],
        "dense_units": 256,
        "decoder_filters": [64, 32, 16],
        "betas": [20.0, 5.0, 0.2, 10.0, 1.0],
    },
}


def split_size(split: str, num_examples=None) -> int:
    """Number of faces in ``split``: ``num_examples`` or the default size."""
    if num_examples is None:
        return DEFAULT_SPLIT_SIZES[split]
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) \
            or num_examples < 1:
        raise registry.DatasetError(
            f"num_examples must be a positive integer, got {num_examples!r}."
        )
    return int(num_examples)


def dataset_info(image_size: int = 64, num_examples=None) -> registry.DatasetInfo:
    size = _check_image_size(image_size)
    return registry.DatasetInfo(
        name="synthetic_faces",
        input_shape=(size, size, 3),
        label_names=ATTRIBUTES,
        description=(
            "procedural cartoon faces: glasses, smile, facial hair, 3 styles "
            "each, exact counterfactuals (rendered, no download)"
        ),
    )


def load_arrays(split: str, image_size: int = 64, num_examples=None):
    """``(x, y)``: float32 ``[n, S, S, 3]`` in ``[0, 1]`` and float32 ``[n, 3]``.

    The first ``num_examples`` faces of the split (its fixed seed), so a small
    ``num_examples`` is a prefix of the full split.
    """
    renderer = SyntheticFaces(image_size)
    n = split_size(split, num_examples)
    x = np.empty((n, renderer.image_size, renderer.image_size, 3), np.float32)
    y = np.empty((n, len(ATTRIBUTES)), np.float32)
    start = 0
    for images, labels, _ in renderer.iter_chunks(n, SPLIT_SEEDS[split]):
        stop = start + len(images)
        np.divide(images, np.float32(255.0), out=x[start:stop], dtype=np.float32)
        y[start:stop] = labels
        start = stop
    return x, y


class _RenderedChunks:
    """Renders a split lazily, chunk by chunk, and keeps the uint8 chunks so
    later epochs do not render again (``[n, S, S, 3]`` uint8: 245 MB for the
    default train split at 64 px)."""

    def __init__(self, renderer: SyntheticFaces, n: int, seed: int, chunk: int = 512):
        self.renderer, self.n, self.seed, self.chunk = renderer, n, seed, chunk
        self._factors = None
        self._chunks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self):
        if self._factors is None:
            self._factors = self.renderer.sample_factors(self.n, self.seed)
        for start in range(0, self.n, self.chunk):
            if start not in self._chunks:
                part = slice_factors(self._factors, slice(start, start + self.chunk))
                self._chunks[start] = (
                    self.renderer.render(part),
                    self.renderer.labels(part).astype(np.float32),
                )
            yield self._chunks[start]


def load_tf_data(split: str, image_size: int = 64, num_examples=None):
    """A ``tf.data.Dataset`` of unbatched ``(x, y)``: uint8 ``[S, S, 3]`` in
    ``[0, 255]`` (the registry's stored form; ``registry.load`` gives float32
    in ``[0, 1]``, the values of ``load_arrays``) and float32 ``[3]``.

    Rendered on the fly during the first pass and kept in memory as uint8.
    """
    import tensorflow as tf

    renderer = SyntheticFaces(image_size)
    n = split_size(split, num_examples)
    size = renderer.image_size
    chunks = tf.data.Dataset.from_generator(
        _RenderedChunks(renderer, n, SPLIT_SEEDS[split]),
        output_signature=(
            tf.TensorSpec((None, size, size, 3), tf.uint8),
            tf.TensorSpec((None, len(ATTRIBUTES)), tf.float32),
        ),
    )

    return chunks.unbatch().apply(tf.data.experimental.assert_cardinality(n))


registry.register_dataset(
    "synthetic_faces",
    registry.Dataset(
        info_fn=dataset_info,
        arrays_fn=load_arrays,
        tf_data_fn=load_tf_data,
        defaults=DEFAULTS,
        options=("image_size", "num_examples"),
    ),
)
