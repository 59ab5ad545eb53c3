"""Throughput of the Ray engine against the local engine, on this machine (a script).

    .venv/bin/python benchmarks/bench_ray.py                      # 200 spectra of 16384 points
    .venv/bin/python benchmarks/bench_ray.py --model-size tiny --out table.md

Denoises the same simulated .npy spectra with the local engine (DenoiseJob) and with
denoise_with_ray on a local Ray instance (1 and 2 workers), checks that the outputs are
bit-identical, and prints a markdown table; each configuration runs --repeats times and
keeps its best. ``wall``: the call's time (what a user waits: with Ray, the actors' start
and model load included); ``steady``: the rate once running, from the outputs' modification
times (the last 90 % of the files). The Ray start itself (ray.init of a local instance) is
timed apart: with --address it is not paid.
Needs the train extra (torch, to export the untrained model) and the ray extra.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# Untrained U-Nets (throughput does not depend on the weights): the test suite's tiny one,
# and the CPU recipe's (train/configs/cpu_recipe.toml).
MODELS = {
    "tiny": {"depth": 3, "widths": (8, 16, 16), "dilations": (1, 2, 4)},
    "cpu": {"depth": 4, "widths": (16, 32, 64, 64), "dilations": (1, 2, 4, 8)},
}


def export_model(size: str, folder: Path) -> Path:
    import torch

    from nmrladder.export.onnx_export import export_onnx
    from nmrladder.train.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(**MODELS[size])).eval()
    path = folder / f"{size}.onnx"
    export_onnx(model, path, max_length=65536, parity=False)
    return path


def write_spectra(folder: Path, count: int, length: int) -> list[Path]:
    from nmrladder.train.simulate import simulate_ladders

    folder.mkdir(parents=True, exist_ok=True)
    ladders = simulate_ladders(count, 2, length, 2.0, 8.0, seed=0)
    paths = []
    for i in range(count):
        paths.append(folder / f"s{i:04d}.npy")
        np.save(paths[-1], ladders.x[i, 0])
    return paths


def run_local(model: Path, paths: list[Path], out: Path, threads: int, batch: int) -> float:
    from nmrladder.runtime import Denoiser
    from nmrladder.runtime.pipeline import DenoiseJob

    started = time.perf_counter()
    denoiser = Denoiser(model, batch_size=batch, threads=threads)
    summary = DenoiseJob(denoiser, out, progress=False).run(paths)
    assert not summary.failed, summary.failed[0].message
    return time.perf_counter() - started


def run_ray(model: Path, paths, out: Path, workers: int, threads: int, batch: int) -> float:
    from nmrladder.runtime.ray_engine import denoise_with_ray

    started = time.perf_counter()
    summary = denoise_with_ray(
        model,
        paths,
        out,
        batch_size=batch,
        workers=workers,
        threads_per_worker=threads,
        progress=False,
    )
    assert not summary.failed, summary.failed[0].message
    return time.perf_counter() - started


def same_outputs(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*_denoised.npy"))
    return names == sorted(p.name for p in b.glob("*_denoised.npy")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def steady_rate(out: Path) -> float:
    """Files per second over the last 90 % of the outputs, by their modification times."""
    times = sorted(p.stat().st_mtime for p in out.glob("*_denoised.npy"))
    first = len(times) // 10
    return (len(times) - 1 - first) / max(times[-1] - times[first], 1e-9)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spectra", type=int, default=200, help="N (default 200)")
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model-size", choices=sorted(MODELS), default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)

    import ray

    cpus = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="nmrladder-bench-ray-"))
    try:
        model = export_model(args.model_size, work)
        paths = write_spectra(work / "in", args.spectra, args.length)
        started = time.perf_counter()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started

        configs = [
            ("local", 1, cpus),  # the local engine as the CLI runs it: every core
            ("local", 1, 1),
            ("ray", 1, 1),
            ("ray", 2, 1),
            ("ray", 1, cpus),
        ]
        rows = []
        for engine, workers, threads in configs:
            walls, rates = [], []
            for repeat in range(args.repeats):
                out = work / f"{engine}-{workers}x{threads}-{repeat}"
                if engine == "local":
                    walls.append(run_local(model, paths, out, threads, args.batch_size))
                else:
                    walls.append(run_ray(model, paths, out, workers, threads, args.batch_size))
                    assert same_outputs(work / f"local-1x{cpus}-0", out), "outputs differ"
                rates.append(steady_rate(out))
            rows.append((engine, workers, threads, min(walls), max(rates)))
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.spectra
    local_wall = rows[0][3]
    lines = [
        f"{n} spectra of {args.length} points, model '{args.model_size}' "
        f"(widths {MODELS[args.model_size]['widths']}), batch {args.batch_size}, {cpus} CPUs, "
        f"best of {args.repeats}; load average {load_before[0]:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after; Ray start (local instance) {ray_start:.1f} s, "
        "not included below.",
        "",
        "| engine | workers x threads | wall (s) | spectra/s | steady spectra/s | "
        "wall - local wall (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    steady = {}
    for engine, workers, threads, wall, rate in rows:
        steady[(engine, workers, threads)] = rate
        lines.append(
            f"| {engine} | {workers} x {threads} | {wall:.2f} | {n / wall:.1f} | {rate:.1f} | "
            f"{wall - local_wall:+.2f} |"
        )
    walls = {(e, w, t): wall for e, w, t, wall, _ in rows}
    lines += [
        "",
        f"Ray 2 workers / 1 worker: {walls[('ray', 1, 1)] / walls[('ray', 2, 1)]:.2f}x "
        f"(wall), {steady[('ray', 2, 1)] / steady[('ray', 1, 1)]:.2f}x (steady); "
        "outputs bit-identical to the local engine's.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
