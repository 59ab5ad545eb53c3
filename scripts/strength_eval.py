#!/usr/bin/env python
"""Check the strength dial, ``strength="auto"`` and the confidence band on simulated ladders.

    scripts/strength_eval.py                      # every family, SNR 3/5/10/20/50, 16 ladders
    scripts/strength_eval.py --render docs/figures/strength.json   # rewrite the docs table only
    scripts/strength_eval.py --calibrate          # the confidence band's scale factors

Per family and rung-0 SNR, fresh ladders (seeds from --seed) are scored by
nmrladder.train.evaluate.evaluate_denoisers (baselines=False) for the noisy input, strength
1 (the network), strength auto and the residual step at 0.5, and the band of auto
(runtime/confidence.py, --copies re-noised copies) is checked against the truth: the share of
points within +-2 sigma, in the truth's peak regions and elsewhere. The JSON goes to --json
and the table to the block between ``<!-- strength:begin -->`` and ``<!-- strength:end -->``
of docs/self-check.md, so the table there is never pasted.

``--calibrate`` measures the band's class factors (confidence.SCALES) on ladders of other
seeds (--calibration-seed): per class of point, the factor that puts the truth within +-2
sigma at 95 % of the points, pooled over every family and SNR with each set weighted alike.
It writes docs/figures/strength_calibration.json; the factors are then copied into
confidence.SCALES by hand (the runtime reads no JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from docblock import replace_block

from nmrladder.runtime import Denoiser
from nmrladder.runtime import confidence as conf
from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.train.evaluate import INPUT_NAME, evaluate_denoisers, prepare_items
from nmrladder.train.sim.options import FAMILY_NAMES
from nmrladder.train.simulate import simulate_ladders

ROOT = Path(__file__).resolve().parents[1]
SNRS = (3, 5, 10, 20, 50)
KEYS = ("gain_db", "gain_db_peaks", "recall", "f1", "height_ret", "seconds_per_spectrum")
DOC = ROOT / "docs" / "self-check.md"
NETWORK, AUTO, RESIDUAL = "strength 1", "strength auto", "residual LB 0.5"
#: Points sampled per class and set for the calibration's pooled quantile (sets weigh alike).
CALIBRATION_SAMPLE = 4000


def ladders(family: str, snr: int, n: int, length: int, seed: int):
    return simulate_ladders(n, 3, length, 2.0, float(snr), seed, family=family)


def coverage(den, items, copies: int) -> dict:
    """Share of points whose truth lies within +-2 band sigmas (peak regions, elsewhere)."""
    noisy = np.stack([item.noisy for item in items])
    y, sigma = den.denoise(noisy, return_confidence=True, copies=copies)
    inside = np.abs(y - np.stack([item.truth for item in items])) <= 2.0 * sigma
    region = np.stack([item.region for item in items])
    return {"peaks": float(inside[region].mean()), "elsewhere": float(inside[~region].mean()),
            "median_sigma_over_noise": float(np.median(sigma / np.array(
                [[item.sigma] for item in items])))}


def evaluate(args, log) -> dict:
    den = Denoiser.default(threads=args.threads)
    methods = {NETWORK: den, AUTO: den.with_strength("auto"), RESIDUAL: den.with_residual(0.5)}
    results: dict = {}
    for f, family in enumerate(args.families):
        results[family] = {}
        for snr in args.snrs:
            start = time.perf_counter()
            data = ladders(family, snr, args.ladders, args.length, args.seed + 1000 * f + snr)
            report = evaluate_denoisers(methods, {f"SNR {snr}": data}, baselines=False)
            rows = {method: {k: _round(values.get(k)) for k in KEYS}
                    for method, values in report.summary[f"SNR {snr}"].items()}
            rows["band"] = coverage(methods[AUTO], prepare_items(data), args.copies)
            results[family][f"SNR {snr}"] = rows
            log(f"{family} SNR {snr}: auto {rows[AUTO]['gain_db_peaks']:+.2f} dB (P), "
                f"strength 1 {rows[NETWORK]['gain_db_peaks']:+.2f}, residual 0.5 "
                f"{rows[RESIDUAL]['gain_db_peaks']:+.2f}; band {rows['band']['peaks']:.3f} / "
                f"{rows['band']['elsewhere']:.3f} ({time.perf_counter() - start:.0f} s)")
    return {"model": "Denoiser.default() (runtime/models/default.int8.onnx, backend ort)",
            "ladders": args.ladders, "length": args.length, "seed": args.seed,
            "copies": args.copies, "snrs": list(args.snrs), "families": results,
            "protocol": "scripts/strength_eval.py; docs/self-check.md"}


def _round(value):
    return None if value is None else round(float(value), 4)


def verdicts(rows: dict) -> list[str]:
    """Where auto misses a check: > 0.3 dB below the better of the input and strength 1 in
    the peak regions, recall below the input's, or the band's coverage outside 90-98 %."""
    out = []
    for set_name, by in rows.items():
        auto, net, noisy = by[AUTO], by[NETWORK], by[INPUT_NAME]
        best = max(noisy["gain_db_peaks"], net["gain_db_peaks"])
        if auto["gain_db_peaks"] < best - 0.3:
            out.append(f"{set_name}: {auto['gain_db_peaks'] - best:+.2f} dB (P) below the "
                       "better of input and strength 1")
        if auto["recall"] < noisy["recall"]:
            out.append(f"{set_name}: recall {auto['recall']:.3f} < input's {noisy['recall']:.3f}")
        for where in ("peaks", "elsewhere"):
            share = by["band"][where]
            if not 0.90 <= share <= 0.98:
                out.append(f"{set_name}: band covers {100 * share:.1f} % {where}")
    return out


def render(payload: dict) -> str:
    """The markdown table (one row per family and SNR) and the misses."""
    lines = [f"Generated by `scripts/strength_eval.py` from `docs/figures/strength.json`: "
             f"{payload['model']}, {payload['ladders']} fresh ladders of {payload['length']} "
             f"points per family and rung-0 SNR (seed {payload['seed']}), band from "
             f"{payload['copies']} re-noised copies. Gain in the truth's peak regions (dB, "
             "over the noisy input), recall at 4 input noise sigmas, band coverage = share of "
             "points with the truth within +-2 sigma.", "",
             "| family | SNR | gain (P) strength 1 | gain (P) auto | gain (P) residual 0.5 | "
             "recall input | recall 1 | recall auto | recall res. 0.5 | band peaks | "
             "band elsewhere |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    means = {m: [] for m in (NETWORK, AUTO, RESIDUAL)}
    misses = []
    for family, rows in payload["families"].items():
        for set_name, by in rows.items():
            cells = [f"{by[m]['gain_db_peaks']:+.2f}" for m in (NETWORK, AUTO, RESIDUAL)]
            cells += [f"{by[m]['recall']:.3f}" for m in (INPUT_NAME, NETWORK, AUTO, RESIDUAL)]
            cells += [f"{100 * by['band'][w]:.1f} %" for w in ("peaks", "elsewhere")]
            lines.append(f"| {family} | {set_name.split()[-1]} | " + " | ".join(cells) + " |")
            for m in means:
                means[m].append(by[m]["gain_db_peaks"])
        misses += [f"{family} {text}" for text in verdicts(rows)]
    lines += ["", "Mean peak-region gain over every set: " + ", ".join(
        f"{m} {np.mean(v):+.2f} dB" for m, v in means.items()) + ".", ""]
    lines.append("Checks missed (auto vs the better of input and strength 1 by > 0.3 dB, recall "
                 "below the input's, band outside 90-98 %): "
                 + ("none." if not misses else "; ".join(misses) + "."))
    return "\n".join(lines)


def write_docs(payload: dict, doc: Path = DOC) -> None:
    replace_block(doc, "strength", render(payload))


def calibrate(args, log) -> dict:
    """Per K of --calibration-copies, the class factors that put 95 % of each class's points
    within +-2 sigma (confidence.band with unit factors, pooled over the sets)."""
    den = Denoiser.default(threads=args.threads, strength="auto")
    rng = np.random.default_rng(0)
    ratios = {k: {c: [] for c in range(3)} for k in args.calibration_copies}
    for f, family in enumerate(args.families):
        for snr in args.snrs:
            data = ladders(family, snr, args.ladders, args.length,
                           args.calibration_seed + 1000 * f + snr)
            items = prepare_items(data)
            noisy = np.stack([item.noisy for item in items])
            truth = np.stack([item.truth for item in items])
            core = den.core
            prepared = core.prepare(noisy, args.threads)
            y = core.finish(prepared, den._network(prepared.z))
            height = (y - prepared.centers[:, None]) / prepared.sigmas[:, None]
            classes = (height > conf.CORE_LEVEL).astype(int) + (height > conf.STRONG_LEVEL)
            for k in args.calibration_copies:
                copies = core.renoise(prepared, y, k, args.threads)
                outputs = core.finish(copies, den._network(copies.z))
                unit = conf.band(noisy, y, outputs, prepared.centers, prepared.sigmas,
                                 scales=(1.0, 1.0, 1.0))
                ratio = np.abs(y - truth) / np.maximum(unit, np.finfo(np.float32).tiny)
                for c in range(3):
                    values = ratio[classes == c]
                    if values.size:
                        ratios[k][c].append(rng.choice(values, CALIBRATION_SAMPLE))
            log(f"calibration: {family} SNR {snr}")
    scales = {k: [round(float(np.quantile(np.concatenate(v[c]), 0.95) / 2.0), 2) if v[c]
                  else 1.0 for c in range(3)] for k, v in ratios.items()}
    return {"model": "Denoiser.default(strength='auto')", "ladders": args.ladders,
            "length": args.length, "seed": args.calibration_seed, "snrs": list(args.snrs),
            "families": list(args.families), "target": "95 % of each class within +-2 sigma",
            "classes": ["baseline", "weak core", "strong core"], "scales": scales}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILY_NAMES))
    parser.add_argument("--snrs", nargs="+", type=int, default=list(SNRS))
    parser.add_argument("--ladders", type=int, default=16, help="ladders per family and SNR")
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=5000, help="evaluation seeds start here")
    parser.add_argument("--copies", type=int, default=conf.DEFAULT_COPIES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "figures" / "strength.json")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only rewrite docs/self-check.md's block from this JSON")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure confidence.SCALES instead (docs/figures/"
                             "strength_calibration.json)")
    parser.add_argument("--calibration-seed", type=int, default=1000)
    parser.add_argument("--calibration-copies", nargs="+", type=int, default=[2, 4])
    args = parser.parse_args(argv)
    if args.render:
        write_docs(json.loads(args.render.read_text()))
        return 0
    if args.calibrate:
        payload = calibrate(args, print)
        path = args.json.with_name("strength_calibration.json")
        write_text_atomic(path, json.dumps(payload, indent=1) + "\n")
        print(f"{path}: SCALES = {payload['scales']}")
        return 0
    payload = evaluate(args, print)
    write_text_atomic(args.json, json.dumps(payload, indent=1) + "\n")
    write_docs(payload)
    print(render(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
