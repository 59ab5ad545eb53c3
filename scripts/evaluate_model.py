#!/usr/bin/env python
"""Score an exported model on the held-out sets of scripts/simulate_sets.sh and on spectra
unlike its training distribution; print the tables and save them as JSON (and markdown).

    scripts/evaluate_model.py runtime/models/default.onnx --data /tmp/d --residual-lb \\
        --json runtime/models/default.json --markdown /tmp/default_eval.md
    scripts/evaluate_model.py runs/cpu --data /tmp/d --skip-ood --residual-lb   # + that row

In distribution: rung-0 SNR 5, 10 and 50 (1H preset, 60-800 MHz, lines 0.3-5 Hz), the
baselines tuned on the matching validation set. Out of distribution, at rung-0 SNR 5 (the
baselines tuned on the first quarter of each set, scored on the rest): 13C-like and
19F-like spectra (simulate_sets.sh), a 1.0-1.2 GHz spectrometer, broad lines (5-15 Hz) and
a solvent line 100-500 times the tallest peak; none of these settings was trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.runtime.residual import DEFAULT_FACTOR, ResidualBroadening, factor_argument
from nmrladder.train.evaluate import evaluate_denoisers
from nmrladder.train.inference import load_denoiser
from nmrladder.train.simulate import simulate_ladders

HEADLINE = ("gain_db", "gain_db_peaks", "precision", "recall", "f1", "height_ret",
            "integral_err", "false_peaks", "seconds_per_spectrum")

# Simulator settings outside the training distribution (keyword options of simulate_ladders).
OOD_SIMULATED = {
    "1H 1.0-1.2 GHz": {"mhz_range": (1000.0, 1200.0)},
    "1H broad lines 5-15 Hz": {"linewidth_hz": (5.0, 15.0)},
    "1H solvent 100-500x": {"solvent_probability": 1.0, "solvent_height": (100.0, 500.0)},
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an .onnx artefact or a RUN folder")
    parser.add_argument("--data", type=Path, required=True,
                        help="the folder scripts/simulate_sets.sh wrote")
    parser.add_argument("--limit", type=int, default=200, help="ladders per test set (200)")
    parser.add_argument("--ood-samples", type=int, default=100,
                        help="ladders per out-of-distribution set (100)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    parser.add_argument("--plots", type=Path, default=None, help="plot a few spectra here")
    parser.add_argument("--skip-ood", action="store_true")
    parser.add_argument("--residual-lb", type=factor_argument, nargs="?", const=DEFAULT_FACTOR,
                        default=None, metavar="FACTOR",
                        help="add the model followed by the residual step (amplitude re-fit and "
                             f"residual line broadening, {DEFAULT_FACTOR:g})")
    args = parser.parse_args(argv)

    denoiser = load_denoiser(args.model, batch_size=8)
    name = "nmrladder"
    denoisers = {name: denoiser}
    if args.residual_lb is not None:
        denoisers[f"{name} + residual LB"] = ResidualBroadening(denoiser, args.residual_lb)
    tables, summary = [], {}
    for snr in (5, 10, 50):
        report = evaluate_denoisers(
            denoisers, {f"SNR {snr}": args.data / f"test_snr{snr}"},
            args.data / f"val_snr{snr}", limit=args.limit, log=print,
            plot_dir=args.plots, n_plots=2,
        )
        tables.append(report.table(markdown=True))
        summary.update(_headline(report))
    if not args.skip_ood:
        sets = {f"{nucleus} SNR 5": args.data / f"ood_{nucleus}_snr5" for nucleus in ("13C", "19F")}
        for label, options in OOD_SIMULATED.items():
            sets[f"{label} SNR 5"] = simulate_ladders(args.ood_samples, 4, 16384, 2.0, 5.0,
                                                      seed=500, workers=2, **options)
        for set_name, data in sets.items():
            report = evaluate_denoisers(denoisers, {set_name: data}, None,
                                        limit=args.ood_samples, log=print)
            tables.append(report.table(markdown=True))
            summary.update(_headline(report))
    text = "\n\n".join(tables)
    print(text)
    if args.markdown:
        write_text_atomic(args.markdown, text + "\n")
    if args.json:
        payload = {"model": str(args.model), "metrics": summary,
                   "protocol": "scripts/evaluate_model.py; docs/evaluation.md"}
        write_text_atomic(args.json, json.dumps(payload, indent=1) + "\n")
    return 0


def _headline(report) -> dict:
    out = {}
    for set_name, methods in report.summary.items():
        out[set_name] = {method: {k: _round(values.get(k)) for k in HEADLINE}
                         for method, values in methods.items()}
    return out


def _round(value):
    return None if value is None else round(float(value), 4)


if __name__ == "__main__":
    sys.exit(main())
