"""``csvae export``: argparse wiring (``add_parser``) and the command (``run``)."""

from __future__ import annotations

import argparse
import functools

from serving.runtime.contract import edit_strength_argument


def add_parser(subparsers, make_quality_checks=None) -> argparse.ArgumentParser:
    """Registers ``export`` on the ``csvae`` sub-command parsers, with ``func=run``.

    ``make_quality_checks``: ``(config, model) -> [quantize.QualityCheck]`` for the int8
    model (see ``export.pipeline.export_run``); the ``csvae`` CLI passes the judge's.
    """
    parser = subparsers.add_parser(
        "export",
        help="export a trained run as a TF Serving SavedModel and ONNX files, verified",
        description=(
            "Writes EXPORT_DIR/savedmodel/<name>/<version>/ (TF Serving layout) with models.config, "
            "EXPORT_DIR/onnx/*.onnx and EXPORT_DIR/metadata.json, after loading every artefact the way "
            "TF Serving and onnxruntime will."
        ),
    )
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="run directory (csvae train --out)")
    parser.add_argument("--out", required=True, metavar="EXPORT_DIR", help="export directory")
    parser.add_argument("--name", default="csvae", help="TF Serving model name (default csvae)")
    parser.add_argument("--version", type=int, metavar="N", help="SavedModel version (default: newest + 1, or 1)")
    parser.add_argument(
        "--format", default="savedmodel,onnx", metavar="FORMATS", help="comma-separated: savedmodel, onnx"
    )
    parser.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip loading and checking the artefacts"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --version")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="do not try manipulate.int8.onnx")
    parser.add_argument(
        "--calibration-examples",
        type=int,
        default=256,
        metavar="N",
        help="training examples for int8 calibration (default 256)",
    )
    parser.add_argument(
        "--edit-strength",
        type=edit_strength_argument,
        metavar="S",
        help="how far manipulate moves a label switched on: S times the distance between the prior means, "
        "or one per label: 1,1,5/3 (default: the run's model, 1 = the prior's mean)",
    )
    parser.set_defaults(func=functools.partial(run, make_quality_checks=make_quality_checks))
    return parser


def run(args, make_quality_checks=None) -> dict:
    """Runs the export described by parsed ``args``; returns the metadata written."""
    from export.pipeline import export_run

    return export_run(
        args.run,
        args.out,
        make_quality_checks=make_quality_checks,
        name=args.name,
        version=args.version,
        formats=args.format,
        verify_export=args.verify,
        overwrite=args.overwrite,
        int8=args.int8,
        calibration_examples=args.calibration_examples,
        edit_strength=args.edit_strength,
        log=lambda line: print(line, flush=True),
    )
