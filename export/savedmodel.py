"""Writing the SavedModel in TF Serving's layout, and its ``models.config``.

Layout (``base`` = ``EXPORT_DIR/savedmodel``)::

    base/models.config                 # for --model_config_file
    base/<name>/<version>/saved_model.pb
    base/<name>/<version>/variables/
    base/<name>/<version>/assets.extra/metadata.json
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from export.signatures import ServingFunction
from serving.runtime.contract import MODELS_CONFIG

SERVE_TAG = "serve"


def write_savedmodel(model, signatures: dict[str, ServingFunction], path) -> None:
    """Writes ``model``'s variables and one signature per entry of ``signatures``
    to ``path`` (a new version directory), with ``keras.export.ExportArchive``.

    Input specs keep their names, so signature inputs are named ``x``,
    ``y_target``... (not ``args_0``), with batch dim -1.
    """
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, function in signatures.items():
        archive.add_endpoint(name, function.fn, input_signature=list(function.input_specs))
    archive.write_out(os.fspath(path), verbose=False)  # verbose would print every endpoint's captures


def models_config_text(name: str, base_path: str | None = None) -> str:
    """TF Serving's ``--model_config_file`` (text protobuf) for one model.

    ``base_path`` is where the model's version directories are *inside the
    server* (``/models/<name>`` in the official Docker image). Every exported
    version is served, so clients can pin ``/versions/N``; the newest one
    answers requests without a version.
    """
    base_path = base_path or f"/models/{name}"
    return (
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { all {} }\n"
        "  }\n"
        "}\n"
    )


def write_models_config(base: Path, name: str) -> Path:
    path = Path(base) / MODELS_CONFIG
    path.write_text(models_config_text(name))
    return path


def saved_model_versions(model_dir: Path) -> list[int]:
    """The integer version directories under ``model_dir`` (as TF Serving sees them)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
