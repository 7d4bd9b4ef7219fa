"""Load benchmark of ``csvae serve`` (ONNX backend): ``manipulate_image`` on 64x64 PNGs.

A closed-loop load generator (aiohttp, this process) drives a ``csvae serve``
subprocess: C clients each send one request, wait for the answer, send the
next. Every combination of micro-batching on/off and concurrency 1, 8, 32 is
measured ``--repeats`` times for ``--duration`` seconds after a warm-up; the
report gives the median over repeats of requests/s, p50 and p99 latency, and
the mean batch the server formed. Results go to SERVING_BENCHMARKS.md.

    python bench/bench_serving.py                      # ~3 minutes, writes SERVING_BENCHMARKS.md
    python bench/bench_serving.py --duration 2 --repeats 1 --out /tmp/quick.md

The model is a CSVAE with the synthetic_faces 64 px architecture (conv 32/64/128,
dense 256, z_dim 16, w_dim 2, 3 labels), exported to ONNX with *untrained*
weights: throughput and latency do not depend on the weight values. Pass
``--export DIR`` to measure another export instead. No external tool (wrk,
hey) is needed.

Goals (from the serving issue): batching on gives ≥ 2x the throughput of
batching off at concurrency 32; p99 < 100 ms at concurrency 8.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = dict(architecture="conv", z_dim=16, w_dim=2, conv_filters=[32, 64, 128], dense_units=256, decoder_filters=[128, 64, 32])
LABELS = ("glasses", "smile", "facial_hair")
CONCURRENCY = (1, 8, 32)
PICTURES = 16

EXPORT_CODE = """
import sys
import keras
from export.pipeline import export_model
from keras_csvae.models import CSVAE
keras.utils.set_random_seed(0)
model = CSVAE(data_shape=(64, 64, 3), num_labels=3, label_names={labels!r}, **{architecture!r})
export_model(model, sys.argv[1], formats=("onnx",), int8=False, verify_export=False, log=lambda line: None)
"""


def make_export(directory: Path) -> Path:
    """The untrained 64x64 CSVAE's ONNX export (built in a subprocess: TensorFlow stays out of this one)."""
    out = directory / "export64"
    code = EXPORT_CODE.format(labels=LABELS, architecture=ARCHITECTURE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, timeout=600, capture_output=True)
    return out


def face_pngs(n: int) -> list[bytes]:
    """``n`` 64x64 synthetic faces as PNG bytes (what a client would upload)."""
    from keras_csvae.data import synthetic_faces
    from keras_csvae.edge import encode_png

    x, _ = synthetic_faces.load_arrays("test", 64, num_examples=n)
    return [encode_png(image) for image in x]


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    import aiohttp
    import onnxruntime

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory.group(1)) / 1024**2, 1) if memory else None,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "aiohttp": aiohttp.__version__,
        "load": os.getloadavg(),
    }


# -- server --------------------------------------------------------------------------------------
class Server:
    """``python -m serving.command`` (= ``csvae serve``) on a free port, stopped with SIGTERM."""

    def __init__(self, export: Path, *flags: str):
        self.command = [sys.executable, "-m", "serving.command", "--export", str(export), "--port", "0", *flags]
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            match = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}"
                return
            if not line:
                break
        raise RuntimeError(f"the server did not start: {' '.join(self.command)}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def batch_counters(session, url: str) -> tuple[int, int]:
    async with session.get(url + "/monitoring/prometheus/metrics") as response:
        text = await response.text()
    batches = int(re.search(r"csvae_serving_batches_total (\d+)", text).group(1))
    rows = int(re.search(r"csvae_serving_batched_rows_total (\d+)", text).group(1))
    return batches, rows


# -- load generator ----------------------------------------------------------------------------------
async def closed_loop(url: str, bodies: list[bytes], concurrency: int, warmup: float, duration: float) -> dict:
    """``concurrency`` clients in a closed loop for ``warmup + duration`` s; stats of the measured part."""
    import aiohttp

    latencies, errors = [], 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    # The batch counters go through their own connection: the clients keep theirs busy.
    async with aiohttp.ClientSession(connector=connector) as session, aiohttp.ClientSession() as monitor:
        predict = url + "/v1/models/csvae:predict"
        start = time.perf_counter()
        measure_from, stop_at = start + warmup, start + warmup + duration
        counters = {}

        async def snapshot():
            await asyncio.sleep(warmup)
            counters["start"] = await batch_counters(monitor, url)

        async def client(seed: int):
            nonlocal errors
            rng = random.Random(seed)
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                async with session.post(predict, data=rng.choice(bodies), headers={"Content-Type": "application/json"}) as response:
                    payload = await response.read()
                ended = time.perf_counter()
                if measure_from <= ended <= stop_at:  # answers completed in the window
                    if response.status == 200 and b'"b64"' in payload:
                        latencies.append(ended - began)
                    else:
                        errors += 1

        await asyncio.gather(snapshot(), *(client(i) for i in range(concurrency)))
        end_counters = await batch_counters(monitor, url)
    batches = end_counters[0] - counters["start"][0]
    rows = end_counters[1] - counters["start"][1]
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / duration,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "mean_batch": rows / batches if batches else float("nan"),
    }


