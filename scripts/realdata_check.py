#!/usr/bin/env python
"""Models on real spectra: before/after plots per nucleus, and a no-truth check on every real
series of ../shared/realdata (the denoised low-scan spectrum against the co-added one).

    scripts/realdata_check.py --realdata ../shared/realdata \\
        --model "all-nucleus=models/families/model.int8.onnx" \\
        --model "shipped 1H=runtime/models/default.int8.onnx" --json docs/figures/realdata.json

Spectra are read and, where only a FID exists, processed by the runtime's own readers
(runtime/io.py, runtime/fid.py), as ``nmrladder denoise`` does. A series' FIDs are processed
with one shared phase (the automatic phase of their co-add): the single FID (or experiment)
is the input, the mean of all of them the pseudo-truth, whose own noise is sqrt(N) times
lower. Reported per series and model: the error-SNR gain in dB against the pseudo-truth,
everywhere and inside its peak regions (points where the pseudo-truth stands 5 of the
input's noise sigmas above its median), and the line-height ratio at the five tallest peaks.
The Bruker erythrocyte series are time courses (their lines change between experiments),
so their pseudo-truth is only approximate. ``--render JSON`` rewrites the block between
``<!-- realdata:begin -->`` and ``<!-- realdata:end -->`` of docs/default-model.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from docblock import replace_block

from nmrladder.runtime.atomic import write_text_atomic

DOC = Path(__file__).resolve().parents[1] / "docs" / "default-model.md"
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"

# One real spectrum per nucleus for the before/after plots (realdata-relative paths).
SINGLES = {
    "1H 400 MHz (Bruker FID)": "1h_400mhz_dpg_bruker_nmrpy/1",
    "1H 80 MHz benchtop (Spinsolve FID)":
        "1h_benchtop_80mhz_spinsolve_nmrpy/1D_exp_1_20240725-103717/data.1d",
    "13C (JCAMP-DX FID, 122 scans)": "13c_glucose_150mhz_nmr-dataset1/13c.fid.dx",
    "19F (JCAMP-DX FID)": "19f_bromofluoronitroaniline_nmr-dataset1/19f.dx",
    "31P (JCAMP-DX FID)": "31p_phosphineoxide_202mhz_nmr-dataset1/31p.fid.dx",
}
ERYTHROCYTES = "13c_31p_1h_series_erythrocytes_600mhz_nmrpy"
# Series: name -> (kind, location, experiments for the Bruker series).
SERIES = {
    "31P reaction array (Varian, 24 x 12 scans)":
        ("varian", "31p_array_pgi_reaction_varian_nmrpy/test1.fid", None),
    "13C erythrocytes (Bruker, 8 experiments)": ("bruker", ERYTHROCYTES, range(1, 23, 3)),
    "31P erythrocytes (Bruker, 8 experiments)": ("bruker", ERYTHROCYTES, range(2, 24, 3)),
}


def _noise_sigma(x: np.ndarray) -> float:
    """Robust noise of a spectrum: the MAD of its first differences / sqrt(2)."""
    d = np.diff(x)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def _error_db(y: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(truth[where] ** 2) / np.sum((y - truth)[where] ** 2)))


def _series_fids(realdata: Path, kind: str, location: str, experiments):
    from nmrladder.runtime.bruker_fid import read_bruker_fid_raw
    from nmrladder.runtime.vendors import read_varian_fids

    if kind == "varian":
        fids, params, _ = read_varian_fids(realdata / location)
        return fids, params
    rows, params = [], None
    for expno in experiments:
        fid, params, _ = read_bruker_fid_raw(realdata / location / str(expno))
        rows.append(fid)
    size = min(row.size for row in rows)
    return np.stack([row[:size] for row in rows]), params


def _denoisers(models: dict[str, str]):
    from nmrladder.runtime import Denoiser

    return {name: Denoiser(path) for name, path in models.items()}


def check_series(realdata: Path, denoisers: dict) -> dict:
    from nmrladder.runtime.fid import process_fids

    results = {}
    for name, (kind, location, experiments) in SERIES.items():
        fids, params = _series_fids(realdata, kind, location, experiments)
        spectra, _, _ = process_fids(fids, params)  # one phase: the co-add's
        low, truth = spectra[0], spectra.mean(axis=0)
        sigma = _noise_sigma(low)
        peaks = truth - np.median(truth) > 5 * sigma
        tallest = np.argsort(truth)[-5:]
        row = {"fids": int(fids.shape[0]), "points": int(low.size),
               "input_snr_db": _error_db(low, truth, np.ones_like(peaks)),
               "input_snr_db_peaks": _error_db(low, truth, peaks), "models": {}}
        for model, den in denoisers.items():
            y = den.denoise(low.astype(np.float32)).astype(np.float64)
            row["models"][model] = {
                "gain_db": _error_db(y, truth, np.ones_like(peaks)) - row["input_snr_db"],
                "gain_db_peaks": _error_db(y, truth, peaks) - row["input_snr_db_peaks"],
                "height_ratio": float(np.median(y[tallest] / truth[tallest])),
            }
        results[name] = row
        print(name, json.dumps(row["models"]))
    return results


def plot_singles(realdata: Path, denoisers: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nmrladder.runtime.io import read_spectrum

    FIGURES.mkdir(parents=True, exist_ok=True)
    written = {}
    for label, rel in SINGLES.items():
        spectrum = read_spectrum(realdata / rel)
        x = np.asarray(spectrum.intensities, dtype=np.float32)
        ppm = spectrum.ppm if spectrum.ppm is not None else np.arange(x.size)
        outputs = {name: den.denoise(x) for name, den in denoisers.items()}
        sigma, base = _noise_sigma(x), float(np.median(x))
        fig, axes = plt.subplots(2, 1, figsize=(9, 6), dpi=80)
        for ax in axes:
            ax.plot(ppm, x, lw=0.6, color="0.6", label="input")
            for name, y in outputs.items():
                ax.plot(ppm, y, lw=0.8, label=name)
            ax.invert_xaxis()
            ax.set_xlabel("ppm")
        # The lower panel: the noise floor and the weak lines, -10 to +40 noise sigmas.
        axes[1].set_ylim(base - 10 * sigma, base + 40 * sigma)
        axes[1].set_title("the same, -10 to +40 input noise sigmas", fontsize=9)
        axes[0].set_title(f"{label}: {rel}")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        path = FIGURES / f"realdata_{label.split()[0].lower()}_{len(written)}.png"
        fig.savefig(path)
        plt.close(fig)
        written[label] = {"file": rel, "plot": str(path.relative_to(DOC.parent))}
    return written


def render(payload: dict) -> str:
    lines = ["Generated by `scripts/realdata_check.py --render` from its JSON; models: "
             + ", ".join(f"`{n}` ({p})" for n, p in payload["models"].items()) + ".", "",
             "No-truth check: the first FID (or experiment) of each series denoised, against "
             "the mean of all of them (one shared phase). Gains in dB of error-SNR against that "
             "pseudo-truth; (P): in its peak regions.", "",
             "| series | model | gain dB | gain dB (P) | height ratio |", "|---|---|---|---|---|"]
    for name, row in payload["series"].items():
        for model, v in row["models"].items():
            lines.append(f"| {name} | {model} | {v['gain_db']:+.2f} | {v['gain_db_peaks']:+.2f} "
                         f"| {v['height_ratio']:.3f} |")
    lines += ["", "Before and after, one real spectrum per nucleus:", ""]
    for label, info in payload["plots"].items():
        lines.append(f"- {label} (`{info['file']}`): ![{label}]({info['plot']})")
    return "\n".join(lines)


def write_docs(payload: dict) -> None:
    replace_block(DOC, "realdata", render(payload))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--realdata", type=Path, default=Path("../shared/realdata"))
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--render", type=Path, metavar="JSON")
    args = parser.parse_args(argv)
    if args.render:
        write_docs(json.loads(args.render.read_text()))
        return 0
    if not args.model:
        parser.error("give at least one --model NAME=PATH (or --render JSON)")
    models = dict(spec.split("=", 1) for spec in args.model)
    denoisers = _denoisers(models)
    payload = {"models": models, "series": check_series(args.realdata, denoisers),
               "plots": plot_singles(args.realdata, denoisers)}
    if args.json:
        write_text_atomic(args.json, json.dumps(payload, indent=1) + "\n")
        write_docs(payload)
    print(render(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
