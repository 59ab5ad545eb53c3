"""End to end: ``denoise`` over a folder of files against pure inference on the same spectra.

64 simulated .npy spectra of 16384 points, the product model's int8 copy (what the CPU
backend runs by default), batch 8, 2 threads, run as
``nmrladder denoise`` runs them: one stream per thread (two single-threaded network calls
side by side; the DenoiseJob's file thread shares the machine with them)::

    .venv/bin/python -m pytest benchmarks/bench_end_to_end.py --benchmark-enable --benchmark-only

One group, ``end to end``:

- ``test_denoise_job``: DenoiseJob over the folder (read + scale, infer, write, overlapped);
  extra_info holds the seconds of each stage, the overlap achieved (sum of the stage times /
  wall time), spectra/s, and ``paired_fraction``: pure inference timed before each round
  over the job's median wall (the ratio that drift between benchmarks cannot skew); the pure
  inference of a round is the faster of the job's streams and one batch at a time on every
  thread, so the job is measured against the best the network alone does;
- ``test_pure_inference``: the job's streams over the same spectra, already scaled, in
  batches of 8: the ceiling of the job's throughput;
- ``test_read_scale`` and ``test_scale_unscale``: per spectrum, what the file thread does to
  read an input (the file, MAD scaling, padding) and the scaling alone (to_model_input +
  from_model_output).

benchmarks/report.py gives end-to-end throughput as a fraction of pure inference and the
preprocessing time per spectrum as a fraction of the job's time per spectrum.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

FILES = 64
L = 16384
BATCH = 8
GROUP = "end to end"
SETTLE_SECONDS = 0.05


@pytest.fixture(scope="module")
def folder(tmp_path_factory, sizes) -> list[Path]:
    from nmrladder.train.simulate import simulate_ladders

    n = sizes.length(L)
    files = 8 if sizes.smoke else FILES
    root = tmp_path_factory.mktemp("e2e-in")
    ladders = simulate_ladders(files, 2, n, 2.0, 8.0, seed=0)
    paths = []
    for i in range(files):
        paths.append(root / f"s{i:03d}.npy")
        np.save(paths[-1], ladders.x[i, 0].astype(np.float32))
    return paths


@pytest.fixture(scope="module")
def denoiser(models, sizes):
    """The job's denoiser, configured as ``nmrladder denoise`` does by default."""
    from nmrladder.runtime import Denoiser
    from nmrladder.runtime.denoise_cli import auto_streams

    streams = auto_streams("ort", sizes.threads)
    path = models["product"].int8_copy(sizes.cache)  # what the CPU backend runs by default
    return Denoiser(path, batch_size=BATCH, threads=sizes.threads, streams=streams)


@pytest.fixture(scope="module")
def one_call_denoiser(models, sizes):
    """One batch at a time on every thread: the other way to run the network alone."""
    from nmrladder.runtime import Denoiser

    path = models["product"].int8_copy(sizes.cache)
    return Denoiser(path, batch_size=BATCH, threads=sizes.threads)


def _context(benchmark, models, paths) -> None:
    benchmark.group = GROUP
    benchmark.extra_info.update(
        models["product"].info(), files=len(paths), length=int(np.load(paths[0]).size), batch=BATCH
    )
    benchmark.extra_info["precision"] = "int8"  # the denoiser fixtures run the int8 copy


