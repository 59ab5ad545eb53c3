"""Series mode: each input is an SNR ladder, denoised rung by rung and fused (``--series``).

A ladder is a folder of rung files (sorted by name, rung 0 the lowest SNR) or one 2D .npy/.npz
array [R, L]; :meth:`Denoiser.denoise_series` denoises and fuses it. Its outputs are named
after the ladder as the batch job's are after the input (:func:`ladder_name`: the folder's
name, or the file's name less its suffix): ``<name>_fused<suffix>`` in the top rung's format
(a new procno for Bruker rungs; ``.npz`` for an array), ``<name>_series.json`` beside it,
and ``plots/<input name>.png``. Ladders whose outputs would share a name are qualified by
their folder, as the batch job's inputs are (runtime/stages.py, qualified). The manifest, the
resume plan and the per-input failure policy are the batch job's (runtime/manifest.py,
runtime/stages.py).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nmrladder.runtime.dispatch import fallback_counts, fallbacks_since
from nmrladder.runtime.errors import InputError, NmrLadderError
from nmrladder.runtime.inputs import is_bruker, is_candidate
from nmrladder.runtime.manifest import (
    FileResult,
    JobSummary,
    Manifest,
    plan_resume,
    prepare_out_dir,
    residual_step,
    strength_step,
    strength_text,
)
from nmrladder.runtime.stages import (
    estimated_snr,
    failure_message,
    output_destination,
    plot_path,
    progress_bar,
    qualified,
)


def read_ladder(path: str | Path) -> tuple[np.ndarray, list | None]:
    """A ladder [R, L] from a folder of rung files (sorted by name: rung 0 first, the lowest
    SNR) or from one 2D .npy/.npz array; also the rungs' Spectrum objects when from files."""
    from nmrladder.runtime.io import read_spectrum

    path = Path(path)
    if path.is_dir() and not is_bruker(path):
        files = sorted(p for p in path.iterdir() if is_candidate(p))
        if len(files) < 2:
            raise InputError(f"{path}: a series needs at least 2 rung files, found {len(files)}")
        spectra = [read_spectrum(f) for f in files]
        lengths = {f.name: len(s) for f, s in zip(files, spectra, strict=True)}
        if len(set(lengths.values())) > 1:
            raise InputError(
                f"{path}: rungs of different lengths {lengths}; every rung needs the same length"
            )
        return np.stack([s.intensities for s in spectra]), spectra
    if path.suffix.lower() == ".npy":
        return _checked_ladder(np.load(path, allow_pickle=False), path), None
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if "intensities" not in archive:
                raise InputError(f"{path}: a series .npz needs an 'intensities' array [R, L]")
            return _checked_ladder(archive["intensities"], path), None
    raise InputError(f"{path}: a series is a folder of rung files or a 2D .npy/.npz array [R, L]")


def _checked_ladder(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim != 2:
        raise InputError(
            f"{path}: a series file must hold a 2D array [R, L], got shape {array.shape}"
        )
    return array


def run_series(
    denoiser,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    *,
    resume: bool = False,
    plot: bool = False,
    progress: bool = True,
) -> JobSummary:
    """Denoise each ladder (:meth:`Denoiser.denoise_series`) and write its fused spectrum.

    The fused spectrum goes out in the top rung's format when the rungs are files (a new
    procno for Bruker), else as ``<name>_fused.npz`` (``<name>``: :func:`ladder_name`, qualified
    when two ladders share it); ``<name>_series.json`` beside it holds
    T_hat, the SNR, noise, shift, scale and weight of every rung, and the strength setting
(the denoiser's: every rung goes through it). ``resume`` and the failure
    policy are the batch job's (runtime/manifest.py, plan_resume; _denoise_ladder).
    """
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir)
    residual_lb = getattr(denoiser, "residual_lb", None)
    strength = getattr(denoiser, "strength", None)
    model = getattr(denoiser, "fingerprint", "")
    started = time.perf_counter()
    paths = [Path(p) for p in inputs]
    names = Counter(ladder_name(p).casefold() for p in {Path(os.path.abspath(p)) for p in paths})
    skipped, _ = plan_resume(paths, out_dir, resume, residual_lb, model, strength)
    done = {result.input: result for result in skipped}
    manifest = Manifest(out_dir)
    summary = JobSummary()
    before = fallback_counts()
    bar = progress_bar(len(paths), progress)
    try:
        for path in paths:
            result = done.get(str(path))
            if result is None:
                t0 = time.perf_counter()
                qualify = names[ladder_name(path).casefold()] > 1
                result = _denoise_ladder(denoiser, path, out_dir, plot, model, qualify)
                result.seconds = time.perf_counter() - t0  # read to written, as recorded
                if result.status == "ok":
                    result = _recorded(manifest, result, path)
            summary.results.append(result)
            bar.update(1)
    finally:
        bar.close()
        manifest.close()
    summary.fallbacks = fallbacks_since(before)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def ladder_name(path: Path) -> str:
    """What a ladder's outputs are named after: a folder's name, a file's name less its
    suffix (``a.npy`` gives ``a_fused.npz`` and ``a_series.json``)."""
    path = Path(path)
    return path.stem if path.suffix.lower() in (".npy", ".npz") else path.name


