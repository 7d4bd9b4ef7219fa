"""What an export says about itself: ``metadata.json`` and ONNX ``metadata_props``.

``metadata.json`` (at ``EXPORT_DIR/metadata.json`` and in each SavedModel
version's ``assets.extra/``) holds: the model (type, labels, data shape,
latent sizes, prior), the training config and its digest, package versions,
every SavedModel signature and ONNX file with its inputs and outputs, the
precision story, the verification errors and the int8 measurements. The
file and signature names, and the fields that serving and the edge editor
read, are those of ``serving.runtime.contract``.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
from pathlib import Path

from serving.runtime.contract import SERVING_DEFAULT, edit_strength_json, savedmodel_path

PACKAGES = ("keras-csvae", "tensorflow", "keras", "tensorflow-probability", "tf2onnx", "onnx", "onnxruntime", "numpy")
FORMAT_VERSION = 1


def package_versions() -> dict[str, str | None]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _jsonable(value):
    """``value`` with tuples as lists, dataclasses as dicts, numpy scalars as Python."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def model_description(model, model_type: str | None = None) -> dict:
    """The model as a client needs it: labels, shapes, latent sizes, prior.

    Every model has ``z_dim``, ``w_dim``, ``prior`` and ``edit_strength`` (the
    baselines' single latent has ``z_dim + k * w_dim`` dimensions and ignores
    the prior and the strength).
    """
    data_shape = [int(d) for d in model.data_shape]
    description = {
        "model_type": model_type or type(model).__name__.lower(),
        "class_name": type(model).__name__,
        "label_names": list(model.label_names),
        "num_labels": int(model.num_labels),
        "data_shape": data_shape,
        "is_image": len(data_shape) == 3,
    }
    if len(data_shape) == 3:
        description["image_shape"] = data_shape
        description["pixel_range"] = [0.0, 1.0]
    description["z_dim"], description["w_dim"] = int(model.z_dim), int(model.w_dim)
    description["prior"] = _jsonable(model.prior)
    # where manipulate puts a label switched on: a number, or one per label
    description["edit_strength"] = edit_strength_json(model.edit_strength)
    config = dict(model.get_config())
    config.pop("dtype", None)  # the training policy; exports compute in float32
    description["model_config"] = _jsonable(config)
    return description


def onnx_metadata_props(description: dict, config_digest: str | None) -> dict[str, str]:
    """String key/values for ONNX ``metadata_props`` (JSON where structured)."""
    props = {
        "model_type": description["model_type"],
        "label_names": json.dumps(description["label_names"]),
        "data_shape": json.dumps(description["data_shape"]),
        "keras_csvae_version": package_versions()["keras-csvae"] or "unknown",
    }
    if "image_shape" in description:
        props["image_shape"] = json.dumps(description["image_shape"])
        props["pixel_range"] = json.dumps(description["pixel_range"])
    for key in ("z_dim", "w_dim"):
        if key in description:
            props[key] = str(description[key])
    if "prior" in description:
        props["prior"] = json.dumps(description["prior"])
    if config_digest:
        props["training_config_digest"] = config_digest
    return props


def build_metadata(
    *, name, version, description, config, signatures, onnx_files, precision, verification, int8
) -> dict:
    """The content of ``metadata.json`` (see the module docstring)."""
    return _jsonable(
        {
            "format_version": FORMAT_VERSION,
            "name": name,
            "version": version,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "model": description,
            "training_config": config.to_dict() if config is not None else None,
            "training_config_digest": config.digest() if config is not None else None,
            "versions": package_versions(),
            "precision": precision,
            "savedmodel": None
            if signatures is None
            else {
                "path": savedmodel_path(name, version),
                "default_signature": SERVING_DEFAULT,
                "signatures": signatures,
            },
            "onnx": onnx_files,
            "int8": int8,
            "verification": verification,
        }
    )


def read_json(path):
    return json.loads(Path(path).read_text())
