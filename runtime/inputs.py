"""Input discovery for the batch job and series mode: which files and folders are spectra.

A folder given as an input is searched for spectra; a Bruker experiment or pdata folder counts
as one spectrum, and the files inside it belong to it. Files given by name are taken as given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from nmrladder.runtime.errors import InputError


def discover_inputs(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Expand folders into the spectra they hold (a Bruker experiment or pdata folder counts
    as one spectrum); files are taken as given, in order, without duplicates."""
    seen = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        candidates = [path]
        if path.is_dir() and not is_bruker(path):
            candidates = sorted(p for p in path.rglob("*") if is_candidate(p))
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                yield candidate


def is_bruker(path: Path) -> bool:
    """Whether the folder ``path`` is a Bruker experiment or processed-data folder."""
    return (path / "pdata").is_dir() or (path / "1r").is_file() or (path / "acqus").is_file()


def is_candidate(path: Path) -> bool:
    """Whether ``path``, found inside a searched folder, is a spectrum of its own."""
    from nmrladder.runtime.io import detect_format

    if path.name.startswith(".") or path.suffix in (".json", ".png", ".jsonl"):
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


def colliding_names(paths: list[Path]) -> set[str]:
    """File names given by more than one input (from different folders): their outputs get
    qualified names (runtime/stages.py, disambiguated)."""
    counts = Counter(p.name for p in paths if not p.is_dir())
    return {name for name, count in counts.items() if count > 1}


__all__ = ["colliding_names", "discover_inputs", "is_bruker", "is_candidate"]
