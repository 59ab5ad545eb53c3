"""``nmrladder bench``: run the speed suites of benchmarks/ and print their markdown tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DESCRIPTION = (
    "Measure the denoiser's speed on this machine with the pytest-benchmark suites of a source "
    "checkout's benchmarks/ folder. First, like for like on the shipped model at 16384 points: "
    "float32 ONNX Runtime against float32 torch eager and torch.compile, the int8 copy the CPU "
    "backend runs against torch's own int8 path (PT2E, x86 inductor quantizer, compiled; needs "
    "torchao), each at batch 1 (single-spectrum latency) and per spectrum at batch 64, with "
    "the load it ran under. Then latency (p50, p99) at 8k-64k points, batch "
    "throughput, every backend at batch 8 on the same weights (and CUDA / TensorRT where "
    "present), "
    "cold start, end-to-end file denoising against pure inference, and the network's GFLOP/s "
    "against the machine's sgemm peak. The product model is runtime/models/default.onnx (and "
    "default.int8.onnx) when shipped, else a seeded export of the candidate config; "
    "METHOD's default U-Net is the reference point. Results: OUT/<machine>.json (pytest-"
    "benchmark) and OUT/<machine>.md (printed). Takes minutes (--quick: fewer rounds); run it "
    "on an otherwise idle machine: on 2 cores one busy neighbour moves the figures a lot "
    "(benchmarks/README.md, Load). Needs the train and dev extras (torch, onnx, "
    "pytest-benchmark, torchao). The figures "
    "quoted in README.md and docs/ are generated from the reference results file: after a new "
    "run there, `python benchmarks/figures.py` rewrites them."
)
EXAMPLES = """  nmrladder bench                               # the suites -> benchmarks/results
  nmrladder bench --quick --out /tmp/bench      # fewer rounds, same shapes
  nmrladder bench --suite inference -k latency  # one group
  nmrladder bench --suite all                   # also the kernel and simulator suites
  nmrladder bench --threads 4 --out results/4t  # another thread count
"""

SUITES = {
    "inference": ["bench_inference.py"],
    "end-to-end": ["bench_end_to_end.py"],
    "peak": ["bench_peak.py"],
}
DEFAULT_SUITES = ("inference", "end-to-end", "peak")


def benchmarks_folder() -> Path:
    """benchmarks/ of the source checkout this package runs from (an editable install)."""
    from nmrladder.runtime.errors import InputError

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if not (folder / "report.py").is_file():
        raise InputError(
            f"{folder}: no benchmarks folder; the suites live in the source checkout: "
            "git clone the project and `pip install -e '.[train,dev]'`"
        )
    return folder


def add_arguments(parser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds per benchmark (same shapes)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the JSON and markdown results (default: benchmarks/results)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=(*SUITES, "all"),
        help="suites to run, repeatable (default: inference, end-to-end and peak; "
        "all: every bench_*.py, the kernel and simulator suites too)",
    )
    parser.add_argument("-k", dest="select", default=None, help="pytest -k expression")
    parser.add_argument(
        "--threads", type=int, default=2, help="ORT intra-op and torch threads (default: 2)"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder for the exported models (default: ~/.cache/nmrladder/bench)",
    )


def pytest_command(args, folder: Path, json_path: Path) -> list[str]:
    suites = args.suite or list(DEFAULT_SUITES)
    files = (
        [str(folder)]
        if "all" in suites
        else [str(folder / name) for suite in suites for name in SUITES[suite]]
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        *files,
        "-v",
        "-rs",
        "-p",
        "no:cacheprovider",
        "--benchmark-enable",
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=median,min,rounds",
        "-o",
        "timeout=1800",  # the tests' per-test limit (pyproject.toml) is too short for suites
    ]
    if args.select:
        command += ["-k", args.select]
    return command


def run(args) -> int:
    from nmrladder.runtime.errors import InputError

    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    try:
        import pytest_benchmark  # noqa: F401
    except ImportError as err:
        raise InputError(
            f"pytest-benchmark is missing ({err}); install it: pip install 'nmrladder[dev]'"
        ) from err
    folder = benchmarks_folder()
    out = (args.out or folder / "results").resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f".bench-{os.getpid()}.json"
    env = dict(os.environ, NMRLADDER_BENCH_THREADS=str(args.threads))
    if args.quick:
        env["NMRLADDER_BENCH_QUICK"] = "1"
    if args.cache:
        env["NMRLADDER_BENCH_CACHE"] = str(args.cache.resolve())
    print(f"nmrladder bench: {load_line()} at the start; results go to {out}")
    try:
        code = subprocess.call(pytest_command(args, folder, json_path), cwd=folder.parent, env=env)
        if not json_path.is_file():
            print("nmrladder bench: pytest saved no results", file=sys.stderr)
            return code or 1
        report = [sys.executable, str(folder / "report.py"), str(json_path), "--out-dir", str(out)]
        rendered = subprocess.call([*report, "--save-json"], cwd=folder.parent, env=env)
    finally:
        json_path.unlink(missing_ok=True)
    print(f"nmrladder bench: {load_line()} at the end (the report states both)")
    return code or rendered


def load_line() -> str:
    """The 1, 5 and 15 minute load averages and the CPU count, in one phrase."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"load average {load} on {os.cpu_count()} CPUs"
