"""Throughput of the SNR-ladder simulator at R = 4, L = 16384 (target: >= 100 ladders/s).

pytest-benchmark::

    .venv/bin/python -m pytest benchmarks/bench_simulate.py --benchmark-enable

or as a script (prints ladders/s for 1 and 2 workers, in memory and to HDF5)::

    .venv/bin/python benchmarks/bench_simulate.py --samples 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytest

from nmrladder.train.simulate import simulate_ladders, simulate_to_file

R, L, T, SNR = 4, 16384, 2.0, 5.0


def _record_rate(benchmark, n: int) -> None:
    """Put ladders/s into the benchmark report (when benchmarking is enabled)."""
    if benchmark.stats is not None:
        benchmark.extra_info["ladders_per_s"] = n / benchmark.stats.stats.mean


@pytest.mark.parametrize("workers", [1, 2])
def test_bench_simulate_ladders(benchmark, workers):
    n = 128
    out = benchmark.pedantic(
        simulate_ladders,
        args=(n, R, L, T, SNR, 0),
        kwargs={"workers": workers},
        rounds=3,
        iterations=1,
    )
    assert out.x.shape == (n, R, L)
    _record_rate(benchmark, n)


def test_bench_simulate_to_file(benchmark, tmp_path):
    n = 256
    path = tmp_path / "ladders.h5"
    benchmark.pedantic(
        simulate_to_file,
        args=(path, n, R, L, T, SNR, 0),
        kwargs={"workers": 2, "chunk": 64, "progress": False},
        rounds=3,
        iterations=1,
    )
    assert path.stat().st_size > n * R * L * 4
    _record_rate(benchmark, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = args.samples
    simulate_ladders(8, R, L, T, SNR, 0)  # warm up (FFT plans, BLAS threads)
    for workers in (1, 2):
        best = min(
            _time(lambda w=workers: simulate_ladders(n, R, L, T, SNR, 0, workers=w))
            for _ in range(args.repeats)
        )
        print(f"simulate_ladders  workers={workers}: {n / best:7.1f} ladders/s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ladders.h5"
        best = min(
            _time(lambda: simulate_to_file(path, n, R, L, T, SNR, 0, workers=2, progress=False))
            for _ in range(args.repeats)
        )
        print(
            f"simulate_to_file  workers=2: {n / best:7.1f} ladders/s "
            f"({path.stat().st_size / n / 1e3:.0f} kB per ladder)"
        )


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
