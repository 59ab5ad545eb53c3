"""The evaluation's report (:class:`EvaluationReport`) and the metrics it names.

:data:`METRICS` (per sample) and :data:`RUN_METRICS` (per method run) define every column,
with its unit; :func:`nmrladder.train.evaluate.evaluate_denoisers` computes them and returns
the report, which renders them: a text or markdown table per test set (against the truth,
then against s_hat), CSV of the means and of every sample, JSON, and a folder of all of
these (written atomically).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.runtime.table import format_table

__all__ = ["METRICS", "RUN_METRICS", "EvaluationReport"]

_REFERENCE_METRICS = {
    "snr_db": "error-based SNR of the output, 10 log10(sum t^2 / sum (y - t)^2), dB",
    "snr_db_peaks": "the same inside the reference's peak regions P, dB",
    "gain_db": "snr_db(output) - snr_db(input), dB (whole spectrum)",
    "gain_db_peaks": "the same inside the peak regions, dB (decides)",
    "precision": "matched detections / detections",
    "recall": "matched strong reference peaks / strong reference peaks",
    "f1": "harmonic mean of precision and recall",
    "pos_err_ppm": "mean |detected - reference| position of matched strong peaks, ppm",
    "false_peaks": "detections matched to no reference peak, per spectrum",
    "fwhm_err": "mean |FWHM_out - FWHM_ref| / FWHM_ref over the matched main peaks "
                "(the n tallest strong reference peaks, the solvent's aside)",
    "integral_err": "mean |I_out - I_ref| / |I_ref| over the main peaks (+-2 FWHM windows)",
    "height_ret": "mean (y - base_y)[p] / (ref - base_ref)[p] at the main peaks",
    "l1": "mean |y - ref| / sigma_0 (input noise std)",
    "l2": "sqrt(mean (y - ref)^2) / sigma_0",
}

#: Every per-sample metric: name -> definition and unit. "_shat" names compare against the
#: pseudo-truth s_hat (and its own peak regions) instead of the truth.
METRICS: dict[str, str] = {
    **_REFERENCE_METRICS,
    **{f"{name}_shat": f"{text} (against s_hat)" for name, text in _REFERENCE_METRICS.items()},
    "snr_out": "METHOD 7.1: (P95(y_M) - median(y_B)) / std(y_B) in the fixed window",
}

#: Figures of a whole method run, in the summary only.
RUN_METRICS: dict[str, str] = {
    "seconds_per_spectrum": "wall time of .denoise on the whole test set / its spectra, s",
    "to_oracle_db_peaks": "gain_db_peaks minus the structure-known oracle's (test sets "
                          "simulated with --oracle), dB: the distance to the ceiling",
}


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return _finite_or_none(value)


# Table columns: (title, summary key, format, factor).
_TRUTH_COLUMNS = [
    ("gain dB", "gain_db", "{:+.2f}", 1.0),
    ("gain dB (P)", "gain_db_peaks", "{:+.2f}", 1.0),
    ("SNR_out", "snr_out", "{:.1f}", 1.0),
    ("P", "precision", "{:.3f}", 1.0),
    ("R", "recall", "{:.3f}", 1.0),
    ("F1", "f1", "{:.3f}", 1.0),
    ("pos err ppm", "pos_err_ppm", "{:.5f}", 1.0),
    ("FWHM err", "fwhm_err", "{:.3f}", 1.0),
    ("integral err", "integral_err", "{:.3f}", 1.0),
    ("height ret", "height_ret", "{:.3f}", 1.0),
    ("false/spec", "false_peaks", "{:.2f}", 1.0),
    ("L1/sigma0", "l1", "{:.3f}", 1.0),
    ("L2/sigma0", "l2", "{:.3f}", 1.0),
]
_SHAT_COLUMNS = [(title, f"{key}_shat", fmt, factor)
                 for title, key, fmt, factor in _TRUTH_COLUMNS if key != "snr_out"]
_TRUTH_COLUMNS.append(("to oracle dB (P)", "to_oracle_db_peaks", "{:+.2f}", 1.0))
_TRUTH_COLUMNS.append(("ms/spec", "seconds_per_spectrum", "{:.2f}", 1000.0))


def _cell(value: float | None, fmt: str, factor: float) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return fmt.format(factor * value)


def _reference_line(ref: dict) -> str:
    return (
        f"input error-SNR {ref['input_snr_db']:.1f} dB (in P {ref['input_snr_db_peaks']:.1f}); "
        f"s_hat {ref['s_hat_snr_db']:.1f} dB (in P {ref['s_hat_snr_db_peaks']:.1f}); "
        f"SNR_out of the truth {ref['snr_out_truth']:.1f}, of s_hat {ref['snr_out_s_hat']:.1f}; "
        f"{ref['true_peaks_per_spectrum']:.2f} true peaks per spectrum above the threshold"
    )


@dataclass
class EvaluationReport:
    """Results of :func:`~nmrladder.train.evaluate.evaluate_denoisers`; its module docstring
    lists the fields."""

    summary: dict[str, dict[str, dict[str, float]]]
    samples: dict[str, dict[str, dict[str, np.ndarray]]]
    sample_index: dict[str, np.ndarray]
    references: dict[str, dict[str, float]]
    baselines: dict[str, dict]
    settings: dict
    notes: list[str]

    @property
    def methods(self) -> list[str]:
        """Method names in report order (the same in every test set)."""
        first = next(iter(self.summary.values()), {})
        return list(first)

    def table(self, markdown: bool = False) -> str:
        """Per test set: the metrics against the truth, then against s_hat (means)."""
        blocks = []
        for set_name, by_method in self.summary.items():
            ref = self.references[set_name]
            heading = (
                f"test set {set_name!r}: {ref['n']} spectra, rung-0 SNR {ref['snr_input']:.3g} "
                f"(peak height / noise std), length {ref['length']}"
            )
            for label, columns in (("against the truth", _TRUTH_COLUMNS),
                                   ("against the pseudo-truth s_hat", _SHAT_COLUMNS)):
                rows = [
                    [method, *(_cell(values.get(key), fmt, factor)
                               for _, key, fmt, factor in columns)]
                    for method, values in by_method.items()
                ]
                headers = ["method", *(column[0] for column in columns)]
                title = f"{heading}; {label}"
                if columns is _TRUTH_COLUMNS:
                    title += "\n" + _reference_line(ref)
                blocks.append(("### " if markdown else "") + title + "\n\n"
                              + format_table(headers, rows, markdown=markdown))
        return "\n\n".join(blocks)

    def _summary_rows(self) -> list[list]:
        names = [*METRICS, *RUN_METRICS]
        return [
            [set_name, method, *(values.get(k, float("nan")) for k in names)]
            for set_name, by_method in self.summary.items()
            for method, values in by_method.items()
        ]

    def _csv(self, header: list[str], rows: list[list]) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        return buffer.getvalue()

    def summary_csv(self) -> str:
        """One row per (test set, method): the mean of every metric."""
        return self._csv(["set", "method", *METRICS, *RUN_METRICS], self._summary_rows())

    def samples_csv(self) -> str:
        """One row per (test set, method, sample): every metric."""
        names = list(METRICS)
        rows = []
        for set_name, by_method in self.samples.items():
            index = self.sample_index[set_name]
            for method, values in by_method.items():
                for n, sample in enumerate(index):
                    rows.append([set_name, method, int(sample),
                                 *(float(values[k][n]) for k in names)])
        return self._csv(["set", "method", "sample", *names], rows)

    def to_json(self) -> str:
        """Settings, notes, tuned baselines, references, metric definitions and the means."""
        return json.dumps(_jsonable({
            "settings": self.settings,
            "notes": self.notes,
            "baselines": self.baselines,
            "references": self.references,
            "metrics": {**METRICS, **RUN_METRICS},
            "summary": self.summary,
        }), indent=2)

    def markdown(self) -> str:
        """The report as a markdown document (tables, tuned baselines, notes, settings)."""
        lines = ["# nmrladder evaluation", "", self.table(markdown=True), ""]
        if self.baselines:
            lines += ["## Baselines (tuned on the validation data)", ""]
            for name, info in self.baselines.items():
                params = ", ".join(f"{k}={v:g}" for k, v in info["params"].items())
                lines.append(f"- {name}: {params} (validation peak-region gain "
                             f"{info['val_score']:+.2f} dB on {info['n_val']} spectra)")
            lines.append("")
        if self.notes:
            lines += ["## Notes", "", *(f"- {note}" for note in self.notes), ""]
        lines += ["## Settings", "", *(f"- {k}: {v}" for k, v in self.settings.items()), ""]
        lines += ["Metric definitions: docs/evaluation.md; columns: means over the spectra."]
        return "\n".join(lines) + "\n"

    def save(self, directory: str | os.PathLike) -> dict[str, Path]:
        """Write report.md, summary.csv, samples.csv and report.json (each atomically)."""
        out = Path(directory)
        files = {
            "markdown": (out / "report.md", self.markdown()),
            "summary_csv": (out / "summary.csv", self.summary_csv()),
            "samples_csv": (out / "samples.csv", self.samples_csv()),
            "json": (out / "report.json", self.to_json() + "\n"),
        }
        for path, text in files.values():
            write_text_atomic(path, text)
        return {key: path for key, (path, _) in files.items()}
