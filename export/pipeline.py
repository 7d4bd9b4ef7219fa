"""``export_run``: a trained run to a verified SavedModel + ONNX export.

``EXPORT_DIR`` layout::

    metadata.json                          # see export.metadata
    savedmodel/models.config               # TF Serving --model_config_file
    savedmodel/<name>/<version>/           # TF Serving's model base path layout
    onnx/encode.onnx, decode.onnx, manipulate.onnx, edit_at.onnx
    onnx/manipulate.int8.onnx              # only when it keeps quality
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from export import destination, metadata, onnx_export, quantize, savedmodel, verify
from export.errors import ExportError
from export.precision import float32_copy
from export.signatures import signature_functions
from keras_csvae.io import write_json
from keras_csvae.training import runs
from serving.runtime.contract import METADATA_FILE, ONNX_DIR, SAVEDMODEL_DIR, onnx_file

FORMATS = ("savedmodel", "onnx")
# ONNX files every model provides, and ones kept only if they convert (the
# edge editor uses edit_at for styles; a baseline may not have it).
ONNX_REQUIRED = ("encode", "decode", "manipulate")
ONNX_OPTIONAL = ("edit_at",)
CALIBRATION_EXAMPLES = 256


def parse_formats(formats) -> tuple[str, ...]:
    """``"savedmodel,onnx"`` or a sequence -> a checked tuple in canonical order."""
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ExportError(f"--format {','.join(formats)!r}: choose from {','.join(FORMATS)} (comma-separated).")
    return tuple(f for f in FORMATS if f in formats)


def run_data(config, examples: int = CALIBRATION_EXAMPLES):
    """``() -> ((x, y) train, (x, y) validation)`` from the run's dataset, for int8 calibration."""

    def load():
        return runs.split_arrays(config, "train", examples), runs.split_arrays(config, "validation", examples)

    return load


def export_run(
    run_dir,
    out,
    *,
    make_quality_checks: Callable[..., Sequence[quantize.QualityCheck]] | None = None,
    calibration_examples: int = CALIBRATION_EXAMPLES,
    edit_strength: float | None = None,
    **options,
) -> dict:
    """Exports the run in ``run_dir`` (``model.keras`` + ``config.json``) to ``out``.

    Options are those of ``export_model``; the arguments are checked before
    the run is loaded. Returns the metadata written.

    Args:
      edit_strength: replaces the model's ``edit_strength`` (where the exported
        ``manipulate`` puts a label switched on) when not ``None``.
      make_quality_checks: ``(config, model) -> [quantize.QualityCheck]``, called
        once the run is loaded: extra checks of the int8 model (``csvae export``
        passes the dataset judge's, ``keras_csvae.evaluation.judge_check.int8_checks``).
    """
    parse_formats(options.get("formats", FORMATS))
    destination.resolve_version(
        out, options.get("name", "csvae"), options.get("version"), options.get("overwrite", False)
    )
    if calibration_examples < 1:
        raise ExportError(f"calibration_examples must be ≥ 1, got {calibration_examples}.")
    options.get("log", print)(f"Loading the run in {run_dir}...")
    config, model = runs.load_run(run_dir, edit_strength)
    checks = make_quality_checks(config, model) if make_quality_checks is not None else ()
    return export_model(
        model, out, config=config, data=run_data(config, calibration_examples), quality_checks=checks, **options
    )


