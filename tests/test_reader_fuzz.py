"""Every reader against mutated real files (bit flips, truncation, zeroed blocks, inserted
text): each mutation ends, within seconds, in a read or in an InputError that names the file,
on one line; a read's notes are one line each and name the file too.

The reads run in a separate process, each with a time limit, so that a reader that hangs (or
crashes the interpreter) fails this test instead of freezing the run. The seed is fixed.
"""

from __future__ import annotations

import multiprocessing
import shutil
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest
from nmrfiles import real_bruker, real_jcamp

SEED = 20240924
MUTATIONS_PER_SOURCE = 48
READ_LIMIT_S = 20.0  # one read; the slowest real read takes a fraction of a second
HEADER_BYTES = 4096  # half the mutations land here, where the parsers are
SNIPPETS = (
    b"<", b">", b"##$SI= <cut", b"(0..4095)", b"\n##END=\n", b"\r\n", b"##", b"$$", b"=",
    b"\x00\xff\x7f", b"1e999", b"nan", b"-inf", b"((", b"'", b"{", b"?@%", b"\n\n\n",
)  # fmt: skip


def read_outcome(path: str) -> tuple[str, str, list[str]]:
    """('read', '', notes) or ('error', message, []) for an InputError, ('unnamed', the
    traceback, []) for any other exception. Runs in the worker process."""
    from nmrladder.runtime.errors import InputError
    from nmrladder.runtime.io import read_spectrum

    warnings.simplefilter("ignore")  # notes come back in the result
    try:
        spectrum = read_spectrum(path)
    except InputError as err:
        return "error", str(err), []
    except Exception:
        return "unnamed", traceback.format_exc(), []
    return "read", "", spectrum.notes


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random mutation of ``data`` and a description of it."""
    kind = ("flip", "truncate", "zero", "insert")[rng.integers(4)]
    buffer = bytearray(data)
    span = min(len(data), HEADER_BYTES) if rng.random() < 0.5 else len(data)
    where = int(rng.integers(span))
    if kind == "flip":
        spots = rng.integers(span, size=int(rng.integers(1, 9)))
        for spot in spots:
            buffer[spot] ^= 1 << int(rng.integers(8))
        return bytes(buffer), f"bit flips at {sorted(spots.tolist())}"
    if kind == "truncate":
        return data[:where], f"truncated to {where} bytes"
    if kind == "zero":
        size = int(rng.integers(1, 1025))
        buffer[where : where + size] = bytes(len(buffer[where : where + size]))
        return bytes(buffer), f"{size} bytes zeroed at {where}"
    snippet = SNIPPETS[rng.integers(len(SNIPPETS))]
    return data[:where] + snippet + data[where:], f"{snippet!r} inserted at {where}"


def _sources(root: Path) -> dict[str, tuple[Path, list[Path]]]:
    """name -> (what to read, the files to mutate): the real files of tests/data, and the
    real Bruker spectrum written by nmrladder's writers in the other formats."""
    from nmrladder.runtime.io import read_spectrum, write_spectrum

    experiment = real_bruker(root / "bruker")
    pdata = experiment / "pdata" / "1"
    sources = {
        "bruker": (experiment, [experiment / "acqus", pdata / "procs", pdata / "1r"]),
        "jcamp XYDATA": (xy := real_jcamp(root, "13c_estragole"), [xy]),
        "jcamp NTUPLES": (nt := real_jcamp(root, "19f_trifluoroethoxyaniline"), [nt]),
    }
    spectrum = read_spectrum(experiment)
    for suffix in (".ft", ".npy", ".npz", ".csv", ".h5"):
        path = write_spectrum(spectrum, root / "written" / f"spectrum{suffix}")
        sources[suffix] = (path, [path])
    return sources


def _mutated_copies(root: Path, rng: np.random.Generator):
    """(source name, path to read, which file was mutated and how) for every mutation."""
    for name, (target, files) in _sources(root / "sources").items():
        for number in range(MUTATIONS_PER_SOURCE):
            read = root / "cases" / f"{name.replace(' ', '_')}-{number}" / target.name
            if target.is_dir():
                shutil.copytree(target, read)
            else:
                read.parent.mkdir(parents=True)
                shutil.copyfile(target, read)
            victim = files[rng.integers(len(files))]
            copy = read / victim.relative_to(target) if target.is_dir() else read
            data, how = mutate(victim.read_bytes(), rng)
            copy.write_bytes(data)
            yield name, read, f"{victim.name}: {how}"


def test_mutated_real_files_end_in_a_read_or_a_named_error(tmp_path):
    rng = np.random.default_rng(SEED)
    cases = list(_mutated_copies(tmp_path, rng))
    assert len(cases) >= 300
    outcomes = {"read": 0, "error": 0}
    failures = []
    context = multiprocessing.get_context("spawn")  # nothing of pytest's threads forked
    with context.Pool(1) as pool:
        for name, path, how in cases:
            pending = pool.apply_async(read_outcome, (str(path),))
            try:
                kind, message, notes = pending.get(timeout=READ_LIMIT_S)
            except multiprocessing.TimeoutError:
                pool.terminate()  # the worker hangs (or died): nothing more can be asked
                pytest.fail(f"{name}, {how}: no answer in {READ_LIMIT_S:.0f} s (hang or crash)")
            named = str(path)  # the file, or the Bruker experiment folder
            if kind == "unnamed":
                failures.append(f"{name}, {how}: not an InputError:\n{message}")
            elif kind == "error" and (named not in message or "\n" in message):
                failures.append(f"{name}, {how}: error not on one line naming {named}: {message}")
            elif any(named not in note or "\n" in note for note in notes):
                failures.append(f"{name}, {how}: a note not on one line naming {named}: {notes}")
            else:
                outcomes[kind] += 1
    assert not failures, "\n".join(failures[:10])
    # the mutations reach both ends: some still read, most are refused
    assert outcomes["read"] > 10 and outcomes["error"] > 100, outcomes