def _denoise_ladder(
    denoiser,
    path: Path,
    out_dir: Path,
    plot: bool,
    model: str,
    qualify: bool = False,
) -> FileResult:
    """Read, denoise and fuse one ladder, write the fused spectrum and its report: its result.

    The batch job's failure policy: a ladder that cannot be read or written fails alone
    (any exception, named), as does one the denoiser refuses (the project's errors: a bad
    ladder); any other error of the denoiser (the network's) stops the job, as a failed
    inference stops the batch job.
    """
    try:
        ladder, spectra = read_ladder(path)
    except Exception as err:
        return _failed(err, path)
    try:
        series = denoiser.denoise_series(ladder, name=str(path))
    except (NmrLadderError, OSError) as err:
        return _failed(err, path)
    residual_lb = getattr(denoiser, "residual_lb", None)
    strength = getattr(denoiser, "strength", None)
    try:
        written = _write_series(
            series, ladder, spectra, path, out_dir, plot, qualify, strength_text(strength)
        )
        snr_before, _ = estimated_snr(ladder[-1])
        snr_after, _ = estimated_snr(series.fused)
    except Exception as err:
        return _failed(err, path)
    return FileResult(
        str(path),
        str(written),
        "ok",
        ladder.shape[1],
        snr_before,
        snr_after,
        f"T_hat {series.t_hat:.2f}",
        residual_lb=residual_lb or 0.0,
        residual_step=residual_step(residual_lb),
        model=model,
        strength=strength_text(strength),
        strength_step=strength_step(strength),
    )


def _write_series(
    series,
    ladder,
    spectra,
    path: Path,
    out_dir: Path,
    plot: bool,
    qualify: bool,
    strength: str = "",
) -> Path:
    """Write the fused spectrum (in the top rung's format when the rungs are files, else as
    an .npz), ``<name>_series.json`` and, with ``plot``, the overlay: the fused file's path.
    ``qualify``: another ladder's outputs would have these names (stages.qualified);
    ``strength``: the strength setting every rung was denoised with (manifest.strength_text),
    recorded in the report."""
    from nmrladder.runtime.atomic import atomic_path, write_text_atomic
    from nmrladder.runtime.io import Spectrum, write_spectrum

    name = ladder_name(path)
    if qualify:
        name = qualified(path, name)
    top = spectra[-1] if spectra else Spectrum(ladder[-1].astype(np.float32), source=str(path))
    if spectra:
        destination = output_destination(top, Path(top.source), out_dir, False, qualify)
        if top.format != "bruker":
            destination = destination.with_name(f"{name}_fused{destination.suffix}")
        written = write_spectrum(top, destination, series.fused)
    else:
        written = out_dir / f"{name}_fused.npz"
        with atomic_path(written) as tmp:
            np.savez(tmp, intensities=series.fused)
    report = {
        "input": str(path),
        "output": str(written),
        "t_hat": series.t_hat,
        "snr": series.snr.tolist(),
        "sigma": series.sigma.tolist(),
        "shifts": series.shifts.tolist(),
        "scales": series.scales.tolist(),
        "weights": series.weights.tolist(),
        "strength": strength,
    }
    write_text_atomic(out_dir / f"{name}_series.json", json.dumps(report, indent=2))
    if plot:
        from nmrladder.runtime.plots import plot_denoised

        plot_denoised(
            ladder[-1],
            series.fused,
            plot_path(out_dir, path, qualify),
            ppm=top.ppm,
            title=f"{path}: top rung and the fused, denoised series",
        )
    return written


def _recorded(manifest: Manifest, result: FileResult, path: Path) -> FileResult:
    """The result once in the manifest; a failed one when it cannot be recorded."""
    try:
        manifest.record(result)
    except OSError as err:
        return _failed(err, path)
    return result


def _failed(err: Exception, path: Path) -> FileResult:
    return FileResult(str(path), status="failed", message=failure_message(err, path))


__all__ = ["ladder_name", "read_ladder", "run_series"]