def test_denoise_job(
    benchmark, models, sizes, recorder, folder, denoiser, one_call_denoiser, tmp_path
):
    from nmrladder.runtime.pipeline import DenoiseJob

    _context(benchmark, models, folder)
    summaries = []
    # Pure inference timed just before each round (drift-free ratio), both ways; the ceiling
    # of a round is the faster one.
    paired = {"streams": [], "one_call": []}
    ways = {
        "one_call": _pure_inference(folder, one_call_denoiser, sizes.threads),
        "streams": _pure_inference(folder, denoiser, sizes.threads),
    }

    def fresh_out():
        out = tmp_path / f"round-{len(summaries)}"
        shutil.rmtree(out, ignore_errors=True)
        for way, infer_all in ways.items():
            started = time.perf_counter()
            infer_all()
            paired[way].append(time.perf_counter() - started)
            # ORT's pool threads spin for a while after a two-threaded call and would slow
            # whatever runs next (benchmarks/README.md, "End to end"); a pause lets them
            # sleep first.
            time.sleep(SETTLE_SECONDS)
        return (out,), {}

    def job(out):
        summary = DenoiseJob(denoiser, out, progress=False).run(folder)
        assert not summary.failed, summary.failed[0].message
        summaries.append(summary)

    benchmark.pedantic(job, setup=fresh_out, rounds=sizes.rounds(9), warmup_rounds=1)
    # the stage times of the median round (the warm-up round is summaries[0])
    timed = sorted(summaries[1:] or summaries, key=lambda s: s.wall_seconds)
    middle = timed[len(timed) // 2]
    stages = {k: round(v, 4) for k, v in middle.stage_seconds.items()}
    walls = [s.wall_seconds for s in timed]
    ceiling = [min(pair) for pair in zip(paired["streams"], paired["one_call"], strict=True)]
    pures = ceiling[1:] or ceiling
    benchmark.extra_info.update(
        streams=denoiser.streams,
        pure_seconds_streams=paired["streams"][1:] or paired["streams"],
        pure_seconds_one_call=paired["one_call"][1:] or paired["one_call"],
        stage_seconds=stages,
        wall_seconds=middle.wall_seconds,
        overlap=sum(stages.values()) / middle.wall_seconds,
        stage_seconds_per_spectrum={k: v / len(folder) for k, v in stages.items()},
        walls=walls,
        paired_pure_seconds=pures,
        # Pure inference and the job, alternating round by round: the machine's speed drifts
        # between the group's benchmarks, not between a round and the next.
        paired_fraction=float(np.median(pures) / np.median(walls)),
    )
    recorder(benchmark, spectra=len(folder), points=len(folder) * np.load(folder[0]).size)


def test_pure_inference(benchmark, models, sizes, recorder, folder, denoiser):
    _context(benchmark, models, folder)
    benchmark.pedantic(
        _pure_inference(folder, denoiser, sizes.threads), rounds=sizes.rounds(5), warmup_rounds=1
    )
    recorder(benchmark, spectra=len(folder), points=len(folder) * np.load(folder[0]).size)


def _pure_inference(folder, denoiser, threads):
    """The network over the folder's spectra, already scaled, in batches of the denoiser's
    size, its streams side by side: the ceiling."""
    from nmrladder.runtime.scaling import to_model_input

    x = np.stack([np.load(p) for p in folder])
    z, _, _ = to_model_input(x, denoiser.info.length_multiple, threads=threads)
    batches = [z[start : start + BATCH] for start in range(0, len(z), BATCH)]
    session = denoiser.session

    def infer_all():
        with ThreadPoolExecutor(denoiser.streams, thread_name_prefix="bench-infer") as pool:
            list(pool.map(session.run, batches))

    return infer_all


def test_read_scale(benchmark, models, sizes, recorder, folder, denoiser):
    """Reading one file as the file thread does (pipeline.read_scaled: np.load, MAD scaling,
    padding)."""
    from nmrladder.runtime.pipeline import read_scaled

    _context(benchmark, models, folder)
    item = benchmark.pedantic(
        read_scaled, (0, folder[0], denoiser.info), rounds=sizes.rounds(200), iterations=5
    )
    assert not item.error, item.error
    recorder(benchmark, spectra=1)


def test_scale_unscale(benchmark, models, sizes, recorder, folder, denoiser):
    """The scaling alone, in and out, for one spectrum (one thread, as the file thread does)."""
    from nmrladder.runtime.scaling import from_model_output, to_model_input

    _context(benchmark, models, folder)
    x = np.load(folder[0])[None, :]
    multiple = denoiser.info.length_multiple

    def both():
        z, centers, sigmas = to_model_input(x, multiple, threads=1)
        return from_model_output(z, centers, sigmas, x.shape[1])

    y = benchmark.pedantic(both, rounds=sizes.rounds(200), iterations=5)
    assert np.allclose(y, x, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(x))))
    recorder(benchmark, spectra=1)
