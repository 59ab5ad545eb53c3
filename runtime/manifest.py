"""The record of a job's outcomes: one result per input, the manifest, and the resume plan.

``OUT/manifest.jsonl`` holds one JSON line per finished output (a :class:`FileResult`); a
resumed run skips the inputs it lists (and whose output exists) when the output was made the
way this run makes it (the residual step, the strength, the confidence band's copies and the
model), and does the rest again. The batch
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
from nmrladder.runtime.strength import STRENGTH_STEP

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
    strength: str = ""  # the strength setting: "" (none), a number as text, or "auto"
    strength_step: str = ""  # the dial's and auto's version that made it (STRENGTH_STEP)
    #: What the output removed from its input (RemovalReport.as_dict(); empty for series).
    removal: dict = field(default_factory=dict)
    confidence: str = ""  # the file holding the confidence band ("": none)
    confidence_copies: int = 0  # the re-noised copies the band was made from (0: no band)

    @property
    def flagged(self) -> bool:
        """Whether the output removed a line-shaped structure past the report's threshold."""
        return bool(self.removal.get("flagged"))


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
            [name, r.status, r.points, r.snr_before, r.snr_after, *_removal_cells(r),
             _warning_cell(r)]
            for name, r in zip(names, self.results, strict=True)
        ]
        headers = ["input", "status", "points", "SNR before", "SNR after", "strength",
                   "removed \N{GREEK SMALL LETTER SIGMA}", "ppm", "warning / error"]
        return format_table(headers, rows, digits=1)


def _removal_cells(result: FileResult) -> list:
    """The table's strength (auto: with the lowest it chose), the largest line-shaped
    structure the network removed (matched-filter sigmas) and its ppm; "-" without a report."""
    report = result.removal
    if not report:
        return ["-", "-", "-"]
    strength = report.get("strength")
    text = "-" if strength is None else f"{strength:.2f}"
    if result.strength == "auto":
        text = f"auto {text}"
    where = report.get("structure_ppm")
    return [text, float(report.get("structure_sigma", float("nan"))),
            "-" if where is None else f"{where:.3f}"]


def _warning_cell(result: FileResult) -> str:
    """The message, marked FLAG when the report flagged the output (a batch's triage)."""
    if result.flagged:
        return f"FLAG {result.message}" if result.message else "FLAG"
    return result.message or "-"


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

    def finished(
        self,
        residual_lb: float | None = None,
        model: str = "",
        strength: float | str | None = None,
        copies: int = 0,
    ) -> dict[str, dict]:
        """input path -> entry for entries whose output exists and was made the way this run
        makes it: the same residual step (``residual_lb``, and the step's version), the same
        ``strength`` (and the dial's version), with ``copies`` > 0 a confidence band from as
        many copies, and, when ``model`` is given, the same artefact (a torn last line is
        ignored). An output made another way is not finished: a resume redoes it, so one
        folder never mixes the two. Entries written before the manifest recorded the model
        count as this model's; those from before the strength setting, as made without one."""
        done = {}
        if not self.path.exists():
            return done
        wanted = residual_lb or 0.0
        wanted_step = residual_step(residual_lb)
        wanted_strength, wanted_dial = strength_text(strength), strength_step(strength)
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # interrupted while appending: that input is simply redone
            if (
                entry.get("status") == "ok"
                and entry.get("residual_lb", 0.0) == wanted
                and entry.get("residual_step", "") == wanted_step
                and entry.get("strength", "") == wanted_strength
                and entry.get("strength_step", "") == wanted_dial
                and (not copies or _has_band(entry, copies))
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


def _has_band(entry: dict, copies: int) -> bool:
    """Whether a manifest entry's output has its confidence band from ``copies`` copies."""
    return entry.get("confidence_copies", 0) == copies and Path(entry["confidence"]).exists()


def plan_resume(
    paths: list[Path],
    out_dir: Path,
    resume: bool,
    residual_lb: float | None = None,
    model: str = "",
    strength: float | str | None = None,
    copies: int = 0,
) -> tuple[list[FileResult], list[Path]]:
    """(results of the inputs the manifest says are finished, the inputs still to do).

    Without ``resume`` everything is to do; with it, what an interrupted run left half-written
    is deleted first, and outputs made with another ``residual_lb``, ``strength`` or ``model``
    (a fingerprint), or without a confidence band of ``copies`` when one is asked, are redone.
    """
    done = Manifest(out_dir).finished(residual_lb, model, strength, copies) if resume else {}
    if resume:
        remove_stale_temporaries(out_dir)
    skipped, todo = [], []
    for path in paths:
        entry = done.get(str(path))
        if entry is None:
            todo.append(path)
            continue
        kept = {name: entry[name] for name in _KEPT_ON_RESUME if name in entry}
        skipped.append(
            FileResult(str(path), entry["output"], "skipped", message="already done", **kept)
        )
    return skipped, todo


#: What a skipped input's result keeps of its manifest entry (its table row).
_KEPT_ON_RESUME = (
    "points", "snr_before", "snr_after", "residual_lb", "residual_step", "model", "strength",
    "strength_step", "removal", "confidence", "confidence_copies",
)


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


def strength_text(strength: float | str | None) -> str:
    """What a manifest entry records of the strength setting: "" without one, "auto", or the
    number as text (the shortest that reads back as the same float)."""
    if strength is None:
        return ""
    return strength if isinstance(strength, str) else repr(float(strength))


def strength_step(strength: float | str | None) -> str:
    """What a manifest entry records of the dial's version: STRENGTH_STEP when a strength was
    set."""
    return "" if strength is None else STRENGTH_STEP


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
    "strength_step",
    "strength_text",
]
