#!/usr/bin/env python
"""Realism of the simulator's spectrum families against the real spectra of
/work/shared/realdata: line widths, noise autocorrelation, baseline roll and residual phase
error, measured the same way on both (scripts/realism_measures.py), side by side.

    OPENBLAS_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/realism.py --write-docs

Writes docs/figures/realism.json, one PNG per measure (docs/figures/realism_*.png) and, with
--write-docs, the table between the markers of the section "Realism against real spectra"
of docs/simulator.md (added at the end when missing; nothing else of the file is touched).
Real spectra: scripts/realism_data.py (which files, how read and processed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.runtime.errors import InputError
from nmrladder.train.simulate import FAMILY_NAMES, simulate_ladders

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the realism_* modules beside this

from realism_data import PROCESSED, RAW, RECIPE, read_real  # noqa: E402
from realism_measures import (  # noqa: E402
    baseline_range,
    measure_spectrum,
    noise_autocorr,
    resample,
)
from realism_report import write_docs, write_plots  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LENGTH = 16384

#: What each measure is (JSON ``measures``; docs table).
MEASURES = {
    "fwhm_pts": f"median FWHM of the tallest isolated peaks (up to 10), points at {LENGTH} over "
                "the spectral width (real: measured in Hz on the native spectrum, converted)",
    "fwhm_hz": "the same in Hz (real: fwhm_all_hz lists every measured peak)",
    "fwhm_native_pts": "the same in points of the spectrum as processed (what a model run on it "
                       f"meets; simulated: {LENGTH} points)",
    "lag1": "lag-1 autocorrelation of the noise (quiet segments, linearly detrended), native grid",
    "lag2": "lag-2 autocorrelation of the noise, native grid",
    "lag1_16k": f"lag-1 autocorrelation after Fourier resampling to {LENGTH} points (real "
                f"only; a FID longer than {LENGTH // 2} points is cut, whose truncation ringing "
                "can then outweigh the noise of a high-SNR spectrum)",
    "lag2_16k": "the same at lag 2",
    "baseline": "range of the baseline (segment medians of the non-peak points) over the central "
                "90 %, relative to the tallest peak",
    "phase_deg": "|phase error| of the tallest peak, degrees: complex Lorentzian fit within "
                 "+-2 FWHM (the imaginary part rebuilt from the real part by Hilbert transform); "
                 "exact for symmetric lines, but it also reads an asymmetric line or an "
                 "unresolved neighbour as phase error, so on real spectra it is an upper bound",
}
SUMMARISED = ("fwhm_pts", "fwhm_hz", "fwhm_native_pts", "lag1", "lag2", "baseline", "phase_deg")


def measure_real(root: Path) -> tuple[list[dict], list[dict]]:
    """Measures of every real spectrum of RAW and PROCESSED; entries that fail to read are
    listed with the reason instead."""
    records, skipped = [], []
    for source, entries in (("fid", RAW), ("processed", PROCESSED)):
        for family, label, reader, rel in entries:
            try:
                spec = read_real(root, family, label, reader, rel, source)
            except (OSError, ValueError, KeyError) as exc:
                skipped.append({"family": family, "label": label, "path": rel,
                                "reason": f"{type(exc).__name__}: {exc}"})
                continue
            x = spec.spectrum
            native = measure_spectrum(x)
            lag1_16k, lag2_16k = noise_autocorr(resample(x, LENGTH))
            fwhm_hz = native["fwhm_pts"] * spec.sw_hz / x.size
            records.append({
                "family": family, "label": label, "source": source, "path": rel,
                "nucleus": spec.nucleus, "mhz": round(spec.mhz, 3), "sw_hz": round(spec.sw_hz, 2),
                "td": spec.td, "points": int(x.size),
                "fwhm_hz": fwhm_hz, "fwhm_pts": fwhm_hz * LENGTH / spec.sw_hz,
                "fwhm_native_pts": native["fwhm_pts"],
                "lag1": native["lag1"], "lag2": native["lag2"],
                "lag1_16k": lag1_16k, "lag2_16k": lag2_16k,
                "baseline": native["baseline"], "phase_deg": native["phase_deg"],
                "n_peaks": native["n_peaks"], "fwhm_all_hz": [
                    round(w * spec.sw_hz / x.size, 3) for w in native["fwhm_all"]],
            })
            print(f"  real {family:12s} {source:9s} {label}", flush=True)
    return records, skipped


def measure_simulated(family: str, n: int, snr: float, seed: int) -> list[dict]:
    """Measures of n simulated spectra of a family: widths and phases on the lines
    (truth_peaks), the baseline on the noise-free truth, the noise autocorrelation on rung 0
    less its noise-free content."""
    lad = simulate_ladders(n, 2, LENGTH, 2.0, snr, seed, family=family, keep_clean=True)
    out = []
    for i in range(n):
        noise = lad.denormalised(i)[0] - lad.clean[i, 0].astype(np.float64)
        m = measure_spectrum(lad.truth_peaks[i].astype(np.float64), sigma=0.0, noise=noise)
        sw_hz = float(lad.acq["sw_hz"][i])
        out.append({
            "fwhm_pts": m["fwhm_pts"], "fwhm_hz": m["fwhm_pts"] * sw_hz / LENGTH,
            "fwhm_native_pts": m["fwhm_pts"],
            "lag1": m["lag1"], "lag2": m["lag2"],
            "baseline": baseline_range(lad.truth[i].astype(np.float64), 0.0),
            "phase_deg": m["phase_deg"],
        })
    return out


def summary(values) -> dict:
    """n and the 5, 25, 50, 75, 95 % quantiles of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    q = np.percentile(v, [5, 25, 50, 75, 95])
    return {"n": int(v.size), **{f"p{p}": float(x) for p, x in zip((5, 25, 50, 75, 95), q,
                                                                    strict=True)}}


