"""The factors of ``synthetic_faces``: attributes, styles, sampling and counterfactuals.

The factors dict
----------------
``sample_factors(n, seed, attribute_probs)`` returns a ``dict[str, np.ndarray]``
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
                        by ``counterfactual_factors`` without an explicit style
    glasses_color, glasses_size             frame colour, lens size
    smile_curvature, smile_width            curvature, mouth width
    facial_hair_color, facial_hair_thickness
                        (the colour drawn is ``FaceRenderer.facial_hair_rgb``:
                        the palette colour, pushed away from the skin if too close)

The continuous style parameters exist (and stay fixed) whether the
attribute is on or off, so switching an attribute on and off again returns
the same face.

Determinism: the factors come from one ``np.random.default_rng(seed)``
matrix of uniforms, ``[n, F]`` filled row by row, so the first ``m`` faces of
``sample_factors(n, seed)`` are ``sample_factors(m, seed)``.
"""

from __future__ import annotations

import numpy as np

ATTRIBUTES = ("glasses", "smile", "facial_hair")
STYLES = {
    "glasses": ("round", "square", "sunglasses"),
    "smile": ("closed", "open", "grin"),
    "facial_hair": ("moustache", "goatee", "full_beard"),
}
HAIR_STYLES = ("short", "long", "afro", "bald")

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


def _factor_names() -> tuple[str, ...]:
    names = [name for name, *_ in _NUISANCE_UNIFORM] + ["hair_style"]
    for attribute in ATTRIBUTES:
        names += [attribute, f"{attribute}_style", f"{attribute}_style_u"]
        names += [name for name, *_ in _STYLE_UNIFORM[attribute]]
    return tuple(names)


# Every key of a factors dict, in sampling order.
FACTOR_NAMES = _factor_names()
# The factors independent of the labels (what ``z`` should hold).
NUISANCE_NAMES = tuple(name for name, *_ in _NUISANCE_UNIFORM) + ("hair_style",)


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


def _categorical(u: np.ndarray, count: int) -> np.ndarray:
    return np.minimum(np.floor(u * count), count - 1).astype(np.int32)


def check_attribute(attribute: str) -> None:
    if attribute not in ATTRIBUTES:
        raise ValueError(f"Unknown attribute {attribute!r}; use one of {ATTRIBUTES}.")


def sample_factors(n: int, seed: int, attribute_probs: np.ndarray) -> dict[str, np.ndarray]:
    """Samples the factors of ``n`` faces (see the module docstring); each
    attribute is on with its probability in ``attribute_probs`` ``[k]``."""
    columns = _columns()
    uniforms = np.random.default_rng(seed).random((n, columns["_total"]))
    factors: dict[str, np.ndarray] = {}
    for name, low, high, width in _NUISANCE_UNIFORM:
        u = uniforms[:, columns[name] : columns[name] + width]
        factors[name] = low + (high - low) * (u if width > 1 else u[:, 0])
    factors["hair_style"] = _categorical(uniforms[:, columns["hair_style"]], len(HAIR_STYLES))
    for attribute, prob in zip(ATTRIBUTES, attribute_probs):
        on = (uniforms[:, columns[attribute]] < prob).astype(np.int32)
        style_u = uniforms[:, columns[f"{attribute}_style_u"]]
        factors[attribute] = on
        factors[f"{attribute}_style"] = np.where(on == 1, _categorical(style_u, len(STYLES[attribute])), -1).astype(
            np.int32
        )
        factors[f"{attribute}_style_u"] = style_u
        for name, low, high in _STYLE_UNIFORM[attribute]:
            factors[name] = low + (high - low) * uniforms[:, columns[name]]
    return {name: factors[name] for name in FACTOR_NAMES}


def slice_factors(factors: dict, index) -> dict:
    """The factors of a subset of faces (``index``: a slice or index array)."""
    return {name: value[index] for name, value in factors.items()}


def labels(factors: dict) -> np.ndarray:
    """int32 ``[n, k]`` labels in ATTRIBUTES order."""
    return np.stack([factors[a] for a in ATTRIBUTES], axis=1).astype(np.int32)


def style_of(factors: dict, attribute: str) -> np.ndarray:
    """int32 ``[n]`` ground-truth style id of ``attribute`` (index into
    ``STYLES[attribute]``), -1 where the attribute is off."""
    check_attribute(attribute)
    return np.where(factors[attribute] == 1, factors[f"{attribute}_style"], -1).astype(np.int32)


def style_id(attribute: str, style_name: str) -> int:
    check_attribute(attribute)
    if style_name not in STYLES[attribute]:
        raise ValueError(f"Unknown {attribute} style {style_name!r}; use one of {STYLES[attribute]}.")
    return STYLES[attribute].index(style_name)


def counterfactual_factors(factors: dict, attribute: str, value, style=None) -> dict:
    """The same faces' factors with ``attribute`` set to ``value``.

    Args:
      factors: a factors dict (``[n]`` arrays).
      attribute: one of ATTRIBUTES.
      value: 0 or 1 (scalar or ``[n]``).
      style: where switched on: a style id or name (scalar or ``[n]``);
        None keeps the current style of faces that are already on and
        gives the others ``floor(A_style_u * num_styles)`` (the style
        they were sampled with, deterministic).
    """
    check_attribute(attribute)
    n = len(factors[attribute])
    value = np.broadcast_to(np.asarray(value), (n,)).astype(np.int32)
    if np.any((value != 0) & (value != 1)):
        raise ValueError(f"value must be 0 or 1, got {np.unique(value)}.")
    num_styles = len(STYLES[attribute])
    if style is None:
        default = _categorical(factors[f"{attribute}_style_u"], num_styles)
        style = np.where(factors[attribute] == 1, factors[f"{attribute}_style"], default)
    else:
        if isinstance(style, str):
            style = style_id(attribute, style)
        style = np.broadcast_to(np.asarray(style), (n,)).astype(np.int32)
        if np.any((style < 0) | (style >= num_styles)):
            raise ValueError(f"{attribute} styles are 0..{num_styles - 1} {STYLES[attribute]}; got {np.unique(style)}.")
    new_factors = dict(factors)
    new_factors[attribute] = value
    new_factors[f"{attribute}_style"] = np.where(value == 1, style, -1).astype(np.int32)
    return new_factors
