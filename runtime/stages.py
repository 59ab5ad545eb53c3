"""The per-input stages of a batch job, shared by the local engine and the Ray engine.

    read_scaled:     read one file, check its length, prepare it for the network (runtime/core.py)
    (the network runs on batches of prepared inputs: the engine's own business)
    finish_output:   the network's output finished, with its removal report (runtime/core.py)
    write_denoised:  finish the network's output (unless finished already: the confidence
                     band's copies ran first) and write it, and its band, atomically

Each stage turns a failure of its input into a message naming the file (:func:`failure_message`:
the same policy for every engine and for series mode), so one bad file fails alone and the job
goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmrladder.runtime.core import Core, Prepared, prepare
from nmrladder.runtime.errors import NmrLadderError
from nmrladder.runtime.manifest import FileResult, residual_step, strength_step, strength_text
from nmrladder.runtime.strength import RemovalReport

STAGES = ("read", "scale", "infer", "write")  # JobSummary.stage_seconds, in pipeline order
# The output's estimated SNR (manifest, "estimated SNR fell") from every 4th point: the full
# estimate was a large share of the file thread's work in a batch job (benchmarks/README.md).
OUTPUT_SNR_EVERY = 4


@dataclass
class Finished:
    """One input's output after the network and the strength step, what it removed, and
    (once its re-noised copies came back) each point's estimated error sigma and K."""

    y: np.ndarray
    report: RemovalReport
    band: np.ndarray | None = None
    copies: int = 0


@dataclass
class ScaledInput:
    """One input read and prepared for the network (``z``: its row of the network's input),
    or the reason it could not be; ``finished``: its output, when finished before the write
    (the confidence band's copies run in between)."""

    index: int
    path: Path
    spectrum: object = None
    prepared: Prepared | None = None
    z: np.ndarray | None = None
    snr_before: float = float("nan")
    error: str = ""
    started: float = 0.0
    read_seconds: float = 0.0  # of the time since ``started``, reading (the rest is scaling)
    finished: Finished | None = None


def estimated_snr(spectrum: np.ndarray, every: int = 1) -> tuple[float, float]:
    """(SNR, sigma) without a truth: tallest point over the robust baseline noise.

    The stated convention (height over RMS noise), with the height read off the spectrum
    itself, so noise spikes count: it reads high on pure noise (~4-5). ``every`` > 1 takes
    the baseline level and noise from every ``every``-th point, the masks' radii shrunk to
    span the same ppm: the noise of a stationary baseline is the same on a subsample, and
    the batch job spends half the time on each output (OUTPUT_SNR_EVERY).
    """
    from nmrladder.runtime.preprocess import robust_scale

    values = np.asarray(spectrum, dtype=np.float32)
    center, sigma = robust_scale(
        np.ascontiguousarray(values[::every]), 5.0, max(8 // every, 1), max(64 // every, 1)
    )
    if not sigma > 0:
        return float("inf"), 0.0
    return float((np.max(values) - center) / sigma), float(sigma)


def read_scaled(index: int, path: Path, info) -> ScaledInput:
    """Read one input and prepare it for the network (``info``: the artefact's ArtefactInfo).

    A bad input comes back with ``error`` set (naming the file), never as an exception: an
    unexpected one from a parser on a malformed file fails that file only.
    """
    from nmrladder.runtime.io import read_spectrum

    item = ScaledInput(index, path, started=time.perf_counter())
    try:
        spectrum = read_spectrum(path)
        info.check_length(len(spectrum), str(path))
        item.read_seconds = time.perf_counter() - item.started
        prepared = prepare(spectrum.intensities[None, :], info.length_multiple, threads=1)
        item.spectrum, item.prepared, item.z = spectrum, prepared, prepared.z[0]
        center, sigma = float(prepared.centers[0]), float(prepared.sigmas[0])
        item.snr_before = float((spectrum.intensities.max() - center) / sigma)
    except Exception as err:
        item.error = failure_message(err, path)
    return item


def finish_output(item: ScaledInput, output: np.ndarray, core: Core) -> Finished:
    """The network's ``output`` [L_pad] for ``item`` finished by ``core`` (crop, unscale, the
    strength step), with its removal report (positions on the spectrum's ppm axis)."""
    y, (report,) = core.finish_report(item.prepared, output[None, :], ppm=item.spectrum.ppm)
    return Finished(y[0], report)


def write_denoised(
    item: ScaledInput,
    output: np.ndarray | None,
    out_dir: Path,
    *,
    core: Core,
    in_place: bool = False,
    disambiguate: bool = False,
    plot: bool = False,
    model: str = "",
) -> FileResult:
    """Finish the network's ``output`` for ``item`` (``core``: the denoiser's,
    :func:`finish_output`; or take ``item.finished``, with its confidence band) and write it,
    and the band, atomically (runtime/band_output.py).

    ``disambiguate``: another input's output or plot would have this one's name
    (inputs.colliding_names), so both are qualified by the input's folder (:func:`qualified`);
    ``model``: the denoiser's fingerprint, recorded with the result, as are the strength
    setting and the removal report.
    Returns the input's result, not yet in the manifest (the caller records it); a failure,
    an unexpected exception included, comes back as a "failed" result naming the file.
    """
    from nmrladder.runtime.band_output import write_with_band

    result = FileResult(input=str(item.path), status="failed", message=item.error)
    if item.error or (output is None and item.finished is None):
        return result
    try:
        spectrum = item.spectrum
        finished = item.finished
        if finished is None:
            finished = finish_output(item, output, core)
        y = finished.y
        destination = output_destination(spectrum, item.path, out_dir, in_place, disambiguate)
        written, band_file = write_with_band(spectrum, destination, y, finished.band)
        snr_after, _ = estimated_snr(y, OUTPUT_SNR_EVERY)
        result = FileResult(
            str(item.path),
            str(written),
            "ok",
            len(spectrum),
            item.snr_before,
            snr_after,
            _warning(item.snr_before, snr_after),
            residual_lb=core.residual_lb or 0.0,
            residual_step=residual_step(core.residual_lb),
            model=model,
            strength=strength_text(core.strength),
            strength_step=strength_step(core.strength),
            removal=finished.report.as_dict(),
            confidence=str(band_file or ""),
            confidence_copies=finished.copies if finished.band is not None else 0,
        )
        if plot:
            destination = plot_path(out_dir, item.path, disambiguate)
            _plot(spectrum, finished, item.path, destination)
    except Exception as err:
        message = failure_message(err, item.path)
        result = FileResult(str(item.path), status="failed", message=message)
    return result


def output_destination(
    spectrum, source: Path, out_dir: Path, in_place: bool, disambiguate: bool
) -> Path:
    """Where the output of input ``source`` goes (io.output_path_for), its name qualified by
    the input's folder when ``disambiguate``. A Bruker output is a new procno in a copy of
    the experiment at out_dir/<dataset>/<expno>, qualified as out_dir/<dataset>-<tag>/<expno>
    (every experiment of one dataset in the same folder); in place, its own experiment."""
    from nmrladder.runtime.io import output_path_for

    if not disambiguate or in_place:
        return output_path_for(spectrum, out_dir, in_place=in_place)
    if spectrum.format == "bruker":
        experiment = Path(spectrum.source).parent.parent  # <dataset>/<expno>/pdata/<procno>
        dataset = experiment.parent
        return Path(out_dir) / f"{dataset.name}-{_tag(dataset)}" / experiment.name
    natural = output_path_for(spectrum, out_dir)
    return natural.with_name(qualified(source, natural.name))


def plot_path(out_dir: Path, source: Path, disambiguate: bool = False) -> Path:
    """The overlay of input ``source``: out_dir/plots/<input name>.png, qualified by the
    input's folder when ``disambiguate`` (the same rule for the batch job and series)."""
    name = f"{source.name}.png"
    return Path(out_dir) / "plots" / (qualified(source, name) if disambiguate else name)


def qualified(source: Path, name: str) -> str:
    """``name`` (an output of input ``source``) qualified by the input's folder: its name and
    a short hash of the input's whole path keep it readable, unique and the same on every
    run and engine, so that resume finds it."""
    return f"{source.parent.name}-{_tag(source)}__{name}"


def _tag(path: Path) -> str:
    import hashlib

    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:8]


