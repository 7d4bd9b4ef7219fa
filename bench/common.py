"""Shared helpers of the ``bench/`` scripts: timing, medians, the machine and
its load, Markdown tables, and appending a report to ``BENCHMARKS.md``.

Timing on a shared machine. Every measurement records both wall time
(``time.perf_counter``) and the CPU time of this process (all its threads,
``time.process_time``). Wall time is what a user waits for, but when other
jobs share the cores it mostly measures the scheduler; CPU seconds measure the
work our threads did and stay stable under load (spinning thread pools can
only inflate them, so rates per CPU second are conservative). Variants that
are compared with each other are timed *interleaved* (round-robin, one call
of each per round), so that a change of load hits them all alike, and the
reports give medians.

Nothing here imports TensorFlow: ``quiet_tensorflow()`` must run before it is
imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "BENCHMARKS.md"
PACKAGES = (
    "tensorflow",
    "keras",
    "tensorflow-probability",
    "onnxruntime",
    "onnx",
    "tf2onnx",
    "numpy",
    "pillow",
)
# The smallest conv model of the quick modes: seconds per measurement.
TINY = dict(
    architecture="conv",
    z_dim=4,
    w_dim=2,
    conv_filters=[4, 8, 8],
    dense_units=16,
    decoder_filters=[8, 8, 4],
    adversary_units=[8],
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def faces_config(size, n, batch):
    """The resolved ``csvae train`` config of ``n`` synthetic faces at ``size`` px, float32."""
    from keras_csvae.training import TrainConfig

    return TrainConfig(
        dataset="synthetic_faces",
        dataset_options={"image_size": size, "num_examples": n},
        batch_size=batch,
        precision="float32",
    ).resolved()


def quiet_tensorflow() -> None:
    """Environment for a CPU-only, quiet TensorFlow; call before importing it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # The bench scripts run from bench/; make the repository importable.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


# -- timing ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sample:
    """One timed call: wall seconds and CPU seconds of this process."""

    wall: float
    cpu: float


def time_call(fn: Callable[[], object]) -> Sample:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return Sample(time.perf_counter() - wall, time.process_time() - cpu)


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation."""
    values = sorted(values)
    if not values:
        return float("nan")
    position = (len(values) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@dataclasses.dataclass
class Timing:
    """The samples of one variant, with the summaries the reports use."""

    samples: list[Sample] = dataclasses.field(default_factory=list)

    @property
    def wall(self) -> float:
        return median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return median(s.cpu for s in self.samples)

    def wall_percentile(self, q: float) -> float:
        return percentile([s.wall for s in self.samples], q)

    @property
    def cpu_share(self) -> float:
        """Median CPU seconds per wall second (≈ busy threads while it ran)."""
        return median(s.cpu / s.wall for s in self.samples if s.wall > 0)

    def __len__(self) -> int:
        return len(self.samples)


def timing_to_json(timing: Timing) -> list[list[float]]:
    return [[s.wall, s.cpu] for s in timing.samples]


def timing_from_json(samples) -> Timing:
    return Timing([Sample(float(w), float(c)) for w, c in samples])


def measure(
    fn: Callable[[], object], repeats: int, warmup: int = 1, budget_s: float | None = None, min_repeats: int = 3
) -> Timing:
    """``repeats`` timed calls of ``fn`` after ``warmup`` untimed ones; stops
    early (after ``min_repeats``) once ``budget_s`` seconds are spent."""
    for _ in range(warmup):
        fn()
    timing = Timing()
    start = time.perf_counter()
    for i in range(repeats):
        timing.samples.append(time_call(fn))
        if budget_s is not None and i + 1 >= min_repeats and time.perf_counter() - start > budget_s:
            break
    return timing


def interleaved(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    budget_s: float | None = None,
    min_rounds: int = 3,
) -> dict[str, Timing]:
    """Times the variants ``fns`` round-robin: each round calls every one once.

    ``warmup`` untimed rounds first; stops early (after ``min_rounds``) once
    ``budget_s`` seconds are spent. Returns ``{name: Timing}``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    timings = {name: Timing() for name in fns}
    start = time.perf_counter()
    for r in range(rounds):
        for name, fn in fns.items():
            timings[name].samples.append(time_call(fn))
        if budget_s is not None and r + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break
    return timings


