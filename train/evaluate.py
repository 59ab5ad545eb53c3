"""Evaluation of denoisers on simulated SNR ladders (METHOD section 7), with classical baselines.

Stable API (the training code calls it for its recipes and ablations)::

    from nmrladder.train.evaluate import evaluate_denoisers

    report = evaluate_denoisers(
        {"unet": denoiser},      # name -> any object with .denoise(x [N, L]) -> [N, L]
        test_data,               # Ladders | path (.h5, or a folder holding ladders.h5)
                                 #   | dict name -> either (several test sets)
        val_data=None,           # same forms (a dict is pooled); tunes the baselines only.
                                 #   None: the first quarter of the first test set tunes them
                                 #   and that set is evaluated on the rest (see report.notes)
        *,
        baselines=True,          # tune and report Savitzky-Golay and line broadening
        tolerance_ppm=0.005,     # peak matching +-tolerance (at least 2 points)
        peak_threshold=4.0,      # detection threshold, in the input's noise sigmas
        n_main_peaks=5,          # peaks whose FWHM, integral and height are compared
        snr_window_ppm=None,     # (ppm_a, ppm_b) window of METHOD 7.1's SNR_out; None: all
        limit=None,              # only the first `limit` ladders of each set (val too)
        plot_dir=None, n_plots=3,
        log=None,                # e.g. print: progress lines
    )
    report.summary[set][method][metric]   -> float, the mean over the set's samples
    report.samples[set][method][metric]   -> float64 [N], per sample
    report.sample_index[set]              -> int [N], the ladders' indices in their data
    report.references[set]                -> dict (input, s_hat and truth figures)
    report.baselines[name]                -> {"params", "val_score", "n_val"}
    report.table(markdown=False); report.to_json(); report.save(directory)

Methods: "noisy input" (the raw rung 0 itself, gain 0 dB by definition), the given
denoisers, then the tuned baselines. Metric names and units: :data:`METRICS`; the report
and its rendering: :mod:`nmrladder.train.eval_report`.

Protocol per ladder i (docs/evaluation.md): the ladder is preprocessed
(:func:`nmrladder.runtime.preprocess.preprocess_ladders`: masks M and B, pseudo-truth s_hat,
estimated shifts, scales and noise). Every method denoises the RAW rung 0 ``x[i, 0]`` as
acquired. Everything else is brought into rung 0's frame and units:

- truth: ``(fourier_shift_real(truth[i], shifts[i, 0]) - norm_offset[i, 0]) / norm_scale[i, 0]``
  (the simulator's exact shift; per region under a non-linear drift), the lines alike
  without the offset;
- s_hat: ``fourier_shift_real(s_hat, +shift_est[0]) / scale_est[0] + offset_est[0]``, the
  inverse of the alignment and re-scaling that made rung 0's aligned copy;
- masks M and B: rolled by ``round(shift_est[0])`` points;
- the truth's peak regions P: ``|lines| >= sigma_0`` dilated by 1 point, without the run of
  the solvent line, sigma_0 the simulator's rung-0 noise std; against s_hat the same rule on
  ``s_hat - median(s_hat_B)`` with the estimated noise std.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.train import metrics
from nmrladder.train.eval_items import (  # the data part, shared with train/baselines.py
    REGION_DILATE,
    REGION_FRACTION,
    EvalItem,
    load_data,
    prepare_items,
)
from nmrladder.train.eval_report import METRICS, RUN_METRICS, EvaluationReport

__all__ = [
    "INPUT_NAME",
    "ORACLE_NAME",
    "METRICS",
    "RUN_METRICS",
    "EvalItem",
    "EvaluationReport",
    "evaluate_denoisers",
    "load_data",
    "prepare_items",
    "sample_metrics",
    "split_validation",
]

#: Name of the row that scores the noisy input itself.
INPUT_NAME = "noisy input"

#: The matching tolerance never falls below this many points (coarse grids, e.g. 13C).
MIN_TOLERANCE_POINTS = 2.0
#: Integral window: the reference peak +- this many times its FWHM.
INTEGRAL_HALF_WIDTHS = 2.0

#: The row of the structure-known least-squares fit (``Ladders.oracle``), where a set has it.
ORACLE_NAME = "structure-known oracle"


# --------------------------------------------------------------------------- data


def split_validation(items: list[EvalItem], fraction: float = 0.25):
    """(validation, rest): the first ``fraction`` of the items (at least one) and the others."""
    if len(items) < 2:
        raise InputError(
            f"{items[0].set_name if items else 'test'}: {len(items)} ladder(s) cannot be split "
            "into validation and test; give a validation set"
        )
    n_val = min(len(items) - 1, max(1, int(round(fraction * len(items)))))
    return items[:n_val], items[n_val:]


def _named_sets(data) -> dict:
    if isinstance(data, Mapping):
        if not data:
            raise InputError("test_data: the dict of test sets is empty")
        return dict(data)
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        return {(path.parent.name if path.name == "ladders.h5" else path.stem) or "test": data}
    return {"test": data}


# --------------------------------------------------------------------------- per-sample metrics


@dataclass(frozen=True)
class _Settings:
    tolerance_ppm: float
    peak_threshold: float
    n_main_peaks: int
    snr_window_ppm: tuple[float, float] | None


@dataclass
class _Reference:
    """A reference spectrum of one item with its peaks, detected once for every method."""

    spectrum: np.ndarray
    region: np.ndarray  # peak regions P
    scale: float  # the L1/L2 unit
    level: float  # baseline level (median over B)
    peaks: metrics.Peaks  # at half the threshold: every peak a detection may land on
    strong: np.ndarray  # bool: the ones at the full threshold (recall counts them)
    main: np.ndarray  # indices into peaks: the n tallest strong peaks, the solvent's aside
    widths: np.ndarray  # FWHM of the main peaks, points
    input_snr: float  # error_snr_db of the noisy input, whole spectrum
    input_snr_peaks: float  # the same inside P


def _reference(item: EvalItem, kind: str, st: _Settings) -> _Reference:
    """The truth (``kind="truth"``) or the pseudo-truth of an item, prepared once."""
    key = ("reference", kind, st)
    if key in item.cache:
        return item.cache[key]
    if kind == "truth":
        spectrum, scale = item.truth, item.sigma_true
        level = metrics.baseline_level(spectrum, item.base_mask)
        region, solvent = item.peak_regions(item.lines, item.sigma_true)
    else:
        spectrum, scale = item.s_hat, item.sigma
        level = metrics.baseline_level(spectrum, item.base_mask)
        region, solvent = item.peak_regions(spectrum - level, item.sigma)
    peaks = metrics.detect_peaks(spectrum, item.sigma, st.peak_threshold / 2, level)
    strong = peaks.above(st.peak_threshold * item.sigma)
    candidates = np.flatnonzero(strong & ~solvent[peaks.indices])
    order = np.argsort(peaks.heights[candidates], kind="stable")[::-1][: st.n_main_peaks]
    main = np.sort(candidates[order])
    widths = np.array([metrics.fwhm(spectrum, int(peaks.indices[j]), level) for j in main])
    ref = _Reference(
        spectrum, region, scale, level, peaks, strong, main, widths,
        input_snr=metrics.error_snr_db(item.noisy, spectrum),
        input_snr_peaks=metrics.error_snr_db(item.noisy, spectrum, region),
    )
    item.cache[key] = ref
    return ref


def _window(item: EvalItem, st: _Settings) -> tuple[int, int] | None:
    if st.snr_window_ppm is None:
        return None
    a, b = ((item.ppm0 - p) / item.ppm_step for p in st.snr_window_ppm)
    start, stop = sorted((a, b))
    return max(0, int(np.ceil(start))), min(item.noisy.size, int(np.floor(stop)) + 1)


def _compare(y: np.ndarray, item: EvalItem, ref: _Reference, st: _Settings) -> dict:
    """Every reference-based metric of output y against one reference (truth or s_hat)."""
    level = metrics.baseline_level(y, item.base_mask)
    snr_all = metrics.error_snr_db(y, ref.spectrum)
    snr_peaks = metrics.error_snr_db(y, ref.spectrum, ref.region)
    detected = metrics.detect_peaks(y, item.sigma, st.peak_threshold, level)
    tolerance = max(st.tolerance_ppm / item.ppm_step, MIN_TOLERANCE_POINTS)
    scores = metrics.peak_scores(detected.positions, ref.peaks.positions, ref.strong, tolerance)
    matched = dict(zip(scores.pairs[1].tolist(), scores.pairs[0].tolist(), strict=True))

    fwhm_err, integral_err = [], []
    for j, width in zip(ref.main, ref.widths, strict=True):
        if j in matched:
            out_width = metrics.fwhm(y, int(detected.indices[matched[j]]), level)
            fwhm_err.append(metrics.relative_error(out_width, width))
        center = float(ref.peaks.positions[j])
        half = max(INTEGRAL_HALF_WIDTHS * width, 2.0) if np.isfinite(width) else 2.0
        integral_err.append(metrics.relative_error(
            metrics.peak_integral(y, center, half, level),
            metrics.peak_integral(ref.spectrum, center, half, ref.level),
        ))
    heights = metrics.height_retention(y, ref.spectrum, ref.peaks.indices[ref.main], level,
                                       ref.level)
    return {
        "snr_db": snr_all,
        "snr_db_peaks": snr_peaks,
        "gain_db": snr_all - ref.input_snr,
        "gain_db_peaks": snr_peaks - ref.input_snr_peaks,
        "precision": scores.precision,
        "recall": scores.recall,
        "f1": scores.f1,
        "pos_err_ppm": scores.position_error * item.ppm_step,
        "false_peaks": float(scores.false_peaks),
        "fwhm_err": _nanmean(fwhm_err),
        "integral_err": _nanmean(integral_err),
        "height_ret": _nanmean(heights),
        "l1": metrics.l1_error(y, ref.spectrum, ref.scale),
        "l2": metrics.l2_error(y, ref.spectrum, ref.scale),
    }


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def sample_metrics(y: np.ndarray, item: EvalItem, settings: _Settings) -> dict[str, float]:
    """Every metric of :data:`METRICS` for output y [L] of one item."""
    y = np.asarray(y, dtype=np.float64)
    values = _compare(y, item, _reference(item, "truth", settings), settings)
    shat = _compare(y, item, _reference(item, "s_hat", settings), settings)
    values.update({f"{k}_shat": v for k, v in shat.items()})
    values["snr_out"] = metrics.snr_out(y, item.peak_mask, item.base_mask,
                                        _window(item, settings))
    return values


# --------------------------------------------------------------------------- the report

# --------------------------------------------------------------------------- evaluation


class _Identity:
    def denoise(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, dtype=np.float32, copy=True)


class _KnownOutputs:
    """The oracle's fits of a test set, served in the set's order as a denoiser's outputs."""

    def __init__(self, outputs: np.ndarray):
        self.outputs = outputs

    def denoise(self, x: np.ndarray) -> np.ndarray:
        if x.shape != self.outputs.shape:
            raise InputError(f"oracle outputs {self.outputs.shape} do not match {x.shape}")
        return self.outputs.astype(np.float32)