def failure_message(err: Exception, path: Path) -> str:
    """Why input ``path`` failed, naming it: what fails one input and not the job.

    The project's errors and the OS's (a file that cannot be read or written) give their own
    message; any other exception (a parser's own on a malformed file, say) its type too.
    """
    if isinstance(err, (NmrLadderError, OSError)):
        return str(err) if str(path) in str(err) else f"{path}: {err}"
    return unexpected_error(err, path)


def unexpected_error(err: Exception, path: Path) -> str:
    """The message for an exception no stage expected (a parser's own, say), naming the input."""
    return f"{path}: {type(err).__name__}: {err}"


def split_read_time(item: ScaledInput, now: float) -> tuple[float, float]:
    """(reading, scaling) seconds of ``item`` up to ``now``; an input that failed to be read
    spent it all reading."""
    elapsed = now - item.started
    read = item.read_seconds or elapsed
    return read, elapsed - read


def progress_bar(total: int, enabled: bool):
    """The job's progress bar (files), or a silent one."""
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="denoise", disable=not enabled, dynamic_ncols=True)


def _warning(before: float, after: float) -> str:
    if before < 3.0:
        return "input SNR < 3: peaks may be indistinguishable from noise"
    if after < before:
        return "estimated SNR fell"
    return ""


def _plot(spectrum, finished: Finished, source: Path, destination: Path) -> None:
    from nmrladder.runtime.plots import plot_denoised

    report = finished.report
    flag = None
    if report.flagged:
        where = f" at {report.structure_ppm:.3f} ppm" if spectrum.ppm is not None else ""
        flag = (report.structure_index,
                f"FLAG: removed a line-shaped structure{where}, {report.structure_sigma:.1f} sigma")
    plot_denoised(spectrum.intensities, finished.y, destination, ppm=spectrum.ppm,
                  title=str(source), band=finished.band, flag=flag)


__all__ = [
    "OUTPUT_SNR_EVERY",
    "STAGES",
    "Finished",
    "ScaledInput",
    "estimated_snr",
    "failure_message",
    "finish_output",
    "output_destination",
    "plot_path",
    "progress_bar",
    "qualified",
    "read_scaled",
    "split_read_time",
    "unexpected_error",
    "write_denoised",
]
