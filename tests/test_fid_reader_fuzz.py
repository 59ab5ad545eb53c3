"""The FID and vendor readers against mutated real files, as tests/test_reader_fuzz.py does
for the others (same mutations, same worker process with a time limit): each mutation of a
Spinsolve folder, a Varian folder, a TopSpin JCAMP-DX FID and a Bruker experiment with a fid
only ends, within seconds, in a read or in an InputError on one line that names the input."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
from nmrfiles import real_bruker_fid_only, real_jcamp_fid, real_spinsolve, real_varian
from test_reader_fuzz import READ_LIMIT_S, mutate, read_outcome

SEED = 20250611
MUTATIONS_PER_SOURCE = 24


def _sources(root: Path) -> dict[str, tuple[Path, list[Path]]]:
    spinsolve = real_spinsolve(root / "spinsolve")
    varian = real_varian(root / "varian")
    bruker = real_bruker_fid_only(root / "bruker")
    (root / "jcamp").mkdir()
    jcamp = real_jcamp_fid(root / "jcamp")
    return {
        "spinsolve spectrum": (spinsolve, [spinsolve / "spectrum.1d", spinsolve / "acqu.par"]),
        "spinsolve fid": (spinsolve / "data.1d", [spinsolve / "data.1d"]),
        "spinsolve acqu.par": (spinsolve, [spinsolve / "acqu.par"]),
        "varian": (varian, [varian / "fid", varian / "procpar"]),
        "jcamp fid": (jcamp, [jcamp]),
        "bruker fid": (bruker, [bruker / "fid", bruker / "acqus", bruker / "pdata/1/procs"]),
    }


def _mutated_copies(root: Path, rng: np.random.Generator):
    for name, (target, files) in _sources(root / "sources").items():
        base = target if target.is_dir() else target.parent
        for number in range(MUTATIONS_PER_SOURCE):
            case = root / "cases" / f"{name.replace(' ', '_')}-{number}"
            shutil.copytree(base, case / base.name)
            read = case / base.name / target.relative_to(base)
            victim = files[rng.integers(len(files))]
            copy = case / base.name / victim.relative_to(base)
            data, how = mutate(victim.read_bytes(), rng)
            copy.write_bytes(data)
            yield name, read, f"{victim.name}: {how}"


def _named(message: str, path: Path) -> bool:
    """The message starts with the input, a folder above it, or a file inside it."""
    named = Path(message.split(": ")[0])
    return named == path or named in path.parents or path in named.parents


def test_mutated_fid_and_vendor_files_end_in_a_read_or_a_named_error(tmp_path):
    rng = np.random.default_rng(SEED)
    cases = list(_mutated_copies(tmp_path, rng))
    assert len(cases) == 6 * MUTATIONS_PER_SOURCE
    outcomes = {"read": 0, "error": 0}
    failures = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        for name, path, how in cases:
            pending = pool.apply_async(read_outcome, (str(path),))
            try:
                kind, message, notes = pending.get(timeout=READ_LIMIT_S)
            except multiprocessing.TimeoutError:
                pool.terminate()
                pytest.fail(f"{name}, {how}: no answer in {READ_LIMIT_S:.0f} s (hang or crash)")
            if kind == "unnamed":
                failures.append(f"{name}, {how}: not an InputError:\n{message}")
            elif kind == "error" and (not _named(message, path) or "\n" in message):
                failures.append(f"{name}, {how}: error not on one line naming {path}: {message}")
            elif any(not _named(note, path) or "\n" in note for note in notes):
                failures.append(f"{name}, {how}: a note not on one line naming {path}: {notes}")
            else:
                outcomes[kind] += 1
    assert not failures, "\n".join(failures[:10])
    assert outcomes["read"] > 10 and outcomes["error"] > 20, outcomes
