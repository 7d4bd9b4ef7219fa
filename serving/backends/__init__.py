"""Backends: what runs an export's signatures, and which versions are served.

Modules, one per job, so that "no TensorFlow" holds per file:

- ``base``: ``Servable`` (named ``Pipeline``s, batched runs), ``LoadError``,
  the pictures clients send.
- ``repository``: model name -> versions -> servable; TF Serving's version
  policy and lookup rules (the newest version answers requests naming none).
- ``onnx``: ``OnnxServable``, onnxruntime only (no TensorFlow, not even lazily).
- ``savedmodel``: ``SavedModelServable`` through TensorFlow; imported only by
  ``load(..., backend="savedmodel")``.
"""

from __future__ import annotations

from pathlib import Path

from serving.backends.base import LoadError, Pipeline, Servable
from serving.backends.repository import Repository, served_versions, version_policy

BACKENDS = ("onnx", "savedmodel")


def load(export_dir, backend: str = "onnx", threads: int = 1, warm_up: bool = True) -> Repository:
    """The repository of ``export_dir`` with ``backend`` (``onnx`` or ``savedmodel``)."""
    if not Path(export_dir).is_dir():
        raise LoadError(f"--export {export_dir} does not exist.")
    if backend not in BACKENDS:
        raise LoadError(f"--backend {backend!r}: choose from {', '.join(BACKENDS)}.")
    if backend == "onnx":
        from serving.backends.onnx import load_onnx as load_backend
    else:
        from serving.backends.savedmodel import load_savedmodel as load_backend
    repository = load_backend(export_dir, threads)
    if warm_up:
        for servable in repository.servables():
            servable.warm_up()
    return repository


__all__ = ["BACKENDS", "LoadError", "Pipeline", "Repository", "Servable", "load", "served_versions", "version_policy"]