# -- the machine ------------------------------------------------------------------------------
def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cpuinfo() -> dict[str, str]:
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def machine_info() -> dict[str, str]:
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = _mem_total_gb()
    return {
        "cpu": cpu.get("model name", platform.processor() or "unknown"),
        "cores": f"{usable} usable of {os.cpu_count()} logical",
        "cpu flags": " ".join(f for f in CPU_FLAGS if f in flags) or "none of " + ", ".join(CPU_FLAGS),
        "memory": f"{memory:.1f} GB" if memory else "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions().items()),
    }


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux: ru_maxrss in KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- Markdown ------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` significant digits (thousands separated); text unchanged."""
    if isinstance(value, str):
        return value
    if value is None or value != value:  # None or NaN
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    decimals = max(digits - 1 - int(f"{magnitude:e}".split("e")[1]), 0)
    return f"{value:,.{decimals}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one letter per column (``l`` or ``r``; default:
    first column left, the rest right). Numbers go through ``fmt``."""
    headers = list(headers)
    align = align or "l" + "r" * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(cell) for cell in row) + " |")
    return "\n".join(lines)


@dataclasses.dataclass
class Target:
    name: str
    measured: str
    threshold: str
    met: bool | None  # None: could not be measured
    evidence: str = ""


class Report:
    """One benchmark run: sections of Markdown, targets, the machine and the load.

    ``finish(output)`` prints the report and appends it to ``output``
    (``-`` prints only).
    """

    def __init__(self, title: str, argv: Sequence[str] | None = None, quick: bool = False):
        self.title = title
        self.quick = quick
        self.started = datetime.datetime.now().astimezone()
        self.start_clock = time.perf_counter()
        self.load_start = load_average()
        script = os.path.relpath(sys.argv[0], REPO) if sys.argv and sys.argv[0] else "?"
        args = list(sys.argv[1:] if argv is None else argv)
        self.command = "python " + " ".join(shlex.quote(a) for a in [script, *args])
        self.parts: list[str] = []
        self.targets: list[Target] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"### {text}")

    def text(self, text: str) -> None:
        self.parts.append(text.strip())

    def table(self, headers, rows, note: str | None = None, align: str | None = None) -> None:
        table = markdown_table(headers, rows, align)
        self.parts.append(table)
        if note:
            self.parts.append(note.strip())
        print(table, flush=True)

    def target(self, name: str, measured: str, threshold: str, met: bool | None, evidence: str = "") -> None:
        self.targets.append(Target(name, measured, threshold, met, evidence))

    def render(self) -> str:
        elapsed = time.perf_counter() - self.start_clock
        cpu = process_cpu_seconds()
        machine = machine_info()
        mode = "quick (CI smoke run: tiny sizes, few repeats; not for comparison)" if self.quick else "full"
        lines = [
            f"## {self.title}",
            "",
            f"- command: `{self.command}` ({mode})",
            f"- when: {self.started:%Y-%m-%d %H:%M %Z}; took {elapsed:.0f} s wall, {cpu:.0f} CPU-s "
            f"(this process and its children)",
            f"- machine: {machine['cpu']}, {machine['cores']}, {machine['memory']}, {machine['os']}",
            f"- cpu flags: {machine['cpu flags']}",
            f"- python {machine['python']}; {machine['versions']}",
            f"- load average (1, 5, 15 min): start {self.load_start}; end {load_average()}",
            "",
        ]
        if self.targets:
            lines += [
                "### Targets",
                "",
                markdown_table(
                    ["target", "measured", "threshold", "met", "evidence"],
                    [
                        (
                            t.name,
                            t.measured,
                            t.threshold,
                            "n/a" if t.met is None else ("**met**" if t.met else "**not met**"),
                            t.evidence,
                        )
                        for t in self.targets
                    ],
                    align="lllll",
                ),
                "",
            ]
        for part in self.parts:
            lines += [part, ""]
        return "\n".join(lines).rstrip() + "\n"

    def finish(self, output) -> str:
        text = self.render()
        print("\n" + text, flush=True)
        if str(output) != "-":
            append(output, text)
            print(f"Appended to {output}", flush=True)
        return text


def append(path, text: str) -> None:
    path = Path(path)
    if path.exists() and path.stat().st_size:
        existing = path.read_text()
        text = ("\n" if not existing.endswith("\n\n") else "") + text
    else:
        text = "# Benchmarks\n\nReports appended by the scripts in `bench/` (one section per run).\n\n" + text
    with path.open("a") as f:
        f.write(text)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a CI smoke run (tiny sizes, few repeats; seconds, not minutes)"
    )
    parser.add_argument(
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="Markdown file the report is appended to ('-': print only; default BENCHMARKS.md)",
    )
    return parser