def _denoise_set(name: str, denoiser, items: list[EvalItem]) -> tuple[np.ndarray, float]:
    """Outputs [N, L] of one method on a test set and the seconds it took."""
    noisy = np.stack([item.noisy for item in items])
    start = time.perf_counter()
    out = np.asarray(denoiser.denoise(noisy))
    seconds = time.perf_counter() - start
    if out.shape != noisy.shape:
        raise InputError(f"denoiser {name!r} returned shape {out.shape} for input {noisy.shape}")
    if not np.all(np.isfinite(out)):
        raise InputError(f"denoiser {name!r} returned NaN/Inf values")
    return out, seconds


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "method"


def _zoom(item: EvalItem) -> slice:
    """Points around the tallest line away from the solvent (a 50x solvent line flattens
    everything else in a full view)."""
    lines = np.abs(item.lines)
    if np.isfinite(item.solvent_ppm):
        lines = np.where(np.abs(item.ppm - item.solvent_ppm) > 0.3, lines, 0.0)
    center = int(np.argmax(lines))
    half = max(item.noisy.size // 32, 64)
    start = min(max(0, center - half), max(0, item.noisy.size - 2 * half))
    return slice(start, start + 2 * half)


def _plot(plot_dir: Path, set_name: str, method: str, item: EvalItem, y: np.ndarray,
          values: dict) -> None:
    """The whole spectrum and a zoom on its tallest non-solvent line (two PNGs)."""
    from nmrladder.runtime.plots import plot_denoised

    title = (f"{set_name} #{item.index}, {method}: gain {values['gain_db']:+.1f} dB, "
             f"in peak regions {values['gain_db_peaks']:+.1f} dB (rung-0 SNR {item.snr:.3g})")
    stem = plot_dir / _slug(set_name) / f"{_slug(method)}_{item.index:05d}"
    ppm = item.ppm
    plot_denoised(item.noisy, y, stem.with_suffix(".png"), truth=item.truth, ppm=ppm,
                  title=title)
    view = _zoom(item)
    plot_denoised(item.noisy[view], y[view], Path(f"{stem}_zoom.png"), truth=item.truth[view],
                  ppm=ppm[view], title=title)


def _references(items: list[EvalItem], settings: _Settings) -> dict:
    """Figures of the input, s_hat and the truth themselves (no denoiser involved)."""
    def mean(f):
        return _nanmean([f(it) for it in items])

    return {
        "n": len(items),
        "length": int(items[0].noisy.size),
        "snr_input": mean(lambda it: it.snr),
        "sigma_est_over_true": mean(lambda it: it.sigma / it.sigma_true),
        "input_snr_db": mean(lambda it: metrics.error_snr_db(it.noisy, it.truth)),
        "input_snr_db_peaks": mean(
            lambda it: metrics.error_snr_db(it.noisy, it.truth, it.region)),
        "s_hat_snr_db": mean(lambda it: metrics.error_snr_db(it.s_hat, it.truth)),
        "s_hat_snr_db_peaks": mean(
            lambda it: metrics.error_snr_db(it.s_hat, it.truth, it.region)),
        "snr_out_truth": mean(lambda it: metrics.snr_out(
            it.truth, it.peak_mask, it.base_mask, _window(it, settings))),
        "snr_out_s_hat": mean(lambda it: metrics.snr_out(
            it.s_hat, it.peak_mask, it.base_mask, _window(it, settings))),
        "true_peaks_per_spectrum": mean(
            lambda it: float(_reference(it, "truth", settings).strong.sum())),
    }


def _tuned_baselines(val_items: list[EvalItem], log) -> tuple[dict, dict]:
    from nmrladder.train.baselines import BASELINES

    tuned, info = {}, {}
    for name, cls in BASELINES.items():
        start = time.perf_counter()
        denoiser = cls.tune(val_items)
        tuned[name] = denoiser
        info[name] = {"params": denoiser.params(), "val_score": denoiser.tuning["score"],
                      "n_val": denoiser.tuning["n_val"]}
        if log:
            log(f"tuned {name}: {denoiser!r}, validation peak-region gain "
                f"{denoiser.tuning['score']:+.2f} dB ({time.perf_counter() - start:.1f} s)")
    return tuned, info


def _validation_items(item_sets: dict, val_data, limit, notes: list[str]) -> list[EvalItem]:
    """The items that tune the baselines: val_data, or the first quarter of the first test
    set (which then loses them, for every method)."""
    if val_data is not None:
        return [item for name, data in _named_sets(val_data).items()
                for item in prepare_items(data, f"validation {name}", limit, notes)]
    first = next(iter(item_sets))
    val_items, item_sets[first] = split_validation(item_sets[first])
    notes.append(
        f"no validation set given: the baselines were tuned on the first {len(val_items)} "
        f"ladders of {first!r}, which is evaluated on the other {len(item_sets[first])}"
    )
    return val_items


def _evaluate_method(set_name: str, method: str, denoiser, items: list[EvalItem],
                     settings: _Settings, plot_dir: Path | None, n_plots: int):
    """(means, per-sample values) of one method on one test set; plots when asked."""
    outputs, seconds = _denoise_set(method, denoiser, items)
    rows = [sample_metrics(y, item, settings) for y, item in zip(outputs, items, strict=True)]
    per_sample = {k: np.array([row[k] for row in rows]) for k in METRICS}
    means = {k: _nanmean(v) for k, v in per_sample.items()}
    means["seconds_per_spectrum"] = seconds / len(items)
    if plot_dir is not None:
        for n in range(min(n_plots, len(items))):
            _plot(plot_dir, set_name, method, items[n], outputs[n], rows[n])
    return means, per_sample


def evaluate_denoisers(
    denoisers: Mapping[str, object],
    test_data,
    val_data=None,
    *,
    baselines: bool = True,
    tolerance_ppm: float = 0.005,
    peak_threshold: float = 4.0,
    n_main_peaks: int = 5,
    snr_window_ppm: tuple[float, float] | None = None,
    limit: int | None = None,
    plot_dir: str | os.PathLike | None = None,
    n_plots: int = 3,
    log: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Score denoisers (and the tuned baselines) on simulated test ladders; see the module
    docstring for the arguments, the protocol and the report."""
    reserved = {INPUT_NAME, ORACLE_NAME} | (_baseline_names() if baselines else set())
    clash = sorted(set(denoisers) & reserved)
    if clash:
        raise InputError(f"denoiser name(s) {clash} are reserved for the report's own rows")
    settings = _Settings(float(tolerance_ppm), float(peak_threshold), int(n_main_peaks),
                         None if snr_window_ppm is None else tuple(map(float, snr_window_ppm)))
    notes: list[str] = []
    item_sets = {name: prepare_items(data, name, limit, notes)
                 for name, data in _named_sets(test_data).items()}

    methods: dict[str, object] = {INPUT_NAME: _Identity(), **denoisers}
    baseline_info: dict = {}
    if baselines:
        val_items = _validation_items(item_sets, val_data, limit, notes)
        tuned, baseline_info = _tuned_baselines(val_items, log)
        methods.update(tuned)

    summary, samples, sample_index, references = {}, {}, {}, {}
    for set_name, items in item_sets.items():
        sample_index[set_name] = np.array([item.index for item in items])
        references[set_name] = _references(items, settings)
        summary[set_name], samples[set_name] = {}, {}
        set_methods = dict(methods)
        if all(item.oracle is not None for item in items):
            set_methods[ORACLE_NAME] = _KnownOutputs(np.stack([item.oracle for item in items]))
        for method, denoiser in set_methods.items():
            summary[set_name][method], samples[set_name][method] = _evaluate_method(
                set_name, method, denoiser, items, settings,
                None if plot_dir is None or method == INPUT_NAME else Path(plot_dir), n_plots,
            )
            if log:
                values = summary[set_name][method]
                log(f"{set_name}: {method}: gain {values['gain_db']:+.2f} dB, peak regions "
                    f"{values['gain_db_peaks']:+.2f} dB, F1 {values['f1']:.3f}")
        ceiling = summary[set_name].get(ORACLE_NAME, {}).get("gain_db_peaks", math.nan)
        for values in summary[set_name].values():
            values["to_oracle_db_peaks"] = values["gain_db_peaks"] - ceiling

    return EvaluationReport(
        summary=summary,
        samples=samples,
        sample_index=sample_index,
        references=references,
        baselines=baseline_info,
        settings={
            "tolerance_ppm": settings.tolerance_ppm,
            "min_tolerance_points": MIN_TOLERANCE_POINTS,
            "peak_threshold_sigma": settings.peak_threshold,
            "weak_peak_threshold_sigma": settings.peak_threshold / 2,
            "n_main_peaks": settings.n_main_peaks,
            "integral_half_width_fwhm": INTEGRAL_HALF_WIDTHS,
            "snr_window_ppm": settings.snr_window_ppm,
            "peak_region": (f"|lines| >= {REGION_FRACTION} sigma_0, dilated {REGION_DILATE} "
                            "point(s), without the solvent line's run"),
            "limit": limit,
        },
        notes=notes,
    )


def _baseline_names() -> set[str]:
    from nmrladder.train.baselines import BASELINES

    return set(BASELINES)
