"""Batch denoising of NMR files: read, scale, infer, write, overlapped and resumable.

    file thread --queue--> inference (a thread per stream) --queue--> the same file thread

The file thread reads and writes: it parses an input (nmrglue, numpy) and scales it to the
model's input with the MAD kernel, or maps a finished output back, writes it atomically,
records it in ``manifest.jsonl`` and updates the progress bar; it reads first while the
inference streams have less than two batches queued, and writes otherwise. Each inference
stream (``Denoiser.streams``: on the CPU, single-threaded network calls side by side) groups
spectra of one padded length into batches. One file thread keeps the job's Python work out
of its own way (separate reader and writer threads contend for the GIL: 2-4 % fewer
spectra/s on 2 cores, benchmarks/README.md); ``file_threads`` > 1 overlaps slow storage. At
most ``queue_size`` inputs are read and not yet written, so memory stays flat however many
files there are. A run interrupted at any point resumes with
``resume=True``: inputs whose output is in the manifest (and on disk) are skipped, nothing
is half-written, and an output finished but not yet recorded is simply written again.
The per-input stages (read_scaled, write_denoised) and the resume plan (plan_resume) are
functions, shared with the Ray engine (runtime/ray_engine.py).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmrladder.runtime.errors import InputError, NmrLadderError
from nmrladder.runtime.residual import RESIDUAL_STEP, restore_residual
from nmrladder.runtime.scaling import from_model_output, to_model_input

MANIFEST = "manifest.jsonl"
STAGES = ("read", "scale", "infer", "write")  # JobSummary.stage_seconds, in pipeline order
_DONE = object()  # end-of-stream marker between the stages
# The output's estimated SNR (manifest, "estimated SNR fell") from every 4th point: the full
# estimate was a fifth of the file thread's work in a batch job (benchmarks/README.md).
OUTPUT_SNR_EVERY = 4


@dataclass
class FileResult:
    """One input's outcome (a row of the summary table)."""

    input: str
    output: str = ""
    status: str = "ok"  # "ok", "skipped" (resumed) or "failed"
    points: int = 0
    snr_before: float = float("nan")
    snr_after: float = float("nan")
    message: str = ""
    seconds: float = 0.0
    residual_lb: float = 0.0  # the residual line broadening factor the output got (0: none)
    residual_step: str = ""  # the residual step's version that made it (residual.RESIDUAL_STEP)
    model: str = ""  # the artefact that made the output (Denoiser.fingerprint)


@dataclass
class JobSummary:
    results: list[FileResult] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def table(self) -> str:
        from nmrladder.runtime.table import format_table

        rows = [
            [Path(r.input).name, r.status, r.points, r.snr_before, r.snr_after, r.message or "-"]
            for r in self.results
        ]
        headers = ["input", "status", "points", "SNR before", "SNR after", "warning / error"]
        return format_table(headers, rows, digits=1)


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


class Manifest:
    """The record of finished outputs: one JSON line per input, flushed as written.

    Flushed, not fsync'ed: a killed or interrupted process loses nothing the OS has (what
    resume needs); the outputs are not fsync'ed either, so an fsync here would not make a
    power cut safe, and it cost a tenth of the per-file work (benchmarks/README.md).
    """

    def __init__(self, out_dir: Path):
        self.path = out_dir / MANIFEST
        self._lock = threading.Lock()
        self._handle = None  # opened on the first record, kept open until close()

    def finished(self, residual_lb: float | None = None, model: str = "") -> dict[str, dict]:
        """input path -> entry for entries whose output exists and was made the way this run
        makes it: the same residual step (``residual_lb``, and the step's version) and, when
        ``model`` is given, the same artefact (a torn last line is ignored). An output made
        another way is not finished: a resume redoes it, so one folder never mixes the two.
        Entries written before the manifest recorded the model count as this model's."""
        done = {}
        if not self.path.exists():
            return done
        wanted = residual_lb or 0.0
        wanted_step = _residual_step(residual_lb)
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # interrupted while appending: that input is simply redone
            if (
                entry.get("status") == "ok"
                and entry.get("residual_lb", 0.0) == wanted
                and entry.get("residual_step", "") == wanted_step
                and (not model or entry.get("model", model) == model)
                and Path(entry.get("output", "")).exists()
            ):
                done[entry["input"]] = entry
        return done

    def record(self, result: FileResult) -> None:
        line = json.dumps(vars(result)) + "\n"  # its fields are plain values: no asdict copy
        with self._lock:
            if self._handle is None:
                self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._handle.write(line)
            self._handle.flush()  # on record (in the OS) once record() returns

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


