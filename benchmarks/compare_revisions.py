#!/usr/bin/env python
"""Paired speed comparison of two revisions of the runtime: in-process ``Denoiser.denoise``
and file-to-file ``nmrladder denoise``, the two revisions taking turns round after round so
that a busy machine slows both alike.

    python benchmarks/compare_revisions.py BASE_REV [--current REV] [--rounds 7] [--files 96]
                                           [--json OUT]

BASE_REV is checked out into a temporary git worktree, its kernels built in place there, and
imported through a package folder of links (nmrladder -> the worktree's nmrladder/, runtime/,
train/, export/, csrc/), so the current checkout's editable install is not touched. Both
revisions use the model shipped in the CURRENT checkout (runtime/models/default.onnx), so
only the code differs. Prints per-round times, the medians and the ratio current / base.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_LINKS = {"nmrladder": None, "runtime": "runtime", "train": "train", "export": "export",
                 "kernels": "csrc"}

# One timing of Denoiser.denoise on a [64, 16384] batch, run in a fresh interpreter.
IN_PROCESS = """
import sys, time, numpy as np
from nmrladder.runtime import Denoiser
den = Denoiser(sys.argv[1], threads=2)
x = np.random.default_rng(0).standard_normal((64, 16384)).astype(np.float32)
den.denoise(x[:8])
t = time.perf_counter(); den.denoise(x); print(time.perf_counter() - t)
"""


def _checkout(rev: str, where: Path) -> Path:
    tree = where / "tree"
    tree.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                   check=True, capture_output=True)
    return tree


def _package_dir(tree: Path, where: Path) -> Path:
    """A folder whose ``nmrladder`` package maps the sub-packages to ``tree``'s folders."""
    top = where / "pkg" / "nmrladder"
    top.mkdir(parents=True)
    for entry in (tree / "nmrladder").iterdir():
        (top / entry.name).symlink_to(entry)
    for name, folder in PACKAGE_LINKS.items():
        if folder:
            (top / name).symlink_to(tree / folder)
    return top.parent


# Every run starts in a neutral folder: with the checkout as the working directory, its own
# nmrladder/ would shadow the base revision's package folder.
NEUTRAL = Path(tempfile.gettempdir())


def _env(pythonpath: Path | None) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _in_process(env: dict, model: Path) -> float:
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, str(model)], env=env, check=True,
                         capture_output=True, text=True, cwd=NEUTRAL)
    return float(out.stdout.strip().splitlines()[-1])


def _file_to_file(env: dict, model: Path, inputs: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nmrladder.cli", "denoise", str(inputs), "--out",
                    str(out), "--model", str(model), "--no-progress"], env=env, check=True,
                   capture_output=True, cwd=NEUTRAL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the revision to compare against (e.g. a commit)")
    parser.add_argument("--current", default=None,
                        help="a revision to measure instead of this checkout's working tree")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--files", type=int, default=96, help="16384-point .npy files (96)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import numpy as np

    model = ROOT / "runtime" / "models" / "default.onnx"
    with tempfile.TemporaryDirectory(prefix="nmrladder-compare-") as scratch:
        scratch = Path(scratch)
        trees = {"base": _checkout(args.base, scratch / "base")}
        if args.current:
            trees["current"] = _checkout(args.current, scratch / "current")
        try:
            envs = {name: _env(_package_dir(tree, scratch / name)) for name, tree in trees.items()}
            envs.setdefault("current", _env(None))
            for name, env in envs.items():  # each revision imports its own code
                where = subprocess.run(
                    [sys.executable, "-c", "import nmrladder.runtime as r; print(r.__file__)"],
                    env=env, check=True, capture_output=True, text=True,
                    cwd=NEUTRAL).stdout.strip()
                expected = scratch / name if name in trees else ROOT
                if not where.startswith(str(expected)):
                    raise SystemExit(f"{name}: imports {where}, not from {expected}")
            inputs = scratch / "inputs"
            inputs.mkdir()
            rng = np.random.default_rng(1)
            for i in range(args.files):
                np.save(inputs / f"s{i:04d}.npy", rng.standard_normal(16384).astype(np.float32))
            times = {name: {"denoise_s": [], "files_s": []} for name in envs}
            for r in range(args.rounds):
                for name, env in (envs.items() if r % 2 == 0 else reversed(envs.items())):
                    times[name]["denoise_s"].append(_in_process(env, model))
                    times[name]["files_s"].append(
                        _file_to_file(env, model, inputs, scratch / f"out_{name}_{r}"))
                print(f"round {r}: " + ", ".join(
                    f"{n} {t['denoise_s'][-1] * 1e3:.0f} ms / {t['files_s'][-1]:.2f} s"
                    for n, t in times.items()))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                               capture_output=True)
    medians = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    ratios = {k: medians["current"][k] / medians["base"][k] for k in medians["base"]}
    print(f"medians: {medians}")
    print("current / base (time; < 1 is faster): "
          + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    if args.json:
        args.json.write_text(json.dumps({"base": args.base,
                                         "current": args.current or "working tree",
                                         "rounds": args.rounds,
                                         "files": args.files, "load": os.getloadavg(),
                                         "times": times, "medians": medians,
                                         "ratios": ratios}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
