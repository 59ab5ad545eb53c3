"""SNR-ladder simulator: realistic 1D NMR spectra with a known truth (NumPy only).

A ladder is R replicate spectra of one simulated sample whose SNR grows by a factor T per
rung (METHOD section 1). Every spectrum is made the way a spectrometer makes it: a sum of
damped complex exponentials (the FID), complex white noise, exponential apodization,
first-point halving, zero-filling, FFT, phase errors and a rolling baseline, real part.

Conventions (``nmrladder.runtime.conventions``):

- SNR: ``SNR_CONVENTION``, height of the tallest non-solvent peak of the noise-free real
  spectrum over the standard deviation of the real-part noise. The truth is stored in
  *truth units*, where that height is 1, so the noise std of rung k is ``1 / snr[k]``.
- Shifts: ``SHIFT_CONVENTION``, ``shifted[i] = x[i - d]`` in points. Rung k holds the truth
  shifted by ``shifts[k]``; the shift is applied exactly, as a phase ramp on the FID.
- Orientation: the NMR way, ppm decreasing with index, ``ppm[i] = ppm0 - i * sw_ppm / L``;
  point ``L // 2`` is the carrier.

Entry points: :func:`simulate_ladders` (in memory), :func:`simulate_to_file` (chunked, bounded
memory, HDF5), :func:`load_ladders` and :func:`open_ladders` (lazy, streaming). The parts live
in ``nmrladder.train.sim`` (options, families, lines, one sample, the file); this module
generates data sets from them and is the public face of the simulator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.train.sim.options import (
    FAMILY_NAMES,
    LINESHAPES,
    NORM_METHODS,
    NUCLEI,
    SimConfig,
    SimOptions,
    make_config,
)
from nmrladder.train.sim.sample import simulate_sample as _simulate_sample
from nmrladder.train.sim.store import (
    ACQ_FIELDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    OPTIONAL_ARRAYS,
    ORIENTATION,
    LadderFile,
    Ladders,
    LadderWriter,
    atomic_h5,
    dataset_meta,
    fourier_shift_real,
    from_arrays,
    load_ladders,
    open_ladders,
    stack_samples,
)

__all__ = [
    "ACQ_FIELDS",
    "FAMILY_NAMES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LINESHAPES",
    "NORM_METHODS",
    "NUCLEI",
    "ORIENTATION",
    "LadderFile",
    "Ladders",
    "SimOptions",
    "fourier_shift_real",
    "load_ladders",
    "open_ladders",
    "simulate_ladders",
    "simulate_to_file",
]


def _sample_chunks(cfg: SimConfig, chunk: int, workers: int) -> Iterator[tuple[int, list[dict]]]:
    """Yield (start, samples) chunk by chunk; the next chunk is computed meanwhile.

    Threads suffice: the heavy work (FFT, BLAS, ufuncs) releases the GIL. At most two
    chunks are held in memory.
    """
    starts = list(range(0, cfg.n, chunk))
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def submit(start: int) -> list[Future]:
            return [pool.submit(_simulate_sample, i, cfg)
                    for i in range(start, min(start + chunk, cfg.n))]

        pending = submit(starts[0])
        for c, start in enumerate(starts):
            upcoming = submit(starts[c + 1]) if c + 1 < len(starts) else []
            yield start, [f.result() for f in pending]
            pending = upcoming


def simulate_ladders(
    n: int,
    rungs: int,
    length: int,
    T: float | tuple[float, float],
    snr: float,
    seed: int,
    *,
    workers: int = 1,
    **options: Any,
) -> Ladders:
    """Simulate n SNR ladders in memory.

    Parameters
    ----------
    n : int
        Number of samples (ladders).
    rungs : int
        Rungs per ladder, R >= 2.
    length : int
        Points per spectrum, L >= 256 (after zero-filling).
    T : float or (float, float)
        SNR ratio between consecutive rungs, > 1; a (lo, hi) pair draws it per sample.
    snr : float
        Requested SNR S of rung 0 (``SNR_CONVENTION``); rung k gets ``S * T**k * (1 + jitter)``.
    seed : int
        Sample i uses ``np.random.SeedSequence(seed, spawn_key=(i,))``, so the result does
        not depend on ``workers``.
    workers : int
        Threads.
    **options
        See :class:`SimOptions`.

    Returns
    -------
    Ladders

    Raises
    ------
    InputError
        For a bad argument or option; the message names it.
    """
    cfg = make_config(n, rungs, length, T, snr, seed, options)
    workers = _check_workers(workers)
    samples = [s for _, chunk in _sample_chunks(cfg, max(1, cfg.n), workers) for s in chunk]
    return from_arrays(stack_samples(samples), dataset_meta(cfg))


def simulate_to_file(
    path: str | os.PathLike,
    n: int,
    rungs: int,
    length: int,
    T: float | tuple[float, float],
    snr: float,
    seed: int,
    *,
    chunk: int = 64,
    workers: int = 2,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Simulate n ladders straight to an HDF5 file, chunk by chunk (bounded memory).

    Same arguments and options as :func:`simulate_ladders`; the file holds exactly what
    ``simulate_ladders(...).save(path)`` would, whatever ``chunk`` and ``workers``. The file
    appears complete or not at all (temporary name, then rename). Returns the path.
    """
    cfg = make_config(n, rungs, length, T, snr, seed, options)
    workers = _check_workers(workers)
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"option chunk: must be an integer >= 1, got {chunk!r}")
    from tqdm.auto import tqdm

    with atomic_h5(path) as f, tqdm(
        total=cfg.n, unit="ladder", desc="simulate", disable=not progress
    ) as bar:
        optional = [name for name in OPTIONAL_ARRAYS if getattr(cfg.opts, f"keep_{name}")]
        writer = LadderWriter(f, cfg.n, cfg.rungs, cfg.length, cfg.n_regions_max, optional,
                              dataset_meta(cfg))
        for start, samples in _sample_chunks(cfg, int(chunk), workers):
            writer.write(start, stack_samples(samples))
            bar.update(len(samples))
    return Path(path)


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"option workers: must be an integer >= 1, got {workers!r}")
    return int(workers)
