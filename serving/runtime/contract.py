"""The artefact contract: what ``csvae export`` writes and what serving and the edge editor read.

An export directory::

    EXPORT_DIR/metadata.json                    # METADATA_FILE, read with read_metadata
    EXPORT_DIR/onnx/<signature>.onnx            # onnx_file(name): encode, decode, manipulate, edit_at
    EXPORT_DIR/savedmodel/models.config         # TF Serving's --model_config_file
    EXPORT_DIR/savedmodel/<name>/<version>/     # savedmodel_path(name, version)

The fields of ``metadata.json`` that readers rely on:

- ``name``, ``version``: the served model name and its SavedModel version.
- ``model``: ``label_names`` ``[k]``, ``data_shape``, ``image_shape`` ``[H, W, C]``
  (image models only), ``model_type``; for a CSVAE also ``w_dim``, ``prior``
  (the four ``PRIOR_FIELDS`` of ``p(w_i | y_i)``) and ``edit_strength``
  (``edit_point``: a number, or a list with one per label; missing in
  exports made before it: 1).
- ``onnx``: ``{signature: {"file": "onnx/<signature>.onnx", "inputs", "outputs"}}``;
  a name with a dot (``manipulate.int8``) is an optional variant of a signature.

Signatures: ``SERVING_DEFAULT`` serves ``DEFAULT_EDIT_SIGNATURE``; image models
add ``IMAGE_SIGNATURE`` (``IMAGE_INPUT`` encoded pictures in, ``IMAGE_OUTPUT``
PNGs out). This module imports neither TensorFlow nor Keras: the model's
TensorFlow code computes the prior with ``prior_parameters`` too.
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

METADATA_FILE = "metadata.json"
ONNX_DIR = "onnx"
SAVEDMODEL_DIR = "savedmodel"
MODELS_CONFIG = "models.config"

SERVING_DEFAULT = "serving_default"  # the signature that requests naming none get
DEFAULT_EDIT_SIGNATURE = "manipulate"  # what SERVING_DEFAULT serves
IMAGE_SIGNATURE = "manipulate_image"
IMAGE_INPUT = "image_bytes"
# TF Serving's REST API returns a DT_STRING output as {"b64": ...} only when
# its name ends in "_bytes".
IMAGE_OUTPUT = "edited_image_bytes"

PRIOR_FIELDS = ("mean_absent", "scale_absent", "mean_present", "scale_present")
STYLE_SIDE = 3  # a style is one of STYLE_SIDE**2 points of W_i
STYLE_EXTENT = 2.0  # the style grid spans mean ± STYLE_EXTENT · scale of p(w_i | y_i = 1)


class ContractError(ValueError):
    """An export or an input the runtime cannot use; one line for the CLI."""


def onnx_file(name: str) -> str:
    """``onnx/<name>.onnx``: where an export writes signature ``name``, relative to ``EXPORT_DIR``."""
    return f"{ONNX_DIR}/{name}.onnx"


def savedmodel_path(name: str, version: int) -> str:
    """``savedmodel/<name>/<version>``: TF Serving's model base path layout, relative to ``EXPORT_DIR``."""
    return f"{SAVEDMODEL_DIR}/{name}/{version}"


