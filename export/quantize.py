"""``manipulate.int8.onnx``: static int8 quantisation (QDQ) of ``manipulate.onnx``,
kept only when it keeps quality.

Calibration runs ``manipulate`` on real training examples; quality is measured
on held-out (validation) examples against the float32 ONNX model.

Quality threshold: the mean absolute error of the int8 outputs, divided by
the output scale (1 for images in [0, 1]; the standard deviation of the
float32 outputs for other data), must be below ``MEAN_ERROR_THRESHOLD`` = 0.02:
on images that is 5 of 255 grey levels on average, below what the eye picks
up in a 64 px edit and an order below the change an attribute edit makes
(and below a VAE's own reconstruction error at this scale). The maximum error
is reported too: int8 errors concentrate on edges, so a max near 0.1 with a
small mean is normal.

Extra quality checks are passed in (``checks``): ``csvae export`` passes the
dataset judge's check when a judge is cached ("are the int8 edits judged like
the float32 ones?", ``keras_csvae.evaluation.judge_check``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from export.signatures import ServingFunction
from export.verify import check_onnx, onnx_session

INT8_FILE = "manipulate.int8.onnx"
MEAN_ERROR_THRESHOLD = 0.02
CALIBRATION_BATCH = 32
LATENCY_THREADS = 2  # what the edge box and the 2-core CI machines have
LATENCY_RUNS = 50


@dataclasses.dataclass
class QualityContext:
    """What a quality check sees.

    Attributes:
      model: the (float32) Keras model.
      feeds: held-out inputs by name, ``[n, ...]``.
      float32: outputs of ``manipulate.onnx`` on ``feeds``, by output name.
      int8: outputs of ``manipulate.int8.onnx`` on ``feeds``.
      labels: the held-out examples' true labels ``[n, k]``.
    """

    model: object
    feeds: dict
    float32: dict
    int8: dict
    labels: np.ndarray


# A check returns {"name": str, "passed": bool, ...measurements}; a failed
# check keeps the int8 file from being written.
QualityCheck = Callable[[QualityContext], dict]


def manipulate_feeds(model, function: ServingFunction, x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """Real inputs for ``function`` (``manipulate``): the data input gets ``x``,
    an input named ``y`` the true labels, other label inputs (``y_target``) the
    labels of other examples (realistic label combinations, mostly edits), and
    anything else standard normal noise."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in function.input_specs:
        if tuple(spec.shape[1:]) == tuple(model.data_shape) and not spec.name.startswith("y"):
            feeds[spec.name] = x.astype(np.float32)
        elif spec.name == "y":
            feeds[spec.name] = y.astype(np.float32)
        elif spec.name.startswith("y"):
            feeds[spec.name] = y[rng.permutation(len(y))].astype(np.float32)
        else:
            feeds[spec.name] = rng.standard_normal([len(x), *spec.shape[1:]]).astype(np.float32)
    return feeds


class _CalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over ``feeds`` in batches."""

    def __init__(self, feeds: dict, batch: int = CALIBRATION_BATCH):
        n = len(next(iter(feeds.values())))
        self._batches = iter([{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)])

    def get_next(self):
        return next(self._batches, None)


def latency_ms(session, feeds: dict, batch: int, runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one ``session.run`` on the first ``batch`` rows, in ms."""
    feeds = {k: v[:batch] for k, v in feeds.items()}
    for _ in range(5):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _run(session, feeds):
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def quantize_manipulate(
    model,
    function: ServingFunction,
    float_path,
    out_path,
    calibration: tuple,
    evaluation: tuple,
    checks: Sequence[QualityCheck] = (),
    log=print,
) -> dict:
    """Writes ``out_path`` (int8 QDQ) if it passes the quality threshold and
    every check in ``checks``; returns the measurements either way.

    Args:
      calibration: ``(x, y)`` real examples (training split) for the ranges.
      evaluation: ``(x, y)`` held-out examples to measure the error on.
      checks: extra quality checks, run on the held-out outputs (``report["checks"]``).
    """
    from onnxruntime import quantization

    log(f"Quantising manipulate to int8 (static QDQ, {len(calibration[0])} calibration examples)...")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    # Scratch next to the destination, so the final rename stays on one filesystem.
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent, prefix=".int8-") as scratch:
        prepared = os.path.join(scratch, "prepared.onnx")
        # Symbolic shape inference needs sympy, which nothing else here needs;
        # ONNX's own shape inference suffices for these graphs.
        quantization.quant_pre_process(os.fspath(float_path), prepared, skip_symbolic_shape=True)
        candidate = os.path.join(scratch, "int8.onnx")
        quantization.quantize_static(
            prepared,
            candidate,
            _CalibrationReader(manipulate_feeds(model, function, *calibration)),
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
        )
        check_onnx(candidate)
        float_session = onnx_session(float_path, threads=LATENCY_THREADS)
        int8_session = onnx_session(candidate, threads=LATENCY_THREADS)
        feeds = manipulate_feeds(model, function, *evaluation, seed=1)
        float_out, int8_out = _run(float_session, feeds), _run(int8_session, feeds)
        (output,) = function.output_names
        difference = np.abs(int8_out[output] - float_out[output])
        scale = 1.0 if len(model.data_shape) == 3 else float(np.std(float_out[output])) or 1.0
        report = {
            "file": INT8_FILE,
            "format": "QDQ, activations uint8, weights int8 per channel, MinMax calibration",
            "calibration_examples": int(len(calibration[0])),
            "evaluation_examples": int(len(evaluation[0])),
            "mean_abs_error": float(difference.mean()),
            "max_abs_error": float(difference.max()),
            "output_scale": scale,
            "scaled_mean_abs_error": float(difference.mean() / scale),
            "threshold": {"scaled_mean_abs_error": MEAN_ERROR_THRESHOLD},
            "latency_ms": {
                "threads": LATENCY_THREADS,
                "float32": {f"batch_{b}": latency_ms(float_session, feeds, b) for b in (1, 32)},
                "int8": {f"batch_{b}": latency_ms(int8_session, feeds, b) for b in (1, 32)},
            },
            "checks": [],
        }
        context = QualityContext(model, feeds, float_out, int8_out, np.asarray(evaluation[1]))
        report["checks"] = [check(context) for check in checks]
        failed = [c.get("name", "unnamed") for c in report["checks"] if not c.get("passed", False)]
        if report["scaled_mean_abs_error"] >= MEAN_ERROR_THRESHOLD:
            failed.insert(0, "scaled_mean_abs_error")
        report["written"] = not failed
        if failed:
            report["reason"] = f"failed {', '.join(failed)}"
            log(
                f"Not writing {INT8_FILE}: {report['reason']} "
                f"(scaled mean abs error {report['scaled_mean_abs_error']:.4f})."
            )
        else:
            os.replace(candidate, out_path)
            log(
                f"Wrote {INT8_FILE}: mean abs error {report['mean_abs_error']:.4f}, max {report['max_abs_error']:.4f}; "
                f"batch-1 latency {report['latency_ms']['int8']['batch_1']:.2f} ms vs "
                f"{report['latency_ms']['float32']['batch_1']:.2f} ms float32."
            )
    return report
