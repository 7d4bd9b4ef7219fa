"""The ``csvae`` command: ``train``, ``evaluate``, ``benchmark``, ``data``,
``export``, ``serve``, ``edit``.

Errors caused by the user's input (unknown dataset, wrong shapes, a corrupt
run directory...) print one line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from serving.runtime.contract import edit_strength_argument


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _diverged(err: BaseException) -> bool:
    """Whether ``err`` is a ``TrainingDivergedError``, without importing TensorFlow:
    only a command that loaded ``keras_csvae.training`` can raise one, and
    `csvae edit` / `csvae serve --backend onnx` must never load TensorFlow,
    not even on an error path."""
    training = sys.modules.get("keras_csvae.training")
    diverged = getattr(training, "TrainingDivergedError", None)
    return diverged is not None and isinstance(err, diverged)


def _parse_json(text, flag):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be JSON, e.g. '{{\"z_dim\": 8}}': {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object.")
    return value


def _validation_examples(text):
    """``--validation-examples``: a positive integer, or ``all`` (stored as ``None``)."""
    if text == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return value


def cmd_train(args):
    from keras_csvae.training import TrainConfig, train

    model_kwargs = _parse_json(args.model_config, "--model-config") if args.model_config else {}
    if args.betas:
        model_kwargs["betas"] = [float(b) for b in args.betas.split(",")]
    if args.prior:
        model_kwargs["prior"] = args.prior
    options = {}
    if args.image_size:
        options["image_size"] = args.image_size
    if args.num_examples:
        options["num_examples"] = args.num_examples
    if args.data_dir:
        options["data_dir"] = os.path.abspath(os.path.expanduser(args.data_dir))
    validation = {}  # not given: TrainConfig's default
    if args.validation_examples is not None:
        validation["validation_examples"] = None if args.validation_examples == "all" else args.validation_examples
    config = TrainConfig(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        adversary_learning_rate=args.adversary_learning_rate,
        learning_rate_schedule=args.learning_rate_schedule,
        precision=args.precision,
        strategy=args.strategy,
        jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution,
        seed=args.seed,
        **validation,
        dataset_options=options,
        model_kwargs=model_kwargs,
    )
    train(config, args.out, verbose=args.verbose)
    print(f"Run written to {args.out}. Next: csvae evaluate --run {args.out}")


def cmd_evaluate(args):
    from keras_csvae.evaluation.evaluate import evaluate_run
    from keras_csvae.training.runs import METRICS_FILE

    metrics = evaluate_run(
        args.run,
        max_examples=args.max_examples,
        edit_examples=args.edit_examples,
        judge_dir=args.judge_dir,
        edit_strength=args.edit_strength,
    )
    summary = {k: v for k, v in metrics.items() if k != "per_label"}
    if "edits" in summary:
        summary["edits"] = {k: v for k, v in summary["edits"].items() if k != "per_label"}
    print(json.dumps(summary, indent=2))
    for name, values in metrics.get("edits", {}).get("per_label", {}).items():
        directions = ", ".join(
            f"{d} {values[f'manipulation_accuracy_{d}']:.3f}"
            for d in ("on", "off")
            if f"manipulation_accuracy_{d}" in values
        )
        print(f"  {name}: manipulation {values['manipulation_accuracy']:.3f} ({directions})")
    figures = sorted(p.name for p in Path(args.run).glob("*.png"))
    print(f"Wrote {Path(args.run) / METRICS_FILE} and {', '.join(figures)}")


def cmd_benchmark(args):
    from keras_csvae.evaluation.benchmark import run_benchmark

    run_benchmark(
        args.out,
        dataset=args.dataset,
        models=[m.strip() for m in args.models.split(",")],
        seeds=[int(s) for s in args.seeds.split(",")],
        epochs=args.epochs,
        image_size=args.image_size,
        num_examples=args.num_examples,
        edit_examples=args.edit_examples,
        judge_dir=args.judge_dir,
        edit_strength=args.edit_strength,
        command="csvae " + " ".join(sys.argv[1:]),
    )
    print(f"Wrote {os.path.join(args.out, 'results.md')} and results.json")


def cmd_data(args):
    from keras_csvae import data

    if args.list or not args.dataset:
        for name in data.names():
            print(f"{name:28s} {_describe(name)}")
        return
    if args.preview:
        if args.dataset != "synthetic_faces":
            raise ValueError(
                "--preview draws synthetic_faces (with counterfactual pairs); other datasets have no preview."
            )
        from keras_csvae.data import preview

        preview.preview_grid(args.preview, image_size=args.image_size)
        print(f"Wrote {args.preview}")
    else:
        print(_describe(args.dataset))


def _int8_quality_checks(config, model):
    """The judge's check of an export's int8 model: evaluation builds it, and
    the CLI hands it to export, which imports nothing from evaluation."""
    from keras_csvae.evaluation.judge_check import int8_checks

    return int8_checks(config, model)


def _describe(name):
    from keras_csvae import data

    try:
        info = data.info(name)
    except Exception as err:  # e.g. a dataset that needs a path option
        return f"(needs options: {err})"
    return f"x {info.input_shape}, labels {list(info.label_names)}. {info.description}"


EDIT_STRENGTH = dict(  # --edit-strength of evaluate and benchmark
    type=edit_strength_argument,
    metavar="S",
    help="CSVAE edits: put a label switched on S times the distance between the prior means from the "
    "absent mean, e.g. 1.5 or 7/6, or one per label: 1,1,5/3 (default: the run's model; 1 = the prior's "
    "mean, the paper's rule)",
)


def build_parser():
    parser = argparse.ArgumentParser(prog="csvae", description="Conditional Subspace VAE (Keras 3 + TFP).")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (re-run the same command to resume)")
    train.add_argument("--dataset", default="swiss_roll")
    train.add_argument("--model", default="csvae")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--epochs", type=int, help="default: the dataset's")
    train.add_argument("--batch-size", type=int, help="global batch size; default: the dataset's")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--adversary-learning-rate", type=float, default=1e-3)
    train.add_argument(
        "--learning-rate-schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="cosine: both step sizes decay to 0 over the run (default: constant)",
    )
    train.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"])
    train.add_argument("--strategy", default="auto", choices=["auto", "default", "mirrored", "multi_worker"])
    train.add_argument(
        "--jit-compile", action="store_true", help="compile the train step with XLA (slower for conv models on CPU)"
    )
    train.add_argument(
        "--steps-per-execution", type=int, help="train steps per compiled call; default: the dataset's (MLP 32, else 1)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--image-size", type=int, help="for image datasets")
    train.add_argument(
        "--num-examples",
        type=int,
        help="use only the first this many examples of each split (synthetic_faces, CelebA)",
    )
    train.add_argument(
        "--validation-examples",
        type=_validation_examples,
        # not given: TrainConfig's default (1024), named here without importing TensorFlow
        help="validate each epoch on the first this many validation examples, or 'all' "
        "(default 1024; the val_ metrics only report, they change no weight)",
    )
    train.add_argument(
        "--data-dir",
        help="tensorflow-datasets data directory holding prepared CelebA "
        "(default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    train.add_argument("--betas", help="β1..β5, comma-separated (default 20,1,0.2,10,1)")
    train.add_argument("--prior", choices=["A", "B"], help="prior convention of p(w|y) (default B)")
    train.add_argument("--model-config", help="JSON object of model arguments, e.g. '{\"z_dim\": 8}'")
    train.add_argument("--verbose", default="auto", type=lambda v: v if v == "auto" else int(v))
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="metrics and figures of a trained run")
    evaluate.add_argument("--run", required=True)
    evaluate.add_argument(
        "--max-examples", type=int, default=None, help="examples per split for the label probes (default 5000)"
    )
    evaluate.add_argument("--edit-examples", type=int, default=500, help="test images edited for the edit metrics")
    evaluate.add_argument("--judge-dir", help="where judges are cached (default ~/.cache/keras_csvae/judges)")
    evaluate.add_argument("--edit-strength", **EDIT_STRENGTH)
    evaluate.set_defaults(func=cmd_evaluate)

    bench = sub.add_parser(
        "benchmark",
        help="train and evaluate the four models over seeds; write a results table",
        description="Trains and evaluates models × seeds in --out, then writes results.md and results.json. "
        "Runs already trained there are reused, so a killed benchmark resumes, and one can be split across "
        "processes (--models csvae --seeds 0 in one, --seeds 1 in another, then the full command). On images "
        "the table ends with reference editors scored the same way: the input unchanged and, on synthetic "
        "faces, the true counterfactual.",
    )
    bench.add_argument("--out", required=True)
    bench.add_argument("--dataset", default="synthetic_faces")
    bench.add_argument("--models", default="csvae,vae,condvae,condvae_info")
    bench.add_argument("--seeds", default="0,1,2")
    bench.add_argument("--epochs", type=int, help="default: the dataset's")
    bench.add_argument("--image-size", type=int, help="default: 32 for synthetic_faces (CPU size); 64 is the paper's")
    bench.add_argument("--num-examples", type=int, help="use only the first this many examples of each split")
    bench.add_argument("--edit-examples", type=int, default=500)
    bench.add_argument("--judge-dir", help="where judges are cached (default ~/.cache/keras_csvae/judges)")
    bench.add_argument("--edit-strength", **EDIT_STRENGTH)
    bench.set_defaults(func=cmd_benchmark)

    data = sub.add_parser("data", help="list datasets, or preview one")
    data.add_argument("--dataset")
    data.add_argument("--list", action="store_true")
    data.add_argument("--preview", help="write a PNG grid of examples here")
    data.add_argument("--image-size", type=int, default=64)
    data.set_defaults(func=cmd_data)

    from export import command as export_command
    from serving import command as serve_command
    from serving import edge

    export_command.add_parser(sub, make_quality_checks=_int8_quality_checks)
    edge.add_parser(sub)  # csvae edit (onnxruntime only)
    serve_command.add_parser(sub)  # csvae serve
    return parser


def main(argv=None):
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    # Every user-caused error (DatasetError, InputError, RunDirError, RunError,
    # ExportError...) is a ValueError; a diverging loss is the one other.
    except (ValueError, FileNotFoundError) as err:
        print(f"csvae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        if not _diverged(err):
            raise
        print(f"csvae {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
