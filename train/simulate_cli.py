"""``nmrladder simulate``: write simulated SNR ladders with a known truth to DIR/ladders.h5."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from nmrladder.train.sim.options import FAMILY_NAMES

DESCRIPTION = (
    "Simulate SNR ladders: replicate 1D NMR spectra of one sample whose SNR grows by T per "
    "rung, with the noise-free truth, the drift and the normalisation of every rung. "
    "SNR = tallest non-solvent peak / std of the real-part noise. Writes DIR/ladders.h5 "
    "(HDF5; read it with nmrladder.train.simulate.load_ladders or open_ladders)."
)

EXAMPLES = """\
  nmrladder simulate --out data/train --samples 20000 --rungs 4 --T 2 --length 16384 --snr 5
  nmrladder simulate --out data/val --samples 500 --T 1.5:3 --snr 3 --seed 1 --nonlinear-drift 0.3
  nmrladder simulate --out data/c13 --samples 200 --nucleus 13C --normalisation max --workers 2
  nmrladder simulate --out data/test_19f --samples 200 --family 19f --snr 5 --oracle
"""


def _parse_T(text: str) -> float | tuple[float, float]:
    """'2' -> 2.0; '1.5:3' -> (1.5, 3.0), drawn uniformly per sample."""
    try:
        if ":" in text:
            lo, hi = text.split(":")
            return float(lo), float(hi)
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or lo:hi, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--out", required=True, type=Path, help="output folder (ladders.h5)")
    parser.add_argument("--samples", type=int, default=1000, help="number of ladders (1000)")
    parser.add_argument("--rungs", type=int, default=4, help="rungs per ladder, >= 2 (4)")
    parser.add_argument("--T", type=_parse_T, default=2.0,
                        help="SNR ratio per rung, > 1, or lo:hi drawn per sample (2)")
    parser.add_argument("--length", type=int, default=16384, help="points per spectrum (16384)")
    parser.add_argument("--snr", type=float, default=5.0, help="SNR of rung 0 (5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--workers", type=int, default=2, help="threads (2)")
    parser.add_argument("--chunk", type=int, default=64, help="ladders per write (64)")
    parser.add_argument("--nonlinear-drift", type=float, default=0.0,
                        help="probability per sample of a per-region drift (0)")
    parser.add_argument("--max-drift", type=float, default=20.0,
                        help="global drift per rung, +- points (20)")
    parser.add_argument("--normalisation", default="random",
                        choices=["random", "none", "max", "area", "zscore", "reference"],
                        help="per-rung normalisation (random)")
    parser.add_argument("--family", default=None, choices=list(FAMILY_NAMES),
                        help="spectrum family (docs/simulator.md): 1h (300-1200 MHz), "
                             "1h-benchtop (40-100 MHz, strong coupling), 13c, 19f, 31p")
    parser.add_argument("--nucleus", default=None, choices=["1H", "13C", "19F"],
                        help="legacy per-nucleus preset when no --family is given (1H)")
    parser.add_argument("--keep-clean", action="store_true",
                        help="also store the noise-free content of every rung")
    parser.add_argument("--oracle", action="store_true",
                        help="also store the structure-known oracle's fit of rung 0 (test sets)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Simulate to DIR/ladders.h5 and print a summary; returns the exit status."""
    if "numpy" not in sys.modules:
        # The simulator's own threads do the parallel work; OpenBLAS's pool would only
        # busy-wait beside them (docs/simulator.md, "Speed", has the throughput of both).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import numpy as np

    from nmrladder.train.simulate import open_ladders, simulate_to_file

    path = Path(args.out) / "ladders.h5"
    start = time.perf_counter()
    simulate_to_file(
        path, args.samples, args.rungs, args.length, args.T, args.snr, args.seed,
        chunk=args.chunk, workers=args.workers, progress=not args.no_progress,
        nonlinear_drift=args.nonlinear_drift, max_drift=args.max_drift,
        normalisation=args.normalisation, nucleus=args.nucleus, family=args.family,
        keep_clean=args.keep_clean, keep_oracle=args.oracle,
    )
    seconds = time.perf_counter() - start
    with open_ladders(path) as lf:
        T = lf.file["T"][:]
        snr = lf.file["snr"][:]
    preset = f"family {args.family}" if args.family else f"nucleus {args.nucleus or '1H'}"
    rung_snr = ", ".join(f"{v:.3g}" for v in np.mean(snr, axis=0))
    print(f"wrote {path}")
    print(f"  N={args.samples} ladders, R={args.rungs} rungs, L={args.length} points, "
          f"{preset}")
    print(f"  T used: mean {T.mean():.3g} (min {T.min():.3g}, max {T.max():.3g})")
    print(f"  mean rung SNR: {rung_snr}")
    print(f"  {seconds:.2f} s, {args.samples / seconds:.1f} ladders/s with {args.workers} workers")
    return 0