def export_model(
    model,
    out,
    *,
    config=None,
    data=None,
    name: str = "csvae",
    version: int | None = None,
    formats=FORMATS,
    verify_export: bool = True,
    overwrite: bool = False,
    int8: bool = True,
    quality_checks: Sequence[quantize.QualityCheck] = (),
    log=print,
) -> dict:
    """Exports ``model`` to ``out`` (layout in the module docstring).

    Args:
      model: a ``LatentModel`` with ``serving_functions()``.
      out: the export directory; a new one, or an earlier export of ``name``.
      config: the run's ``TrainConfig`` (recorded in the metadata), if any.
      data: ``() -> ((x, y) calibration, (x, y) evaluation)`` real examples for
        the int8 model; without it no int8 model is made.
      name, version: TF Serving model name and integer version (default: one
        more than the newest in ``out``, else 1).
      formats: subset of ``("savedmodel", "onnx")``.
      verify_export: load and check every artefact as the servers will
        (``export.verify``). Strongly recommended.
      overwrite: replace an existing ``version``.
      int8: try ``manipulate.int8.onnx``.
      quality_checks: checks the int8 model must pass besides the error
        threshold (``quantize.quantize_manipulate``).
      log: progress lines go here.

    Returns:
      The content of ``metadata.json``.

    Raises:
      ExportError: bad arguments, a destination that is not ours, a model that
        breaks the export contract, a failed conversion.
      VerificationError: an artefact that does not match the model; nothing is written.
    """
    formats = parse_formats(formats)
    version = destination.resolve_version(out, name, version, overwrite)
    start = time.time()
    model32, precision = float32_copy(model)
    if precision["float32_copy"]:
        log(f"The model computes in {precision['trained_compute_dtypes']}; exporting a float32 copy of its weights.")
    signatures = signature_functions(model32)
    onnx_functions = {n: signatures[n] for n in ONNX_REQUIRED + ONNX_OPTIONAL if n in signatures}
    verified = signatures if "savedmodel" in formats else onnx_functions
    cases = verify.make_cases(model32, verified) if verify_export else []
    if precision["float32_copy"] and cases:
        precision["max_abs_difference_vs_trained_policy"] = _policy_gap(model, cases)
    description = metadata.model_description(model32, model_type=config.model if config is not None else None)
    props = metadata.onnx_metadata_props(description, config.digest() if config is not None else None)

    verification = {"verified": verify_export}
    onnx_files, int8_report = None, None
    staging = destination.make_staging(out)
    try:
        saved_model_path = destination.savedmodel_dir(staging, name, version)
        if "savedmodel" in formats:
            log(f"Writing SavedModel {name} version {version} ({len(signatures)} signatures)...")
            savedmodel.write_savedmodel(model32, signatures, saved_model_path)
            savedmodel.write_models_config(staging / SAVEDMODEL_DIR, name)
            if verify_export:
                report = verify.verify_savedmodel(saved_model_path, signatures, cases, log=log)
                # the loaded signatures equal signatures[...].describe(), already in the metadata
                verification["savedmodel"] = {k: v for k, v in report.items() if k != "signatures"}
        if "onnx" in formats:
            onnx_files = _export_onnx(
                model32, onnx_functions, staging / ONNX_DIR, props, cases, verification, verify_export, log
            )
            if int8:
                int8_report = _export_int8(
                    model32, onnx_functions["manipulate"], staging / ONNX_DIR, data, quality_checks, log
                )
                if int8_report.get("written"):
                    onnx_files[quantize.INT8_FILE.removesuffix(".onnx")] = {
                        "file": onnx_file(quantize.INT8_FILE.removesuffix(".onnx")),
                        **onnx_functions["manipulate"].describe(),
                    }
        content = metadata.build_metadata(
            name=name,
            version=version if "savedmodel" in formats else None,
            description=description,
            config=config,
            signatures={n: f.describe() for n, f in signatures.items()} if "savedmodel" in formats else None,
            onnx_files=onnx_files,
            precision=precision,
            verification=verification,
            int8=int8_report,
        )
        write_json(staging / METADATA_FILE, content)
        if "savedmodel" in formats:
            # TF Serving ignores assets.extra except for warm-up files; each
            # version keeps its own description there.
            write_json(saved_model_path / "assets.extra" / METADATA_FILE, content)
        destination.commit(staging, out, name, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"Export written to {out} in {time.time() - start:.1f} s.")
    return content


def _policy_gap(model, cases) -> float:
    """Max |manipulate(trained policy) - manipulate(float32 copy)| on the verification inputs."""
    fn, specs = model.serving_functions()["manipulate"]
    gap = 0.0
    for case in (c for c in cases if c.function == "manipulate"):
        outputs = fn(*[tf.constant(case.feeds[spec.name]) for spec in specs])
        for key, value in outputs.items():
            gap = max(gap, float(np.max(np.abs(np.asarray(value, np.float32) - case.keras[key]))))
    return gap


def _export_onnx(model, functions, onnx_dir: Path, props, cases, verification, verify_export, log) -> dict:
    """Converts and verifies each ONNX function; returns ``{name: {file, inputs, outputs}}``."""
    files, skipped = {}, {}
    verification["onnx"] = {}
    for name, function in functions.items():
        path = onnx_dir / f"{name}.onnx"
        log(f"Converting {name} to ONNX (opset {onnx_export.DEFAULT_OPSET})...")
        try:
            onnx_export.convert(function, path, props)
            if name in ONNX_OPTIONAL:
                verify.onnx_session(path)  # keep an optional file only if onnxruntime loads it
        except ExportError as err:
            if name not in ONNX_OPTIONAL:
                raise
            path.unlink(missing_ok=True)
            skipped[name] = str(err)
            log(f"Skipping optional {name}.onnx: {err}")
            continue
        if verify_export:
            report = verify.verify_onnx(path, function, cases, log=log)
            verification["onnx"][name] = {"max_error": report["max_error"], "tolerance": report["tolerance"]}
        files[name] = {"file": onnx_file(name), **function.describe()}
    if skipped:
        verification["onnx_skipped"] = skipped
    return files


def _export_int8(model, manipulate, onnx_dir: Path, data, quality_checks, log) -> dict:
    """Tries ``manipulate.int8.onnx``; returns its report (``written`` says whether it was kept).

    The int8 model is an optional extra: a dataset that cannot be loaded or a
    quantiser failure is recorded and reported, not fatal.
    """
    if data is None:
        return {"written": False, "reason": "no calibration data (export_model was given no data)"}
    try:
        calibration, evaluation = data()
    except Exception as err:  # e.g. a dataset whose files are not on this machine
        log(f"Not writing {quantize.INT8_FILE}: cannot load calibration data: {err}")
        return {"written": False, "reason": f"cannot load calibration data: {type(err).__name__}: {err}"}
    try:
        return quantize.quantize_manipulate(
            model,
            manipulate,
            onnx_dir / "manipulate.onnx",
            onnx_dir / quantize.INT8_FILE,
            calibration,
            evaluation,
            checks=quality_checks,
            log=log,
        )
    except Exception as err:  # onnxruntime's quantiser raises many types
        log(f"Not writing {quantize.INT8_FILE}: quantisation failed: {err}")
        return {"written": False, "reason": f"quantisation failed: {type(err).__name__}: {err}"}
