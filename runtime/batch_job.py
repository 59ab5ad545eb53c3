"""The local engine's batch job: read, scale, infer, write, overlapped and resumable.

    file thread --queue--> inference (a thread per stream) --queue--> the same file thread

The file thread reads and writes: it parses an input (nmrglue, numpy) and prepares it for the
network (runtime/stages.py, read_scaled), or finishes an output, writes it atomically,
records it in ``manifest.jsonl`` and updates the progress bar; it reads first while the
inference streams have less than two batches queued, and writes otherwise. Each inference
stream (``Denoiser.streams``: on the CPU, single-threaded network calls side by side) groups
spectra of one padded length into batches. One file thread keeps the job's Python work out
of its own way (separate reader and writer threads contend for the GIL, benchmarks/README.md);
``file_threads`` > 1 overlaps slow storage. At most ``queue_size`` inputs are read and not yet
written, so memory stays flat however many files there are. A run interrupted at any point
resumes with ``resume=True`` (runtime/manifest.py): inputs whose output is in the manifest
(and on disk) are skipped, nothing is half-written, and an output finished but not yet
recorded is simply written again.

With ``confidence=K`` (runtime/confidence.py) the file thread finishes an output, queues its
K re-noised copies to the inference streams as more rows (batched with the inputs like any
other), and writes the output with its band once all K are back: the same band
``Denoiser.denoise(x, return_confidence=True, copies=K)`` gives.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nmrladder.runtime.confidence import checked_copies
from nmrladder.runtime.dispatch import fallback_counts, fallbacks_since
from nmrladder.runtime.errors import InputError, NmrLadderError
from nmrladder.runtime.inputs import colliding_names
from nmrladder.runtime.manifest import (
    FileResult,
    JobSummary,
    Manifest,
    plan_resume,
    prepare_out_dir,
)
from nmrladder.runtime.stages import (
    STAGES,
    ScaledInput,
    failure_message,
    finish_output,
    progress_bar,
    read_scaled,
    split_read_time,
    write_denoised,
)

_DONE = object()  # end-of-stream marker between the stages


class _FileProgress:
    """How far a job's file threads got: the next input to read, how many are queued for
    inference (or failed reading), how many settled (confidence: their copies queued, or none
    to come), how many written. Shared by the file threads."""

    def __init__(self, paths: list[Path], confidence: bool = False):
        self.paths = paths
        self._lock = threading.Lock()
        self._next = 0
        self._queued = 0
        self._written = 0
        self._unsettled = len(paths) if confidence else 0

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
        """Count one input queued; True when nothing more will be queued for inference (the
        last input, and with confidence every input settled)."""
        with self._lock:
            self._queued += 1
            return self._queued == len(self.paths) and self._unsettled == 0

    def settled_one(self) -> bool:
        """Count one input whose confidence copies are queued (or will never be); True when
        nothing more will be queued for inference."""
        with self._lock:
            self._unsettled -= 1
            return self._unsettled == 0 and self._queued == len(self.paths)

    def written_one(self) -> None:
        with self._lock:
            self._written += 1


class _Running:
    """How many of a job's stage threads are still running; :meth:`wait` returns when none is.

    The job waits on this, not on Thread.join: on Python 3.11 a join interrupted by Ctrl-C
    marks the thread as ended while it still runs, so the job would return (and the
    interpreter exit) under an inference thread inside ONNX Runtime, which aborts the
    process ("terminate called without an active exception").
    """

    def __init__(self):
        self._count = 0
        self._changed = threading.Condition()

    def started_one(self) -> None:
        with self._changed:
            self._count += 1  # counted once started: a thread may end before it is counted

    def ended_one(self) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def ended(self) -> bool:
        with self._changed:
            return self._count <= 0

    def wait(self) -> None:
        with self._changed:
            while self._count > 0:
                self._changed.wait()


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

    def expect(self, rows: int) -> None:
        """Count ``rows`` more to batch (an output's confidence copies)."""
        with self._lock:
            self._unbatched += rows

    def take_all(self) -> list[list[ScaledInput]]:
        """Every group waiting (partial batches), removed."""
        with self._lock:
            groups = list(self._groups.values())
            self._groups.clear()
            self._unbatched -= sum(len(group) for group in groups)
            return groups


class _Pending:
    """An output waiting for its confidence copies: their prepared input (Core.renoise), the
    network's outputs back so far, how many are still out, and the first error."""

    def __init__(self, item: ScaledInput, prepared, copies: int):
        self.item = item
        self.prepared = prepared
        self.outputs: list = [None] * copies
        self.left = copies
        self.error = ""


class _Copy:
    """One re-noised copy of a finished output on its way through the network: the batcher
    and the inference streams take it as they take an input (``z``, ``error``)."""

    __slots__ = ("error", "k", "pending", "z")

    def __init__(self, pending: _Pending, k: int, z: np.ndarray):
        self.pending, self.k, self.z, self.error = pending, k, z, ""


class DenoiseJob:
    """Denoise many files with one :class:`~nmrladder.runtime.Denoiser`.

    ``out_dir`` receives the outputs (see nmrladder.runtime.io.output_path_for), the manifest
    and, with ``plot``, PNG overlays in ``out_dir/plots``. The denoiser's ``streams`` batches
    run at once; ``file_threads`` threads read and write the files (one is fastest on local
    disks; more overlap the waits of network storage); ``queue_size`` bounds the inputs read
    and not yet written. ``confidence`` K >= 1 writes each output's confidence band from K
    re-noised copies (module docstring; 0: none). The stage times are summed over each
    stage's threads; the copies' network time counts as "infer".
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
        confidence: int = 0,
    ):
        if file_threads < 1:
            raise InputError(f"file_threads must be >= 1, got {file_threads}")
        self.confidence = checked_copies(confidence, "confidence") if confidence else 0
        self.denoiser = denoiser
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.plot = plot
        self.file_threads = file_threads
        self.streams = getattr(denoiser, "streams", 1)  # inference threads (Denoiser.streams)
        self._core = denoiser.core  # around the network (runtime/core.py): Denoiser.core
        self._model = getattr(denoiser, "fingerprint", "")  # recorded with every output
        self.queue_size = queue_size or (3 + self.streams) * denoiser.batch_size
        self.progress = progress
        self.in_place = in_place
        self.manifest = Manifest(self.out_dir)
        self._colliding_names: set[str] = set()
        self._stage_seconds = dict.fromkeys(STAGES, 0.0)
        self._timing_lock = threading.Lock()
        self._stop = threading.Event()  # set when the job must end early; cleared per run
        self._batcher: _Batcher | None = None  # the running pipeline's (confidence copies)
        self._bands_lock = threading.Lock()  # copies of one output come back on any thread

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
            core=self._core,
            model=self._model,
        )
        result.seconds = time.perf_counter() - item.started  # read to written, as recorded
        if result.status == "ok":
            try:
                self.manifest.record(result)
            except OSError as err:
                message = failure_message(err, item.path)
                result = FileResult(str(item.path), status="failed", message=message)
                result.seconds = time.perf_counter() - item.started
        self._add_time(write=time.perf_counter() - started)
        return result

    # -- orchestration ------------------------------------------------------------------
    def run(self, inputs: Iterable[str | Path]) -> JobSummary:
        started = time.perf_counter()
        prepare_out_dir(self.out_dir)
        paths = [Path(p) for p in inputs]
        self._colliding_names = colliding_names(paths)
        skipped, todo = plan_resume(
            paths,
            self.out_dir,
            self.resume,
            self._core.residual_lb,
            self._model,
            self._core.strength,
            self.confidence,
        )
        summary = JobSummary(results=skipped)
        before = fallback_counts()
        results = self._run_pipeline(todo)
        order = {str(path): i for i, path in enumerate(paths)}  # the inputs' order, in O(n)
        summary.results.extend(sorted(results, key=lambda r: order[r.input]))
        summary.stage_seconds = dict(self._stage_seconds)
        summary.fallbacks = fallbacks_since(before)
        summary.wall_seconds = time.perf_counter() - started
        return summary

    def _run_pipeline(self, paths: list[Path]) -> list[FileResult]:
        if not paths:
            return []
        # Unbounded queues: what they hold is bounded by the file threads' in-flight limit.
        ready: queue.Queue = queue.Queue()  # scaled inputs for the inference streams
        finished: queue.Queue = queue.Queue()  # (input, output) pairs for the file threads
        files = _FileProgress(paths, confidence=bool(self.confidence))
        batcher = self._batcher = _Batcher(self.denoiser.batch_size, self.streams, len(paths))
        results: list[FileResult] = []
        failures: list[BaseException] = []
        self._stop.clear()
        bar = progress_bar(len(paths), self.progress)
        # One inference loop per stream (Denoiser.streams): ORT releases the GIL while it runs.
        running = _Running()
        try:
            for _ in range(self.streams):
                self._start_stage(
                    running, failures, self._inference_loop, files, batcher, ready, finished
                )
            for _ in range(self.file_threads):
                self._start_stage(
                    running, failures, self._file_loop, files, ready, finished, results, bar
                )
            running.wait()
        except BaseException:
            # Interrupted (Ctrl-C): every stage ends within its 0.1 s waits or the batch it
            # holds; what was written is in the manifest, and --resume does the rest. A
            # second interrupt leaves at once, the stages still running (the CLI then ends
            # the process).
            self._stop.set()
            running.wait()
            raise
        finally:
            if running.ended():
                bar.close()
                self.manifest.close()
        if failures:
            raise failures[0]
        return results

    def _start_stage(
        self, running: _Running, failures: list[BaseException], loop, *args
    ) -> threading.Thread:
        """Run one stage's ``loop`` in a thread. An exception in any stage stops the job: the
        other stages see ``_stop`` instead of waiting forever for work the failed stage no
        longer gives, and _run_pipeline raises the first exception once all have ended."""

        def guarded() -> None:
            try:
                loop(*args)
            except BaseException as err:
                failures.append(err)
                self._stop.set()
            finally:
                running.ended_one()

        name = f"nmrladder-{loop.__name__.strip('_')}"
        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        running.started_one()
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
            result = self._take(*entry, files, ready)
            if result is None:
                continue  # waiting for its confidence copies
            results.append(result)
            files.written_one()
            bar.update(1)

    def _take(self, item, output, files: _FileProgress, ready: queue.Queue) -> FileResult | None:
        """What the inference streams gave back: an input's output, written (its result), or
        with confidence its copies queued (None); a copy's output, kept until its input's last
        one, then the input written with its band."""
        if isinstance(item, _Copy):
            item = self._copy_back(item, output)
            return None if item is None else self._write(item, None)
        if not self.confidence:
            return self._write(item, output)
        queued = output is not None and not item.error and self._queue_copies(item, output, ready)
        if files.settled_one():  # the copies (if any) are in ``ready`` before the end marks
            for _ in range(self.streams):
                ready.put(_DONE)
        return None if queued else self._write(item, output)

    def _queue_copies(self, item: ScaledInput, output: np.ndarray, ready: queue.Queue) -> bool:
        """Finish ``item``'s output and queue its re-noised copies for the network (one entry:
        the streams batch them together); False when that failed (``item.error`` says why)."""
        started = time.perf_counter()
        try:
            item.finished = finish_output(item, output, self._core)
            prepared = self._core.renoise(
                item.prepared, item.finished.y[None], self.confidence, threads=1
            )
        except Exception as err:  # fails this input alone, as a write would
            item.error = failure_message(err, item.path)
            return False
        finally:
            self._add_time(write=time.perf_counter() - started)
        pending = _Pending(item, prepared, self.confidence)
        self._batcher.expect(self.confidence)
        ready.put([_Copy(pending, k, prepared.z[k]) for k in range(self.confidence)])
        return True

    def _copy_back(self, copy: _Copy, output: np.ndarray | None) -> ScaledInput | None:
        """Keep a copy's output; once its input's last is back, the input with its band set
        (or its error), else None."""
        pending = copy.pending
        with self._bands_lock:
            if output is None:
                pending.error = pending.error or copy.error
            else:
                pending.outputs[copy.k] = output
            pending.left -= 1
            if pending.left:
                return None
        item = pending.item
        if pending.error:
            item.error = pending.error
            return item
        started = time.perf_counter()
        try:
            finished = item.finished
            finished.band = self._core.confidence(
                item.prepared, finished.y[None], pending.prepared, np.stack(pending.outputs)
            )[0]
            finished.copies = self.confidence
        except Exception as err:
            item.error = failure_message(err, item.path)
        self._add_time(write=time.perf_counter() - started)
        return item

    def _read_next(self, files: _FileProgress, ready: queue.Queue) -> None:
        index = files.take()
        if index is None:
            return  # another file thread took the last one
        ready.put(self._read(index, files.paths[index]))
        if files.queued_one():  # nothing more comes: one end mark per inference stream
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
            if not isinstance(item, list) and item.error:
                batcher.failed_one()
                finished.put((item, None))
                continue
            ran = False
            for row in item if isinstance(item, list) else (item,):  # a list: an output's copies
                batch = batcher.add(row)
                if batch:
                    self._infer(batch, finished)
                    ran = True
            if not ran:
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

    def _infer(self, items: list, finished: queue.Queue) -> None:
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
