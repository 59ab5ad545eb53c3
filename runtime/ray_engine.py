"""Batch denoising across machines on Ray Data: the local engine's stages on a pool of actors.

    driver:  plan (resume) -> ray.data.from_items(inputs) -> map_batches(actor pool)
             -> results stream back -> manifest.jsonl (its one writer) and the progress bar
    actor:   one per worker, on any node; builds its Denoiser once, then for each batch
             reads and prepares, infers, finishes and writes atomically (runtime/stages.py)

Inputs and the output folder must be on storage that every node sees under the same path.
Outputs, their names and the manifest are the local engine's, so either engine resumes the
other's run. A bad input comes back as a row with status "failed" and a message (never an
exception, which Ray would retry); a worker that dies is recreated and its batch retried a
bounded number of times, after which that batch's inputs are reported failed and the rest
go on. Ray is an optional extra, imported only here and only when this engine is used. The
strength setting (runtime/strength.py) travels to every actor like the residual step; the
confidence band runs on the local engine only (the CLI refuses it here in one line).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nmrladder.runtime.errors import BackendUnavailable, InputError, NmrLadderError
from nmrladder.runtime.inputs import colliding_names
from nmrladder.runtime.manifest import FileResult, JobSummary, Manifest, plan_resume
from nmrladder.runtime.stages import (
    STAGES,
    ScaledInput,
    progress_bar,
    read_scaled,
    split_read_time,
    write_denoised,
)

RAY_HINT = "pip install 'nmrladder[ray]'"
GPU_BACKENDS = ("ort-cuda", "ort-tensorrt", "trt")
# Fault tolerance, set explicitly. A worker process that dies (out of memory, a crash, its
# node lost) is always recreated, so a long job keeps its pool (and Ray Data 2.40 stops the
# whole job on an actor that stays dead); the batch it held is tried again at most
# BATCH_RETRIES times (Ray Data's default: forever), then its inputs are reported failed.
ACTOR_RESTARTS = -1
BATCH_RETRIES = 2


def import_ray():
    """The ray module with Ray Data, or BackendUnavailable with the install hint."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra's Ray Data, not only Ray core)
    except ImportError as err:
        raise BackendUnavailable("ray", f"cannot import ray.data ({err})", RAY_HINT) from err
    return ray


class DenoiseActor:
    """One Ray worker: its own Denoiser, built once, then batches of inputs end to end.

    Rows hold ``row`` (the input's number in this run), ``path`` (absolute) and
    ``disambiguate``; the result rows carry one FileResult each plus its stage times.
    """

    def __init__(
        self,
        model_path: str,
        backend: str,
        batch_size: int,
        threads: int,
        out_dir: str,
        in_place: bool,
        plot: bool,
        residual_lb: float | None = None,
        model: str = "",
        strength: float | str | None = None,
    ):
        from nmrladder.runtime.denoiser import Denoiser

        self.denoiser = Denoiser(
            model_path,
            backend=backend,
            batch_size=batch_size,
            threads=threads,
            residual_lb=residual_lb,
            strength=strength,
        )
        self.out_dir = Path(out_dir)
        self.in_place, self.plot = in_place, plot
        self.model = model  # the driver's artefact_fingerprint, recorded with each output
        # Reading, scaling and writing release the GIL: the actor's CPUs share them.
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="nmrladder-io")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [int(r) for r in batch["row"]]
        paths = [Path(str(p)) for p in batch["path"]]
        flags = [bool(f) for f in batch["disambiguate"]]
        read = list(self.pool.map(self._read, rows, paths))
        items = [item for item, _ in read]
        outputs, infer_seconds = self._infer(items)
        written = list(self.pool.map(self._write, items, outputs, flags))
        columns: dict[str, list] = {name: [] for name in _COLUMNS}
        for (item, (read_s, scale_s)), infer_s, (result, write_s) in zip(
            read, infer_seconds, written, strict=True
        ):
            record = {"row": item.index, **asdict(result)}
            record["removal"] = json.dumps(record["removal"])  # a plain column: text
            record.update({"read": read_s, "scale": scale_s, "infer": infer_s, "write": write_s})
            for name in _COLUMNS:
                columns[name].append(record[name])
        return {name: np.asarray(values) for name, values in columns.items()}

    def _read(self, row: int, path: Path) -> tuple[ScaledInput, tuple[float, float]]:
        item = read_scaled(row, path, self.denoiser.info)  # a bad file fails alone, as data
        return item, split_read_time(item, time.perf_counter())

    def _infer(self, items: list[ScaledInput]) -> tuple[list, list[float]]:
        """Outputs (None where the input failed) and each input's share of inference time."""
        outputs: list = [None] * len(items)
        seconds = [0.0] * len(items)
        groups: dict[int, list[int]] = {}  # padded length -> positions: one session run each
        for position, item in enumerate(items):
            if not item.error:
                groups.setdefault(item.z.size, []).append(position)
        for positions in groups.values():
            started = time.perf_counter()
            try:
                out = self.denoiser.run_batch(np.stack([items[p].z for p in positions]))
            except Exception as err:  # reported per input, as data
                for p in positions:
                    items[p].error = f"{items[p].path}: inference failed: {err}"
                continue
            share = (time.perf_counter() - started) / len(positions)
            for p, row in zip(positions, out, strict=True):
                outputs[p], seconds[p] = row, share
        return outputs, seconds

    def _write(self, item: ScaledInput, output, disambiguate: bool) -> tuple[FileResult, float]:
        started = time.perf_counter()
        result = write_denoised(  # a failure comes back as a failed result, as data
            item,
            output,
            self.out_dir,
            in_place=self.in_place,
            disambiguate=disambiguate,
            plot=self.plot,
            core=self.denoiser.core,
            model=self.model,
        )
        result.seconds = time.perf_counter() - item.started
        return result, time.perf_counter() - started