def _finite(obj):
    """JSON-safe copy: NaN and inf become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--realdata", type=Path, default=Path("/work/shared/realdata"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures",
                        help="folder of realism.json and the PNGs (docs/figures)")
    parser.add_argument("--samples", type=int, default=200, help="simulated spectra per family")
    parser.add_argument("--snr", type=float, default=20.0, help="SNR of the simulated rung 0")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--families", nargs="+", default=list(FAMILY_NAMES),
                        choices=list(FAMILY_NAMES))
    parser.add_argument("--write-docs", action="store_true",
                        help="regenerate the realism section of docs/simulator.md")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "simulator.md")
    args = parser.parse_args(argv)
    args.out, args.docs = args.out.resolve(), args.docs.resolve()
    if not (args.realdata / "README.md").is_file():
        raise InputError(f"--realdata {args.realdata}: not the real-data folder (no README.md)")
    if args.samples < 1:
        raise InputError(f"--samples: must be >= 1, got {args.samples}")

    print("measuring the real spectra", flush=True)
    records, skipped = measure_real(args.realdata)
    families, simulated = {}, {}
    for k, family in enumerate(args.families):
        print(f"simulating and measuring {args.samples} spectra of family {family}", flush=True)
        simulated[family] = measure_simulated(family, args.samples, args.snr, args.seed + k)
        families[family] = {
            "simulated": {m: summary(r[m] for r in simulated[family]) for m in SUMMARISED},
            "real": [r for r in records if r["family"] == family],
        }
    result = _finite({
        "length": LENGTH, "snr": args.snr, "samples": args.samples, "seed": args.seed,
        "recipe": RECIPE, "measures": MEASURES, "families": families, "skipped": skipped,
    })
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "realism.json", json.dumps(result, indent=1) + "\n")
    for path in write_plots(result, simulated, args.out):
        print(f"wrote {path}")
    if args.write_docs:
        write_docs(result, args.docs, args.out.relative_to(args.docs.parent)
                   if args.out.is_relative_to(args.docs.parent) else args.out)
        print(f"updated {args.docs}")
    print(f"wrote {args.out / 'realism.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