def request_bodies(pngs: list[bytes]) -> list[bytes]:
    import base64

    rng = random.Random(0)
    return [
        json.dumps({
            "signature_name": "manipulate_image",
            "instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}, "y_target": [rng.randint(0, 1) for _ in LABELS]}],
        }).encode()
        for png in pngs
    ]


def model_compute(export: Path) -> dict:
    """onnxruntime ms per image of manipulate.onnx at batch 1/8/32 (1 thread, like the server)."""
    import numpy as np

    from keras_csvae.edge import onnx_session

    session = onnx_session(export / "onnx" / "manipulate.onnx", threads=1)
    rng = np.random.default_rng(0)
    result = {}
    for batch in (1, 8, 32):
        feeds = {"x": rng.random((batch, 64, 64, 3), dtype=np.float32), "y_target": np.ones((batch, 3), np.float32)}
        session.run(None, feeds)
        runs = max(3, 64 // batch)
        began = time.perf_counter()
        for _ in range(runs):
            session.run(None, feeds)
        result[batch] = 1000 * (time.perf_counter() - began) / runs / batch
    return result


# -- report ------------------------------------------------------------------------------------------
def report(results: dict, compute: dict, info: dict, command: str, args) -> str:
    def row(mode, c):
        r = results[(mode, c)]
        low, high = r["rps_range"]
        return (f"| {mode} | {c} | {r['rps']:.0f} ({low:.0f}–{high:.0f}) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                f"| {r['mean_batch']:.1f} | {r['errors']:.0f} |")

    on32, off32 = results[("on", 32)]["rps"], results[("off", 32)]["rps"]
    speedup = on32 / off32 if off32 else float("nan")
    p99_c8 = results[("on", 8)]["p99_ms"]
    p99_c8_off = results[("off", 8)]["p99_ms"]
    flat = compute[32] / compute[1]
    cap = 2000 / min(compute.values())
    best = max(r["rps"] for r in results.values())
    lines = [
        "# Serving benchmarks",
        "",
        "`csvae serve --backend onnx` answering TF Serving REST `manipulate_image` requests (one 64x64 PNG",
        "in, one PNG out, base64 in JSON) from a closed-loop load generator (aiohttp, a separate process).",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}  ",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB RAM; Python {info['python']}, "
        f"onnxruntime {info['onnxruntime']}, aiohttp {info['aiohttp']}.  ",
        f"Load average (1/5/15 min) before: {'/'.join(f'{v:.1f}' for v in info['load'])}, after: "
        f"{'/'.join(f'{v:.1f}' for v in info['load_after'])}: **the machine was shared with other jobs**, so the",
        "absolute numbers are pessimistic and noisy; the load generator also runs on the same 2 cores.",
        "",
        "Model: CSVAE, synthetic_faces 64 px architecture (conv 32/64/128, dense 256, z_dim 16, w_dim 2,",
        "3 labels), **untrained weights** (throughput does not depend on them), `manipulate.onnx`.",
        "Server: defaults (`--workers 2 --threads 1 --max-batch-size 32 --batch-timeout-ms 2`), with",
        "`--no-batching` for the *off* rows; both servers up for the whole run, their runs alternating.",
        f"Each cell: median over {args.repeats} runs of {args.duration:g} s (after {args.warmup:g} s of warm-up);",
        "requests/s also gives the range over the runs.",
        "",
        "| batching | clients | requests/s (range) | p50 ms | p99 ms | mean batch | errors |",
        "|---|---|---|---|---|---|---|",
        *(row(mode, c) for mode in ("on", "off") for c in CONCURRENCY),
        "",
        "Model compute alone (`manipulate.onnx` in onnxruntime, 1 thread, measured in the benchmark process",
        "before the load runs): " + ", ".join(f"batch {b}: {ms:.2f} ms/image" for b, ms in compute.items())
        + f". On two idle cores that caps any server at about {cap:.0f} edits/s.",
        "",
        "## Goals",
        "",
        f"- Batching on ≥ 2x the throughput of off at 32 clients: **{'met' if speedup >= 2 else 'not met'}** "
        f"({on32:.0f} vs {off32:.0f} requests/s, {speedup:.2f}x).",
        f"- p99 < 100 ms at 8 clients: **{'met' if p99_c8 < 100 else 'not met'}** with batching "
        f"({p99_c8:.1f} ms; {p99_c8_off:.1f} ms without).",
        "",
        "## Reading the numbers",
        "",
        f"- This model is compute-bound on CPU: one 64x64 edit costs about {compute[1]:.1f} ms at batch 1 and",
        f"  {compute[32]:.1f} ms per image at batch 32 ({flat:.2f}x), so a batch saves only the per-call",
        "  overhead (executor hop, onnxruntime call, Python), which is small next to the convolutions. Two",
        "  workers already keep both cores busy without batching; batching cannot double the throughput of",
        "  a machine that has no idle compute left. It pays where per-call overhead dominates (small models,",
        "  many cores, GPUs) and it bounds the number of model calls under bursts.",
        *(
            [
                f"- The best cell reached {best:.0f} requests/s, {100 * best / cap:.0f}% of that cap: with a load average",
                f"  around {info['load'][0]:.0f} on {info['cores']} cores the benchmark got a fraction of the CPU, and the run-to-run",
                "  ranges of *on* and *off* overlap, so differences below ~1.5x are noise on such a machine.",
            ]
            if info["load"][0] > info["cores"]
            else [f"- The best cell reached {best:.0f} requests/s, {100 * best / cap:.0f}% of that cap."]
        ),
        "- p50 at 1 client is the floor: HTTP + JSON + base64 + PNG decode/encode + one model call.",
        "- `mean batch` is the number of requests the server put into one model call (from its",
        "  `/monitoring/prometheus/metrics` counters); it is 1 with batching off.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export", type=Path, help="an export to serve (default: build the untrained 64x64 CSVAE)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the report gives medians (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "SERVING_BENCHMARKS.md")
    args = parser.parse_args(argv)
    command = " ".join(["python bench/bench_serving.py", *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    info = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        if args.export is None:
            print("Exporting the untrained 64x64 CSVAE to ONNX...", flush=True)
            export = make_export(Path(tmp))
        else:
            export = args.export
        bodies = request_bodies(face_pngs(PICTURES))
        compute = model_compute(export)
        runs = {}
        # Both servers run for the whole benchmark (an idle one costs nothing) and
        # their runs alternate, in the opposite order on every other repeat, so
        # that a shared machine's changing load hits both modes alike.
        servers = {}
        try:
            servers["on"] = Server(export)
            servers["off"] = Server(export, "--no-batching")
            for repeat in range(args.repeats):
                for concurrency in CONCURRENCY:
                    for mode in ("on", "off") if repeat % 2 == 0 else ("off", "on"):
                        result = asyncio.run(asyncio.wait_for(
                            closed_loop(servers[mode].url, bodies, concurrency, args.warmup, args.duration),
                            args.warmup + args.duration + 60))
                        runs.setdefault((mode, concurrency), []).append(result)
                        print(f"repeat {repeat + 1}: batching {mode:3s} c={concurrency:2d}: {result['rps']:6.1f} req/s, "
                              f"p50 {result['p50_ms']:6.1f} ms, p99 {result['p99_ms']:6.1f} ms, mean batch {result['mean_batch']:.1f}, "
                              f"errors {result['errors']}, load {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    results = {key: {k: statistics.median(r[k] for r in values) for k in values[0]} for key, values in runs.items()}
    for key, values in runs.items():
        results[key]["rps_range"] = (min(r["rps"] for r in values), max(r["rps"] for r in values))
    info["load_after"] = os.getloadavg()
    text = report(results, compute, info, command, args)
    args.out.write_text(text)
    print(text)
    print(f"Wrote {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
