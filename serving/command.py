"""``csvae serve``: argparse wiring (``add_parser``) and the command (``run``).

``--backend onnx`` (the default) imports neither TensorFlow nor Keras; only
``--backend savedmodel`` loads TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

DEFAULTS = dict(
    host="127.0.0.1",
    port=8501,
    max_batch_size=32,
    batch_timeout_ms=2.0,
    workers=2,
    threads=1,
    max_body_bytes=16 * 1024 * 1024,
    max_queue=256,
    timeout_s=30.0,
    read_timeout_s=10.0,
)


class ServeError(ValueError):
    """A bad option value; reported on one line by the CLI."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``serve`` on the ``csvae`` sub-command parsers, with ``func=run``."""
    d = DEFAULTS
    parser = subparsers.add_parser(
        "serve",
        help="serve an export over HTTP (TF Serving REST API and Open Inference Protocol v2)",
        description=(
            "Serves EXPORT_DIR with the TF Serving REST API (/v1/models/<name>...) and the Open Inference Protocol v2 "
            "(/v2/...), with dynamic micro-batching. --backend onnx runs the ONNX files with onnxruntime (no "
            "TensorFlow); "
            "--backend savedmodel runs every SavedModel version through TensorFlow. Stops gracefully on SIGTERM."
        ),
    )
    parser.add_argument("--export", required=True, help="export directory (csvae export --out)")
    parser.add_argument("--host", default=d["host"], help=f"address to bind (default {d['host']}: this machine only)")
    parser.add_argument(
        "--port",
        type=int,
        default=d["port"],
        help=f"port (default {d['port']}, TF Serving's REST port; 0 picks a free one)",
    )
    parser.add_argument(
        "--backend", choices=("onnx", "savedmodel"), default="onnx", help="what runs the model (default onnx)"
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=d["max_batch_size"],
        help=f"most rows per batch, and per request (default {d['max_batch_size']})",
    )
    parser.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=d["batch_timeout_ms"],
        help=f"longest wait for a batch to fill when a worker is idle (default {d['batch_timeout_ms']:g})",
    )
    parser.add_argument("--no-batching", dest="batching", action="store_false", help="run every request on its own")
    parser.add_argument(
        "--workers", type=int, default=d["workers"], help=f"batches computed at once (default {d['workers']})"
    )
    parser.add_argument(
        "--threads", type=int, default=d["threads"], help=f"intra-op threads per batch (default {d['threads']})"
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=d["max_body_bytes"],
        help=f"larger request bodies get 413 (default {d['max_body_bytes']})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=d["max_queue"],
        help=f"requests waiting beyond this get 503 (default {d['max_queue']})",
    )
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=d["timeout_s"],
        help=f"requests not answered within this get 504 (default {d['timeout_s']:g})",
    )
    parser.add_argument(
        "--read-timeout-s",
        type=float,
        default=d["read_timeout_s"],
        help=f"bodies not received within this get 408 (default {d['read_timeout_s']:g})",
    )
    parser.set_defaults(func=run)
    return parser


def config_from_args(args):
    """The ``ServerConfig`` of parsed ``args``; ``ServeError`` for impossible values."""
    from serving.server import ServerConfig

    for flag, value, low in (
        ("--max-batch-size", args.max_batch_size, 1),
        ("--workers", args.workers, 1),
        ("--threads", args.threads, 1),
        ("--max-body-bytes", args.max_body_bytes, 1),
        ("--max-queue", args.max_queue, 1),
        ("--port", args.port, 0),
    ):
        if value < low:
            raise ServeError(f"{flag} must be ≥ {low}, got {value}.")
    for flag, value in (
        ("--batch-timeout-ms", args.batch_timeout_ms),
        ("--timeout-s", args.timeout_s),
        ("--read-timeout-s", args.read_timeout_s),
    ):
        if not value >= 0 or (flag != "--batch-timeout-ms" and value == 0):
            raise ServeError(f"{flag} must be positive, got {value}.")
    if args.port > 65535:
        raise ServeError(f"--port must be ≤ 65535, got {args.port}.")
    return ServerConfig(
        host=args.host,
        port=args.port,
        batching=args.batching,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        workers=args.workers,
        max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout_s,
        read_timeout_s=args.read_timeout_s,
        shutdown_timeout_s=args.timeout_s,
    )


def run(args) -> None:
    """Loads the export and serves it until SIGTERM/SIGINT."""
    from serving import backends, server

    config = config_from_args(args)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.monotonic()
    repository = backends.load(args.export, args.backend, threads=args.threads)
    print(f"Loaded {args.export} ({args.backend}) in {time.monotonic() - started:.2f} s", flush=True)
    try:
        server.run(repository, config, announce=lambda line: print(line, flush=True))
    except OSError as err:  # the address is taken or not ours
        raise ServeError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}") from err
    finally:
        repository.close()


def main(argv=None) -> int:
    """``python -m serving.command --export ...`` (the same as ``csvae serve``)."""
    from serving.backends import LoadError

    parser = argparse.ArgumentParser(prog="csvae")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        run(args)
    except (ServeError, LoadError) as err:
        print(f"csvae serve: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