@dataclass
class ScaledInput:
    """One input read and scaled to the model's input (``z``), or the reason it could not be."""

    index: int
    path: Path
    spectrum: object = None
    z: np.ndarray | None = None
    center: float = 0.0
    sigma: float = 1.0
    snr_before: float = float("nan")
    error: str = ""
    started: float = 0.0
    read_seconds: float = 0.0  # of the time since ``started``, reading (the rest is scaling)


class _FileProgress:
    """How far a job's file threads got: the next input to read, how many are queued for
    inference (or failed reading), how many written. Shared by the file threads."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self._lock = threading.Lock()
        self._next = 0
        self._queued = 0
        self._written = 0

    def can_read(self, in_flight_limit: int) -> bool | None:
        """Whether one more input may be read now; None once every input is written."""
        with self._lock:
            if self._written >= len(self.paths):
                return None
            return self._next < len(self.paths) and self._next - self._written < in_flight_limit

    def take(self) -> int | None:
        """The index of the next input to read (None when all are taken)."""
        with self._lock:
            if self._next >= len(self.paths):
                return None
            self._next += 1
            return self._next - 1

    def queued_one(self) -> bool:
        """Count one input queued; True for the last one."""
        with self._lock:
            self._queued += 1
            return self._queued == len(self.paths)

    def written_one(self) -> None:
        with self._lock:
            self._written += 1


class _Batcher:
    """Scaled inputs waiting for a batch, grouped by padded length, shared by the inference
    streams: the stream whose input completes a batch runs it.

    With several streams the batch size follows ``target``: small first batches, so that no
    stream waits for a full batch of reads, and smaller ones near the end, so that the
    streams finish together instead of one running the last batch alone. A single-threaded
    stream spends the same time per spectrum at any batch size from 1 to 8
    (benchmarks/README.md), so neither costs network time.
    """

    def __init__(self, batch_size: int, streams: int, inputs: int):
        self.batch_size = batch_size
        self.streams = streams
        self._lock = threading.Lock()
        self._groups: dict[int, list[ScaledInput]] = {}
        self._unbatched = inputs  # inputs neither in a batch handed out nor failed
        self._batches = 0  # batches handed out

    def target(self) -> int:
        """The batch size now. With one stream, ``batch_size``. With several: two for each
        stream's first batch; then ``batch_size`` until the inputs left would not give every
        stream two full batches; then the inputs left / (2 x streams), at least two (a lone
        row costs a multi-threaded stream two rows, Denoiser.run_batch)."""
        if self.streams == 1:
            return self.batch_size
        if self._batches < self.streams:
            return min(self.batch_size, 2)
        tail = -(-self._unbatched // (2 * self.streams))  # ceil
        return max(2, min(self.batch_size, tail))

    def add(self, item: ScaledInput) -> list[ScaledInput] | None:
        """Add ``item``; the batch it completes, if it does."""
        with self._lock:
            group = self._groups.setdefault(item.z.size, [])
            group.append(item)
            if len(group) < self.target():
                return None
            self._unbatched -= len(group)
            self._batches += 1
            return self._groups.pop(item.z.size)

    def failed_one(self) -> None:
        """Count an input that failed before inference (it joins no batch)."""
        with self._lock:
            self._unbatched -= 1

    def take_all(self) -> list[list[ScaledInput]]:
        """Every group waiting (partial batches), removed."""
        with self._lock:
            groups = list(self._groups.values())
            self._groups.clear()
            self._unbatched -= sum(len(group) for group in groups)
            return groups


def read_scaled(index: int, path: Path, info) -> ScaledInput:
    """Read one input and scale it to the model's input (``info``: the artefact's ArtefactInfo).

    A bad input comes back with ``error`` set (naming the file), never as an exception: an
    unexpected one from a parser on a malformed file fails that file only.
    """
    from nmrladder.runtime.io import read_spectrum

    item = ScaledInput(index, path, started=time.perf_counter())
    try:
        spectrum = read_spectrum(path)
        info.check_length(len(spectrum), str(path))
        item.read_seconds = time.perf_counter() - item.started
        z, centers, sigmas = to_model_input(
            spectrum.intensities[None, :], info.length_multiple, threads=1
        )
        item.spectrum, item.z = spectrum, z[0]
        item.center, item.sigma = float(centers[0]), float(sigmas[0])
        item.snr_before = float((spectrum.intensities.max() - item.center) / item.sigma)
    except (NmrLadderError, OSError) as err:
        item.error = _named(err, path)
    except Exception as err:
        item.error = unexpected_error(err, path)
    return item


def write_denoised(
    item: ScaledInput,
    output: np.ndarray | None,
    out_dir: Path,
    *,
    in_place: bool = False,
    disambiguate: bool = False,
    plot: bool = False,
    residual_lb: float | None = None,
    model: str = "",
) -> FileResult:
    """Map the network's ``output`` back to the input's units and write it atomically.

    ``disambiguate``: the input's file name is shared by other inputs (see colliding_names);
    ``residual_lb``: the denoiser's residual line broadening factor (runtime/residual.py);
    ``model``: its fingerprint, recorded with the result.
    Returns the input's result, not yet in the manifest (the caller records it); a failure,
    an unexpected exception included, comes back as a "failed" result naming the file.
    """
    from nmrladder.runtime.io import output_path_for, write_spectrum

    result = FileResult(input=str(item.path), status="failed", message=item.error)
    if output is None or item.error:
        return result
    try:
        spectrum = item.spectrum
        y = from_model_output(
            output[None, :], np.array([item.center]), np.array([item.sigma]), len(spectrum)
        )[0]
        if residual_lb is not None:
            scale = ([item.center], [item.sigma])
            y = restore_residual(spectrum.intensities, y, residual_lb, scale)
        destination = output_path_for(spectrum, out_dir, in_place=in_place)
        if disambiguate and not in_place:
            destination = _disambiguated(destination, item.path)
        written = write_spectrum(spectrum, destination, y)
        snr_after, _ = estimated_snr(y, OUTPUT_SNR_EVERY)
        result = FileResult(
            str(item.path),
            str(written),
            "ok",
            len(spectrum),
            item.snr_before,
            snr_after,
            _warning(item.snr_before, snr_after),
            residual_lb=residual_lb or 0.0,
            residual_step=_residual_step(residual_lb),
            model=model,
        )
        if plot:
            _plot(spectrum, y, item.path, out_dir)
    except (NmrLadderError, OSError) as err:
        result = FileResult(str(item.path), status="failed", message=_named(err, item.path))
    except Exception as err:
        message = unexpected_error(err, item.path)
        result = FileResult(str(item.path), status="failed", message=message)
    return result


def _plot(spectrum, denoised: np.ndarray, source: Path, out_dir: Path) -> None:
    from nmrladder.runtime.plots import plot_denoised

    plot_denoised(
        spectrum.intensities,
        denoised,
        out_dir / "plots" / f"{source.name}.png",
        ppm=spectrum.ppm,
        title=str(source),
    )


def colliding_names(paths: list[Path]) -> set[str]:
    """File names given by more than one input (from different folders): their outputs get
    qualified names (see _disambiguated)."""
    counts = Counter(p.name for p in paths if not p.is_dir())
    return {name for name, count in counts.items() if count > 1}


def plan_resume(
    paths: list[Path],
    out_dir: Path,
    resume: bool,
    residual_lb: float | None = None,
    model: str = "",
) -> tuple[list[FileResult], list[Path]]:
    """(results of the inputs the manifest says are finished, the inputs still to do).

    Without ``resume`` everything is to do; with it, what an interrupted run left half-written
    is deleted first, and outputs made with another ``residual_lb`` or ``model`` (a
    fingerprint) are redone.
    """
    done = Manifest(out_dir).finished(residual_lb, model) if resume else {}
    if resume:
        remove_stale_temporaries(out_dir)
    skipped, todo = [], []
    for path in paths:
        entry = done.get(str(path))
        if entry is None:
            todo.append(path)
            continue
        skipped.append(
            FileResult(
                str(path),
                entry["output"],
                "skipped",
                entry.get("points", 0),
                entry.get("snr_before", float("nan")),
                entry.get("snr_after", float("nan")),
                "already done",
                residual_lb=entry.get("residual_lb", 0.0),
                residual_step=entry.get("residual_step", ""),
                model=entry.get("model", ""),
            )
        )
    return skipped, todo


class DenoiseJob:
    """Denoise many files with one :class:`~nmrladder.runtime.Denoiser`.

    ``out_dir`` receives the outputs (see nmrladder.runtime.io.output_path_for), the manifest
    and, with ``plot``, PNG overlays in ``out_dir/plots``. The denoiser's ``streams`` batches
    run at once; ``file_threads`` threads read and write the files (one is fastest on local
    disks; more overlap the waits of network storage); ``queue_size`` bounds the inputs read
    and not yet written. The stage times are summed over each stage's threads.
    """

    def __init__(
        self,
        denoiser,
        out_dir: str | Path,
        *,
        resume: bool = False,
        plot: bool = False,
        file_threads: int = 1,
        queue_size: int | None = None,
        progress: bool = True,
        in_place: bool = False,
    ):
        if file_threads < 1:
            raise InputError(f"file_threads must be >= 1, got {file_threads}")
        self.denoiser = denoiser
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.plot = plot
        self.file_threads = file_threads
        self.streams = getattr(denoiser, "streams", 1)  # inference threads (Denoiser.streams)
        self._residual_lb = getattr(denoiser, "residual_lb", None)  # Denoiser.residual_lb
        self._model = getattr(denoiser, "fingerprint", "")  # recorded with every output
        self.queue_size = queue_size or (3 + self.streams) * denoiser.batch_size
        self.progress = progress
        self.in_place = in_place
        self.manifest = Manifest(self.out_dir)
        self._colliding_names: set[str] = set()
        self._stage_seconds = dict.fromkeys(STAGES, 0.0)
        self._timing_lock = threading.Lock()
        self._stop = threading.Event()  # set when the job must end early; cleared per run

    # -- stages -------------------------------------------------------------------------
    def _read(self, index: int, path: Path) -> ScaledInput:
        item = read_scaled(index, path, self.denoiser.info)
        read, scale = split_read_time(item, time.perf_counter())
        self._add_time(read=read, scale=scale)
        return item

    def _add_time(self, **seconds: float) -> None:
        """Add seconds to stages (STAGES' names as keywords)."""
        with self._timing_lock:
            for stage, value in seconds.items():
                self._stage_seconds[stage] += value

    def _write(self, item: ScaledInput, output: np.ndarray | None) -> FileResult:
        started = time.perf_counter()
        result = write_denoised(
            item,
            output,
            self.out_dir,
            in_place=self.in_place,
            disambiguate=item.path.name in self._colliding_names,
            plot=self.plot,
            residual_lb=self._residual_lb,
            model=self._model,
        )
        if result.status == "ok":
            try:
                self.manifest.record(result)
            except OSError as err:
                result = FileResult(str(item.path), status="failed", message=_named(err, item.path))
        result.seconds = time.perf_counter() - item.started
        self._add_time(write=time.perf_counter() - started)
        return result

    # -- orchestration ------------------------------------------------------------------
    def run(self, inputs: Iterable[str | Path]) -> JobSummary:
        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths = [Path(p) for p in inputs]
        self._colliding_names = colliding_names(paths)
        skipped, todo = plan_resume(
            paths, self.out_dir, self.resume, self._residual_lb, self._model
        )
        summary = JobSummary(results=skipped)
        results = self._run_pipeline(todo)
        order = {str(path): i for i, path in enumerate(paths)}  # the inputs' order, in O(n)
        summary.results.extend(sorted(results, key=lambda r: order[r.input]))
        summary.stage_seconds = dict(self._stage_seconds)
        summary.wall_seconds = time.perf_counter() - started
        return summary

    def _run_pipeline(self, paths: list[Path]) -> list[FileResult]:
        if not paths:
            return []
        # Unbounded queues: what they hold is bounded by the file threads' in-flight limit.
        ready: queue.Queue = queue.Queue()  # scaled inputs for the inference streams
        finished: queue.Queue = queue.Queue()  # (input, output) pairs for the file threads
        files = _FileProgress(paths)
        batcher = _Batcher(self.denoiser.batch_size, self.streams, len(paths))
        results: list[FileResult] = []
        failures: list[BaseException] = []
        self._stop.clear()
        bar = _progress(len(paths), self.progress)
        # One inference loop per stream (Denoiser.streams): ORT releases the GIL while it runs.
        stages = [
            self._start_stage(failures, self._inference_loop, files, batcher, ready, finished)
            for _ in range(self.streams)
        ]
        stages += [
            self._start_stage(failures, self._file_loop, files, ready, finished, results, bar)
            for _ in range(self.file_threads)
        ]
        try:
            for thread in stages:
                thread.join()
        finally:
            self._stop.set()  # after an interrupt: every stage ends within its 0.1 s waits
            for thread in stages:
                thread.join()
            bar.close()
            self.manifest.close()
        if failures:
            raise failures[0]
        return results

    def _start_stage(self, failures: list[BaseException], loop, *args) -> threading.Thread:
        """Run one stage's ``loop`` in a thread. An exception in any stage stops the job: the
        other stages see ``_stop`` instead of waiting forever for work the failed stage no
        longer gives, and _run_pipeline raises the first exception once all have ended."""

        def guarded() -> None:
            try:
                loop(*args)
            except BaseException as err:
                failures.append(err)
                self._stop.set()

        name = f"nmrladder-{loop.__name__.strip('_')}"
        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        return thread

    def _running(self) -> bool:
        return not self._stop.is_set()

    def _file_loop(
        self,
        files: _FileProgress,
        ready: queue.Queue,
        finished: queue.Queue,
        results: list[FileResult],
        bar,
    ) -> None:
        """A file thread: read while the inference streams have less than two batches queued,
        else write what is finished, else read ahead (at most ``queue_size`` inputs in
        flight), else wait for an output. Ends when every input is written or the job stops."""
        low_water = 2 * self.denoiser.batch_size
        while self._running():
            can_read = files.can_read(self.queue_size)
            if can_read is None:
                return  # every input is written
            if can_read and ready.qsize() < low_water:
                self._read_next(files, ready)
                continue
            try:
                entry = finished.get_nowait() if can_read else finished.get(timeout=0.1)
            except queue.Empty:
                if can_read:
                    self._read_next(files, ready)
                continue
            results.append(self._write(*entry))
            files.written_one()
            bar.update(1)

    def _read_next(self, files: _FileProgress, ready: queue.Queue) -> None:
        index = files.take()
        if index is None:
            return  # another file thread took the last one
        ready.put(self._read(index, files.paths[index]))
        if files.queued_one():  # the last input is queued: one end mark per inference stream
            for _ in range(self.streams):
                ready.put(_DONE)

    def _inference_loop(
        self, files: _FileProgress, batcher: _Batcher, ready: queue.Queue, finished: queue.Queue
    ) -> None:
        while self._running():
            try:
                item = ready.get(timeout=0.1)
            except queue.Empty:
                self._flush_when_starved(files, batcher, ready, finished)
                continue
            if item is _DONE:
                break
            if item.error:
                batcher.failed_one()
                finished.put((item, None))
                continue
            batch = batcher.add(item)
            if batch:
                self._infer(batch, finished)
            else:
                self._flush_when_starved(files, batcher, ready, finished)
        if self._running():  # stopped: what waits is redone by --resume
            for group in batcher.take_all():
                self._infer(group, finished)

    def _flush_when_starved(
        self, files: _FileProgress, batcher: _Batcher, ready: queue.Queue, finished: queue.Queue
    ) -> None:
        """Run the partial batches waiting in ``batcher`` when no more inputs can come soon:
        none is ready and the file threads may not read another (all are read, or
        ``queue_size`` are in flight). While inputs can still come, a batch waits for its
        ``target`` size: run whenever the queue was briefly empty, the first batches came
        out as single inputs, and one stream ran the last batch alone."""
        if ready.empty() and not files.can_read(self.queue_size):
            for group in batcher.take_all():
                self._infer(group, finished)

    def _infer(self, items: list[ScaledInput], finished: queue.Queue) -> None:
        batch = np.stack([it.z for it in items])
        started = time.perf_counter()
        try:
            out = self.denoiser.run_batch(batch)
        except NmrLadderError as err:
            for it in items:
                it.error = f"inference failed: {err}"
                finished.put((it, None))
            return
        self._add_time(infer=time.perf_counter() - started)
        for it, row in zip(items, out, strict=True):
            finished.put((it, row))


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete what an interrupted run left half-written (atomic writes' temporary names)."""
    import shutil

    stale = [p for p in out_dir.rglob(".*") if ".tmp-" in p.name or ".nmrladder-tmp-" in p.name]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return stale


def _disambiguated(destination: Path, source: Path) -> Path:
    """Inputs of one file name from different folders: qualify the output name by the folder
    (a short hash of its path keeps it unique and the same on every run, so resume works)."""
    import hashlib

    tag = hashlib.sha1(str(source.resolve().parent).encode()).hexdigest()[:8]
    return destination.with_name(f"{source.parent.name}-{tag}__{destination.name}")


def unexpected_error(err: Exception, path: Path) -> str:
    """The message for an exception no stage expected (a parser's own, say), naming the input."""
    return f"{path}: {type(err).__name__}: {err}"


def split_read_time(item: ScaledInput, now: float) -> tuple[float, float]:
    """(reading, scaling) seconds of ``item`` up to ``now``; an input that failed to be read
    spent it all reading."""
    elapsed = now - item.started
    read = item.read_seconds or elapsed
    return read, elapsed - read


def _named(err: Exception, path: Path) -> str:
    """The error's message, starting with the input's path when it does not name it already."""
    return str(err) if str(path) in str(err) else f"{path}: {err}"


def _residual_step(residual_lb: float | None) -> str:
    """What a manifest entry records of the residual step: its version when it ran."""
    return RESIDUAL_STEP if residual_lb else ""


def _warning(before: float, after: float) -> str:
    if before < 3.0:
        return "input SNR < 3: peaks may be indistinguishable from noise"
    if after < before:
        return "estimated SNR fell"
    return ""


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", desc="denoise", disable=not enabled, dynamic_ncols=True)


def discover_inputs(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand folders into the spectra they hold (a Bruker experiment or pdata folder counts
    as one spectrum); files are taken as given, in order, without duplicates."""
    from nmrladder.runtime.io import detect_format

    seen = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        candidates = [path]
        if path.is_dir() and not _is_bruker(path):
            candidates = sorted(p for p in path.rglob("*") if _is_candidate(p, detect_format))
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                yield candidate


def _is_bruker(path: Path) -> bool:
    return (path / "pdata").is_dir() or (path / "1r").is_file() or (path / "acqus").is_file()


def _is_candidate(path: Path, detect_format) -> bool:
    if path.name.startswith(".") or path.suffix in (".json", ".png", ".jsonl"):
        return False
    if path.is_dir():
        return _is_bruker(path) and not (path.parent.name == "pdata" or "pdata" in path.parts[:-1])
    if any(part == "pdata" for part in path.parts) or path.parent.joinpath("acqus").exists():
        return False  # files inside a Bruker experiment belong to that experiment
    try:
        detect_format(path)
    except InputError:
        return False
    return True


__all__ = [
    "STAGES",
    "DenoiseJob",
    "FileResult",
    "JobSummary",
    "Manifest",
    "ScaledInput",
    "colliding_names",
    "discover_inputs",
    "plan_resume",
    "read_scaled",
    "split_read_time",
    "unexpected_error",
    "write_denoised",
]


# --------------------------------------------------------------------------- series mode


def read_ladder(path: str | Path) -> tuple[np.ndarray, list | None]:
    """A ladder [R, L] from a folder of rung files (sorted by name: rung 0 first, the lowest
    SNR) or from one 2D .npy/.npz array; also the rungs' Spectrum objects when from files."""
    from nmrladder.runtime.io import detect_format, read_spectrum

    path = Path(path)
    if path.is_dir() and not _is_bruker(path):
        files = sorted(p for p in path.iterdir() if _is_candidate(p, detect_format))
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
    procno for Bruker), else as ``<name>_fused.npz``; ``<name>_series.json`` beside it holds
    T_hat, the SNR, noise, shift, scale and weight of every rung.
    """
    from nmrladder.runtime.atomic import atomic_path, write_text_atomic
    from nmrladder.runtime.io import Spectrum, output_path_for, write_spectrum

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir)
    residual_lb = getattr(denoiser, "residual_lb", None)
    model = getattr(denoiser, "fingerprint", "")
    done = manifest.finished(residual_lb, model) if resume else {}
    if resume:
        remove_stale_temporaries(out_dir)
    summary = JobSummary()
    started = time.perf_counter()
    paths = [Path(p) for p in inputs]
    bar = _progress(len(paths), progress)
    for path in paths:
        if str(path) in done:
            summary.results.append(
                FileResult(str(path), done[str(path)]["output"], "skipped", message="already done")
            )
            bar.update(1)
            continue
        t0 = time.perf_counter()
        try:
            ladder, spectra = read_ladder(path)
            series = denoiser.denoise_series(ladder, name=str(path))
            top = (
                spectra[-1]
                if spectra
                else Spectrum(ladder[-1].astype(np.float32), source=str(path))
            )
            if spectra:
                destination = output_path_for(top, out_dir)
                if top.format != "bruker":
                    destination = destination.with_name(f"{path.name}_fused{destination.suffix}")
                written = write_spectrum(top, destination, series.fused)
            else:
                written = out_dir / f"{path.stem}_fused.npz"
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
            }
            write_text_atomic(out_dir / f"{path.name}_series.json", json.dumps(report, indent=2))
            snr_before, _ = estimated_snr(ladder[-1])
            snr_after, _ = estimated_snr(series.fused)
            result = FileResult(
                str(path),
                str(written),
                "ok",
                ladder.shape[1],
                snr_before,
                snr_after,
                f"T_hat {series.t_hat:.2f}",
                residual_lb=residual_lb or 0.0,
                residual_step=_residual_step(residual_lb),
                model=model,
            )
            if plot:
                from nmrladder.runtime.plots import plot_denoised

                plot_denoised(
                    ladder[-1],
                    series.fused,
                    out_dir / "plots" / f"{path.name}.png",
                    ppm=top.ppm,
                    title=f"{path}: top rung and the fused, denoised series",
                )
            manifest.record(result)
        except (NmrLadderError, OSError) as err:
            result = FileResult(str(path), status="failed", message=_named(err, path))
        result.seconds = time.perf_counter() - t0
        summary.results.append(result)
        bar.update(1)
    bar.close()
    manifest.close()
    summary.wall_seconds = time.perf_counter() - started
    return summary
