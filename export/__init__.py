"""Export of trained models for serving: a TF Serving SavedModel and ONNX
files for onnxruntime, verified the way the servers load them.

    from export import export_run
    export_run("runs/celeba", "exports/celeba")      # or: csvae export --run ... --out ...

Modules, one job each: ``signatures`` (what is exported), ``precision``
(float32 copy of mixed-precision models), ``savedmodel``, ``onnx_export``,
``quantize`` (int8), ``verify``, ``metadata``, ``destination`` (staging and
atomic commit), ``pipeline`` (the whole export), ``command`` (the CLI).

Export reads runs through ``keras_csvae.training.runs`` and imports nothing
from ``keras_csvae.evaluation``: extra int8 quality checks (the dataset
judge's) come from the caller, ``export_run(..., make_quality_checks=...)``;
``csvae export`` passes ``keras_csvae.evaluation.judge_check.int8_checks``.
"""

from export.errors import ExportError, VerificationError


def export_run(run_dir, out, **options):
    """See ``export.pipeline.export_run`` (imported lazily: it loads TensorFlow)."""
    from export.pipeline import export_run as _export_run

    return _export_run(run_dir, out, **options)


def export_model(model, out, **options):
    """See ``export.pipeline.export_model``."""
    from export.pipeline import export_model as _export_model

    return _export_model(model, out, **options)


__all__ = ["ExportError", "VerificationError", "export_model", "export_run"]
