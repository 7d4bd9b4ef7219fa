"""Where an export goes, and how it gets there without ever being half-written.

Everything is built in a staging folder next to ``EXPORT_DIR`` (same
filesystem, so renames are atomic) and moved into place only after it has
been verified:

- a new ``EXPORT_DIR`` is one ``os.replace`` of the staging folder;
- an existing export gains a SavedModel version (older versions stay, as TF
  Serving expects), while its ``metadata.json``, ``onnx/`` and
  ``models.config`` are replaced by the new export's: they always describe
  the newest version. Replaced parts are moved aside first and restored if a
  later rename fails.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from export.errors import ExportError
from export.metadata import read_json
from export.savedmodel import saved_model_versions
from serving.runtime.contract import METADATA_FILE, MODELS_CONFIG, ONNX_DIR, SAVEDMODEL_DIR, savedmodel_path

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # TF Serving puts it in URLs and paths


def savedmodel_dir(root: Path, name: str, version: int) -> Path:
    return Path(root) / savedmodel_path(name, version)


def resolve_version(out, name: str, version: int | None, overwrite: bool) -> int:
    """Checks that ``out`` may receive export ``name`` and returns its version:
    ``version``, or one more than the newest already there (1 for a new export).

    Raises:
      ExportError: bad name or version, ``out`` is not an export of ``name``,
        or ``version`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if not NAME_PATTERN.match(name):
        raise ExportError(f"--name {name!r}: use letters, digits, '_', '.', '-' (it becomes a URL path part).")
    if version is not None and version < 1:
        raise ExportError(f"--version must be a positive integer, got {version}.")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; --out must be a directory.")
    if out.is_dir() and any(out.iterdir()):
        metadata_path = out / METADATA_FILE
        if not metadata_path.exists():
            raise ExportError(
                f"{out} is not empty and holds no export ({METADATA_FILE} missing); choose another --out."
            )
        try:
            existing = read_json(metadata_path).get("name")
        except ValueError as err:
            raise ExportError(f"{metadata_path} is not valid JSON ({err}); choose another --out.") from err
        if existing != name:
            raise ExportError(
                f"{out} holds the export of model {existing!r}, not {name!r}; choose another --out or --name "
                f"{existing}."
            )
    versions = saved_model_versions(out / SAVEDMODEL_DIR / name)
    if version is None:
        return (max(versions) + 1) if versions else 1
    if version in versions and not overwrite:
        raise ExportError(
            f"{savedmodel_dir(out, name, version)} already exists; pass --overwrite to replace it, "
            f"or omit --version to export version {max(versions) + 1}."
        )
    return version


def make_staging(out) -> Path:
    """A new, empty folder next to ``out`` for building the export."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def commit(staging: Path, out, name: str, version: int) -> None:
    """Moves the verified export from ``staging`` into ``out`` (see module docstring)."""
    out = Path(out).absolute()
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        return
    pieces = [
        Path(savedmodel_path(name, version)),
        Path(SAVEDMODEL_DIR) / MODELS_CONFIG,
        Path(ONNX_DIR),
        Path(METADATA_FILE),
    ]
    aside = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:8]}"
    moves = []  # (src, dst) done so far, undone in reverse on failure
    try:
        for piece in pieces:
            if (out / piece).exists():
                (aside / piece).parent.mkdir(parents=True, exist_ok=True)
                os.replace(out / piece, aside / piece)
                moves.append((out / piece, aside / piece))
            if (staging / piece).exists():
                (out / piece).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / piece, out / piece)
                moves.append((staging / piece, out / piece))
    except OSError:
        for src, dst in reversed(moves):
            os.replace(dst, src)
        shutil.rmtree(aside, ignore_errors=True)  # empty folders by now
        raise
    shutil.rmtree(aside, ignore_errors=True)