def read_metadata(export_dir) -> dict:
    """``EXPORT_DIR/metadata.json`` as a dict; ``ContractError`` when it is missing or broken."""
    path = Path(export_dir) / METADATA_FILE
    if not path.is_file():
        raise ContractError(
            f"{export_dir} is not an export: {METADATA_FILE} is missing (make one with `csvae export`)."
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ContractError(f"{path} is not readable JSON: {err}") from err


def onnx_files(metadata: dict) -> dict[str, str]:
    """``{signature: file relative to EXPORT_DIR}`` of the float32 ONNX files
    (optional variants such as ``manipulate.int8`` left out)."""
    return {name: info["file"] for name, info in (metadata.get("onnx") or {}).items() if "." not in name}


# -- p(w | y) and styles --------------------------------------------------------------------------
def prior_parameters(y_columns, prior):
    """Mean and scale of ``p(w | y)`` given the label of each column of ``w``.

    ``y_columns`` ``[n, k·w_dim]``: label ``i`` repeated over its ``w_dim``
    columns, a numpy array or a TensorFlow tensor (only ``+ - *`` with Python
    floats are used, so the model's graphs and numpy compute the same float32
    arithmetic). ``prior``: a mapping with ``PRIOR_FIELDS``. Returns
    ``mean = y·mean_present + (1−y)·mean_absent`` and the same for the scale;
    fractional labels interpolate.
    """
    mean_absent, scale_absent, mean_present, scale_present = (float(prior[field]) for field in PRIOR_FIELDS)
    mean = y_columns * mean_present + (1.0 - y_columns) * mean_absent
    scale = y_columns * scale_present + (1.0 - y_columns) * scale_absent
    return mean, scale


def prior_w(y, prior, w_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of ``p(w | y)``, each ``[n, k·w_dim]`` float32, from labels ``y`` ``[n, k]``."""
    return prior_parameters(np.repeat(np.asarray(y, np.float32), w_dim, axis=-1), prior)


def edit_point(y_columns, prior, strength=1.0):
    """Where an edit puts ``w`` for target labels: ``[n, k·w_dim]`` like ``prior_parameters``' mean.

    ``mean_absent + y · strength · (mean_present − mean_absent)``: a label
    switched off goes to the mean of ``p(w_i | y_i = 0)``; one switched on goes
    ``strength`` times the distance between the two means from the absent mean
    (``strength = 1``: the mean of ``p(w_i | y_i = 1)``, the paper's rule).
    ``strength``: a number, or ``strength_columns``' ``[k·w_dim]`` (one per
    label). Same arithmetic rules as ``prior_parameters`` (numpy or TensorFlow).
    """
    mean_absent, mean_present = float(prior["mean_absent"]), float(prior["mean_present"])
    if isinstance(strength, (int, float)):
        return y_columns * (float(strength) * (mean_present - mean_absent)) + mean_absent
    return y_columns * (np.asarray(strength, np.float32) * np.float32(mean_present - mean_absent)) + mean_absent


def strength_columns(strength, num_labels: int, w_dim: int):
    """``edit_strength`` per column of ``w``: the number itself, or for one
    strength per label (``check_edit_strength``) ``[k·w_dim]`` float32, label
    ``i``'s repeated over its ``w_dim`` columns."""
    strength = check_edit_strength(strength, num_labels)
    if isinstance(strength, float):
        return strength
    return np.repeat(np.asarray(strength, np.float32), w_dim)


def edit_w(y, prior, w_dim: int, strength=1.0) -> np.ndarray:
    """``edit_point`` of labels ``y`` ``[n, k]``: ``[n, k·w_dim]`` float32."""
    y = np.asarray(y, np.float32)
    columns = strength_columns(strength, y.shape[-1], w_dim)
    return np.asarray(edit_point(np.repeat(y, w_dim, axis=-1), prior, columns), np.float32)


def _check_one_strength(value, shown) -> float:
    try:
        strength = float(value)
    except (TypeError, ValueError):
        strength = float("nan")
    if not (np.isfinite(strength) and strength > 0) or isinstance(value, bool):
        raise ContractError(
            "edit_strength must be a finite number > 0 (1 is the prior's mean) "
            f"or a list of them, one per label; got {shown!r}."
        )
    return strength


def check_edit_strength(value, num_labels: int | None = None) -> float | tuple[float, ...]:
    """``value`` checked: a finite number > 0 (every label's strength) as a
    float, or a sequence of them, one per label (``num_labels`` of them when
    given), as a tuple of floats; ``ContractError`` otherwise."""
    if isinstance(value, (list, tuple, np.ndarray)):
        values = tuple(_check_one_strength(v, value) for v in value)
        if not values or (num_labels is not None and len(values) != num_labels):
            wanted = "one per label" if num_labels is None else f"{num_labels}, one per label"
            raise ContractError(f"edit_strength has {len(values)} values; expected {wanted}: {list(value)!r}.")
        return values
    return _check_one_strength(value, value)


def edit_strength_json(strength) -> float | list[float]:
    """A checked ``edit_strength`` as JSON: a number or a list of numbers."""
    strength = check_edit_strength(strength)
    return strength if isinstance(strength, float) else list(strength)


def edit_strength_argument(text: str) -> float | tuple[float, ...]:
    """argparse ``type`` of ``--edit-strength``: a number > 0 as a decimal or a
    fraction (``7/6``), or one per label separated by commas (``1,1,5/3``)."""
    try:
        values = [float(Fraction(part.strip())) for part in text.split(",")]
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"expected a number > 0 such as 1.5 or 7/6, or one per label such as 1,1,5/3; got {text!r}"
        ) from None
    try:
        return check_edit_strength(values[0] if len(values) == 1 else values)
    except ContractError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def style_grid(prior, w_dim: int, side: int = STYLE_SIDE, extent: float = STYLE_EXTENT) -> np.ndarray:
    """``side²`` fixed points of a label's subspace ``W_i``, ``[side², w_dim]`` float32.

    A regular grid over ``mean_present ± extent · scale_present`` in the first
    two axes (row-major, first axis slowest), other axes at the mean; with
    ``w_dim == 1``, ``side²`` points along the axis.
    """
    mean, scale = float(prior["mean_present"]), float(prior["scale_present"])
    points = np.full((side * side, w_dim), mean, np.float32)
    if w_dim == 1:
        points[:, 0] = mean + extent * scale * np.linspace(-1.0, 1.0, side * side)
    else:
        axis = mean + extent * scale * np.linspace(-1.0, 1.0, side)
        a, b = np.meshgrid(axis, axis, indexing="ij")
        points[:, 0], points[:, 1] = a.ravel(), b.ravel()
    return points
