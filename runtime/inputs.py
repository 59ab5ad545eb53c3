"""Input discovery for the batch job and series mode: which files and folders are spectra.

A folder given as an input is searched for spectra; a Bruker experiment or pdata folder counts
as one spectrum, and the files inside it belong to it. Files given by name are taken as given.
The search skips what is not the user's data: hidden (dot) files and folders, ``__MACOSX``,
nmrladder's output folders (those holding a manifest) and every output a manifest lists (and
its confidence band's sidecar), so that an output folder inside (or equal to) an input folder
is never read back as input.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.manifest import MANIFEST

SKIPPED_FOLDERS = ("__MACOSX",)  # archive litter (macOS zip resource forks), never spectra
_NOT_SPECTRA = (".json", ".png", ".jsonl")  # what nmrladder writes beside its outputs


def discover_inputs(
    paths: Iterable[str | Path], out_dir: str | Path | None = None
) -> Iterator[Path]:
    """Expand folders into the spectra they hold (a Bruker experiment or pdata folder counts
    as one spectrum); files are taken as given, in order, without duplicates.

    ``out_dir``: the job's output folder, skipped where it lies inside a searched folder; the
    outputs its manifest lists are skipped wherever they are (an output folder equal to an
    input folder, ``in_place`` outputs beside their sources). A searched folder without a
    spectrum is an InputError that says so.
    """
    roots = [Path(raw) for raw in paths]
    out = Path(out_dir).resolve() if out_dir is not None else None
    outputs = _Outputs([out] if out is not None else [])
    seen = set()
    for path in roots:
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        candidates = [path]
        if path.is_dir() and not is_bruker(path):
            outputs.add_manifest_of(path.resolve())
            candidates = sorted(found for found in _search(path, out) if not outputs.lists(found))
            if not candidates:
                raise InputError(
                    f"{path}: no spectra in this folder (searched for {_formats_known()}; "
                    f"hidden folders, {', '.join(SKIPPED_FOLDERS)} and nmrladder's outputs "
                    "are skipped)"
                )
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                yield candidate


def _search(folder: Path, out: Path | None) -> Iterator[Path]:
    """The spectra below ``folder`` (not sorted), skipping the output folder ``out``, hidden
    and skipped folders, and other output folders; a Bruker experiment is yielded whole."""
    try:
        entries = list(os.scandir(folder))
    except OSError as err:
        raise InputError(f"{folder}: cannot be searched ({err.strerror or err})") from None
    for entry in entries:
        path = folder / entry.name
        if _hidden(entry.name):
            continue
        if entry.is_dir():
            if path.resolve() == out or (path / MANIFEST).is_file():
                continue  # an output folder: this job's or another run's
            if is_bruker(path):
                yield path
            elif not entry.is_symlink():  # a linked folder is not searched: no loops
                yield from _search(path, out)
        elif is_candidate(path):
            yield path


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_FOLDERS


class _Outputs:
    """The outputs nmrladder manifests list, to keep them out of a search: a path listed as
    an output, or a folder holding one that is not itself an input (a Bruker experiment
    copied to receive a new procno; an experiment denoised in place stays an input)."""

    def __init__(self, folders: list[Path]):
        self._outputs: set[Path] = set()
        self._holders: set[Path] = set()  # every folder above an output
        self._inputs: set[Path] = set()
        self._read: set[Path] = set()
        for folder in folders:
            self.add_manifest_of(folder)

    def add_manifest_of(self, folder: Path) -> None:
        """Add what ``folder``'s manifest (if any) lists."""
        if folder in self._read:
            return
        self._read.add(folder)
        try:
            lines = (folder / MANIFEST).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return  # no manifest: nothing listed
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by an interrupted run
            if isinstance(entry, dict) and entry.get("output"):
                output = Path(entry["output"]).resolve()
                self._outputs.add(output)
                self._holders.update(output.parents)
                self._inputs.add(Path(entry.get("input", "")).resolve())
                if entry.get("confidence"):  # a band's sidecar (runtime/band_output.py)
                    self._outputs.add(Path(entry["confidence"]).resolve())

    def lists(self, path: Path) -> bool:
        """Whether ``path`` is an output, or a folder that holds one and is not an input."""
        if not self._outputs:
            return False
        resolved = path.resolve()
        if resolved in self._outputs:
            return True
        return resolved in self._holders and resolved not in self._inputs


def _formats_known() -> str:
    from nmrladder.runtime.io import SUFFIX_FORMATS

    return "Bruker experiments and " + ", ".join(sorted(SUFFIX_FORMATS)) + " files"


def is_bruker(path: Path) -> bool:
    """Whether the folder ``path`` is a Bruker experiment or processed-data folder."""
    return (path / "pdata").is_dir() or (path / "1r").is_file() or (path / "acqus").is_file()


def is_candidate(path: Path) -> bool:
    """Whether ``path``, found inside a searched folder, is a spectrum of its own."""
    from nmrladder.runtime.io import detect_format

    if _hidden(path.name) or path.suffix in _NOT_SPECTRA:
        return False
    if path.is_dir():
        return is_bruker(path) and not (path.parent.name == "pdata" or "pdata" in path.parts[:-1])
    if any(part == "pdata" for part in path.parts) or path.parent.joinpath("acqus").exists():
        return False  # files inside a Bruker experiment belong to that experiment
    try:
        detect_format(path)
    except InputError:
        return False
    return True


def output_key(path: Path) -> str:
    """What an input's output and plot are named after: a file's name with the suffix of its
    output (x.jdx and x.npz both give x_denoised.npz), a folder's name (a Bruker experiment's
    plot). A function of the name alone, so that every engine and every run agrees on it."""
    from nmrladder.runtime.io import SUFFIX_FORMATS

    name = Path(path).name
    suffix = Path(name).suffix.lower()
    if SUFFIX_FORMATS.get(suffix) == "jcamp":
        return name[: -len(suffix)].casefold() + ".npz"  # nmrglue writes no JCAMP-DX
    return name.casefold()


def colliding_names(paths: list[Path]) -> set[str]:
    """Names of inputs whose outputs or plots would share a name with another input's (the
    same :func:`output_key`, from different files): their outputs and plots get qualified
    names (runtime/stages.py, output_destination and plot_path). Case is ignored, as some
    filesystems ignore it."""
    distinct = {Path(os.path.abspath(p)) for p in paths}
    counts = Counter(output_key(p) for p in distinct)
    return {p.name for p in distinct if counts[output_key(p)] > 1}


__all__ = [
    "SKIPPED_FOLDERS",
    "colliding_names",
    "discover_inputs",
    "is_bruker",
    "is_candidate",
    "output_key",
]
