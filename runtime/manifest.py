"""The record of a job's outcomes: one result per input, the manifest, and the resume plan.

``OUT/manifest.jsonl`` holds one JSON line per finished output (a :class:`FileResult`); a
resumed run skips the inputs it lists (and whose output exists) when the output was made the
way this run makes it (the residual step and the model), and does the rest again. The batch
job, series mode and the Ray engine (whose driver is the manifest's one writer) plan a resume
with :func:`plan_resume` and record with :class:`Manifest`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.residual import RESIDUAL_STEP

MANIFEST = "manifest.jsonl"


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
    """What a job did: a result per input, the seconds each stage spent (summed over its
    threads), the wall time, and the preprocessing's fallbacks."""

    results: list[FileResult] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    #: The preprocessing's fallbacks to the NumPy reference during the run ("function: reason"
    #: -> count; runtime/dispatch.py): empty when the compiled kernels ran throughout.
    fallbacks: dict = field(default_factory=dict)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def table(self) -> str:
        """A row per input, named by its path below the inputs' common folder (inputs of one
        name from several folders stay apart)."""
        from nmrladder.runtime.table import format_table

        names = relative_names([r.input for r in self.results])
        rows = [
            [name, r.status, r.points, r.snr_before, r.snr_after, r.message or "-"]
            for name, r in zip(names, self.results, strict=True)
        ]
        headers = ["input", "status", "points", "SNR before", "SNR after", "warning / error"]
        return format_table(headers, rows, digits=1)


class Manifest:
    """The record of finished outputs: one JSON line per input, flushed as written.

    Flushed, not fsync'ed: a killed or interrupted process loses nothing the OS has (what
    resume needs); the outputs are not fsync'ed either, so an fsync here would not make a
    power cut safe, at a cost measured in benchmarks/README.md.
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
        wanted_step = residual_step(residual_lb)
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


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete what an interrupted run left half-written (atomic writes' temporary names)."""
    import shutil

    stale = [p for p in out_dir.rglob(".*") if ".tmp-" in p.name or ".nmrladder-tmp-" in p.name]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    return stale


def relative_names(inputs: list[str]) -> list[str]:
    """Each input's path relative to the folder that holds them all (one input: its name)."""
    if not inputs:
        return []
    absolute = [os.path.abspath(p) for p in inputs]
    try:
        root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    except ValueError:  # on different drives (Windows): no common folder
        return list(inputs)
    return [os.path.relpath(p, root) for p in absolute]


def prepare_out_dir(out_dir: Path) -> None:
    """Make the output folder (and its parents), or say in one line why it cannot be."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: the output folder is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"{out_dir}: cannot make the output folder ({err.strerror or err})"
        ) from None


def residual_step(residual_lb: float | None) -> str:
    """What a manifest entry records of the residual step: its version when it ran."""
    return RESIDUAL_STEP if residual_lb else ""


__all__ = [
    "MANIFEST",
    "FileResult",
    "JobSummary",
    "Manifest",
    "plan_resume",
    "prepare_out_dir",
    "relative_names",
    "remove_stale_temporaries",
    "residual_step",
]