_COLUMNS = ("row", *FileResult.__dataclass_fields__, *STAGES)


def denoise_with_ray(
    model_path: str | Path | None,
    inputs,
    out_dir: str | Path,
    *,
    backend: str = "ort",
    batch_size: int = 8,
    address: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    resume: bool = False,
    plot: bool = False,
    in_place: bool = False,
    progress: bool = True,
    residual_lb: float | None = None,
    strength: float | str | None = None,
) -> JobSummary:
    """Denoise ``inputs`` (paths of spectra) into ``out_dir`` on a pool of Ray actors.

    ``model_path``: an artefact or export folder (None: the model shipped with the package);
    ``address``: an existing Ray cluster ("auto" for the one this node belongs to, or
    "HOST:6379"); without it, and when Ray is not initialised already, a local instance with
    this machine's CPUs is started and shut down at the end. ``workers`` actors (default: as
    many as the cluster holds) each run ``threads_per_worker`` CPU threads (default 1) or,
    for a GPU backend (ort-cuda, ort-tensorrt, trt), one GPU each. Same outputs, manifest
    and ``resume`` as :class:`~nmrladder.runtime.batch_job.DenoiseJob`; ``residual_lb`` and
    ``strength``: as in :class:`~nmrladder.runtime.Denoiser` (not both).
    """
    from nmrladder.runtime.artefact import artefact_fingerprint
    from nmrladder.runtime.core import Core
    from nmrladder.runtime.denoiser import default_model_path
    from nmrladder.runtime.residual import checked_factor
    from nmrladder.runtime.sessions import BACKENDS, open_session, resolve_artefact

    ray = import_ray()
    started = time.perf_counter()
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: use one of {BACKENDS}")
    if residual_lb is not None:
        residual_lb = checked_factor(residual_lb)  # refused here, not on each node
    strength = Core(1, residual_lb, strength).strength  # likewise (and not with residual_lb)
    for name, value in (("batch_size", batch_size), ("workers", workers)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    if threads_per_worker is not None and threads_per_worker < 1:
        raise InputError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
    # Every node opens the artefact by this path: absolute, checked here before any work.
    artefact = resolve_artefact(model_path or default_model_path(backend), backend).absolute()
    if backend == "ort":
        open_session(artefact, backend, threads=1)  # a bad model fails here, not on each node
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in inputs]
    model = artefact_fingerprint(artefact)
    skipped, todo = plan_resume(paths, out_dir, resume, residual_lb, model, strength)
    summary = JobSummary(results=skipped)
    summary.stage_seconds = dict.fromkeys(STAGES, 0.0)
    if todo:
        collisions = colliding_names(paths)
        rows = [
            {"row": i, "path": str(p.absolute()), "disambiguate": p.name in collisions}
            for i, p in enumerate(todo)
        ]
        with _connected(ray, address):
            pool = _pool_size(ray, backend, workers, threads_per_worker)
            actor = {
                "model_path": str(artefact),
                "backend": backend,
                "batch_size": batch_size,
                "threads": pool["num_cpus"],
                "out_dir": str(out_dir.absolute()),
                "in_place": in_place,
                "plot": plot,
                "residual_lb": residual_lb,
                "model": model,
                "strength": strength,
            }
            results = _run(ray, rows, todo, actor, pool, out_dir, progress, summary.stage_seconds)
        first = {}
        for index, path in enumerate(paths):
            first.setdefault(str(path), index)
        summary.results.extend(sorted(results, key=lambda r: first[r.input]))
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _pool_size(ray, backend: str, workers: int | None, threads: int | None) -> dict:
    """Actors and the resources of each: CPU threads, and one GPU for a GPU backend."""
    resources = ray.cluster_resources()
    threads = threads or 1
    if backend in GPU_BACKENDS:
        gpus = int(resources.get("GPU", 0))
        if gpus < 1:
            raise BackendUnavailable(
                backend,
                "the Ray cluster has no GPU",
                "ray start on nodes with GPUs (Ray counts them), or use --backend ort",
            )
        return {"workers": workers or gpus, "num_cpus": threads, "num_gpus": 1}
    cpus = int(resources.get("CPU", 1))
    return {"workers": workers or max(1, cpus // threads), "num_cpus": threads, "num_gpus": 0}


@contextlib.contextmanager
def _connected(ray, address: str | None):
    """Use the Ray already initialised in this process, else connect or start one (and
    disconnect or shut it down afterwards)."""
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # "local": a new instance even when `ray start` left one running on this machine.
        ray.init(
            address="local",
            num_cpus=_machine_cpus(),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    try:
        yield
    finally:
        ray.shutdown()


def _machine_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _run(
    ray,
    rows: list[dict],
    todo: list[Path],
    actor: dict,
    pool: dict,
    out_dir: Path,
    progress: bool,
    stage_seconds: dict,
) -> list[FileResult]:
    """Stream the rows through the actor pool; record each finished output as it arrives."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.enable_progress_bars, context.max_errored_blocks)
    context.enable_progress_bars = False  # our own bar counts files, as the local engine's
    # A batch whose worker gave up after its retries is dropped, not fatal: its inputs are
    # reported failed below and the other batches go on.
    context.max_errored_blocks = -1
    manifest = Manifest(out_dir)
    results: dict[int, FileResult] = {}
    bar = progress_bar(len(rows), progress)
    try:
        for batch in _denoised(ray, rows, actor, pool).iter_batches(
            batch_size=None, batch_format="numpy"
        ):
            for values in zip(*(batch[name] for name in _COLUMNS), strict=True):
                record = dict(zip(_COLUMNS, values, strict=True))
                result = _result(record, todo)
                if result.status == "ok":
                    result = _recorded(manifest, result)
                results[int(record["row"])] = result
                for stage in STAGES:
                    stage_seconds[stage] += float(record[stage])
                bar.update(1)
    except ray.exceptions.RayActorError as err:
        if not err.actor_init_failed:
            raise
        # The worker's own error (a ModelError, a BackendUnavailable on that node) arrives
        # only as a traceback's text: keep its last line, the message, without module names.
        reason = [line for line in str(err).splitlines() if line.strip()][-1]
        reason = re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", reason)
        raise NmrLadderError(
            f"a Ray worker could not load {actor['model_path']} ({actor['backend']}): {reason}"
        ) from err
    finally:
        bar.close()
        manifest.close()
        context.enable_progress_bars, context.max_errored_blocks = saved
    for row in range(len(rows)):
        if row not in results:
            results[row] = FileResult(
                str(todo[row]),
                status="failed",
                message=f"{todo[row]}: its Ray worker died {1 + BATCH_RETRIES} times on this "
                "batch (see the Ray logs); run again with --resume to retry it",
            )
    return list(results.values())


def _denoised(ray, rows: list[dict], actor: dict, pool: dict):
    """The lazy Dataset of result rows: the inputs, one block per batch, through the pool."""
    import warnings

    from ray.data import ActorPoolStrategy

    blocks = -(-len(rows) // actor["batch_size"])  # one block per batch: every actor gets work
    with warnings.catch_warnings():
        # Ray 2.60 deprecates remote args such as max_restarts in favour of named parameters
        # it does not have yet: these are still the only way to bound the retries.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            DenoiseActor,
            fn_constructor_kwargs=actor,
            batch_size=actor["batch_size"],
            batch_format="numpy",
            # Ray Data queues several batches per actor; a worker's death charges each of them
            # a retry, so a batch queued behind a crashing one can fail with it (--resume
            # retries it). One batch per actor would spare them but cost much of the
            # throughput (docs/scale-out.md has the figures).
            compute=ActorPoolStrategy(size=pool["workers"]),
            num_cpus=pool["num_cpus"],
            num_gpus=pool["num_gpus"],
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=BATCH_RETRIES,
        )


def _recorded(manifest: Manifest, result: FileResult) -> FileResult:
    """Append a finished output to the manifest (the driver is its one writer); an input
    whose record cannot be written fails, as in the local engine."""
    try:
        manifest.record(result)
    except OSError as err:
        return FileResult(result.input, status="failed", message=f"{result.input}: {err}")
    return result


def _result(record: dict, todo: list[Path]) -> FileResult:
    """A result row as a FileResult, its input named as the caller gave it (the manifest
    key the local engine uses), not by the absolute path the worker read."""
    fields = {name: record[name] for name in FileResult.__dataclass_fields__}
    for name in ("input", "output", "status", "message"):
        fields[name] = str(fields[name])
    for name in ("snr_before", "snr_after", "seconds"):
        fields[name] = float(fields[name])
    for name in ("points", "confidence_copies"):
        fields[name] = int(fields[name])
    for name in ("strength", "strength_step", "confidence"):
        fields[name] = str(fields[name])
    fields["removal"] = json.loads(str(fields["removal"]))
    fields["input"] = str(todo[int(record["row"])])
    return FileResult(**fields)


__all__ = ["ACTOR_RESTARTS", "BATCH_RETRIES", "DenoiseActor", "denoise_with_ray", "import_ray"]
