"""Where a trained model comes from: the commit, the command, the data recipe and the config.

``nmrladder train`` writes RUN/provenance.json when it starts (:func:`record_run`); the
exporter copies it, with the run's resolved config, into every artefact's metadata
(``extra["provenance"]``), so a shipped model can be regenerated from the repository alone
(scripts/train_default.sh, docs/default-model.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nmrladder.runtime.atomic import write_text_atomic

__all__ = ["PROVENANCE_FILE", "git_state", "read_provenance", "record_run"]

PROVENANCE_FILE = "provenance.json"
# What a simulated data set's attributes say about how it was made (train/sim/store.py).
_RECIPE_KEYS = ("seed", "rungs", "length", "T", "snr", "options", "nmrladder_version")


def git_state(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The commit of the repository holding ``path`` (this package by default) and whether
    its tracked files differ from it; empty values outside a git checkout."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=where, capture_output=True, text=True, timeout=10,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": "", "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def _data_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """How one training input was made: a simulated set's generator arguments, or its path."""
    from nmrladder.train.simulate import FORMAT_NAME, open_ladders

    path = Path(path)
    file = path / "ladders.h5" if path.is_dir() else path
    entry: dict[str, Any] = {"path": str(path)}
    if file.suffix == ".h5" and file.is_file():
        try:
            with open_ladders(file) as lf:
                if lf.meta.get("format") == FORMAT_NAME:
                    entry["samples"] = len(lf)
                    entry.update({k: lf.meta[k] for k in _RECIPE_KEYS if k in lf.meta})
        except Exception as err:  # a manifest or a foreign file: its path is what we know
            entry["note"] = f"not a simulated ladder file ({type(err).__name__})"
    return entry


def record_run(run_dir: str | os.PathLike, data: Sequence[str | os.PathLike],
               val: str | os.PathLike | None, argv: Sequence[str] | None = None) -> Path:
    """Write RUN/provenance.json: commit, command line, and the recipe of every data set.
    A resumed run keeps its first record and appends the commit and command of the resume."""
    command = " ".join(["nmrladder", *(sys.argv[1:] if argv is None else argv)])
    previous = read_provenance(run_dir)
    if previous:
        record = {**previous, "resumed": [*previous.get("resumed", []),
                                          {"git": git_state(), "command": command}]}
    else:
        record = {
            "git": git_state(),
            "command": command,
            "data": [_data_recipe(p) for p in data],
            "val": _data_recipe(val) if val is not None else None,
        }
    path = Path(run_dir) / PROVENANCE_FILE
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    return path


def read_provenance(run_dir: str | os.PathLike) -> dict[str, Any]:
    """RUN/provenance.json, or an empty record for runs made before it existed."""
    path = Path(run_dir) / PROVENANCE_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text())
