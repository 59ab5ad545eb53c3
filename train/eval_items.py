"""The evaluation's data: test ladders as :class:`EvalItem`, in the frame and units of their
raw rung 0 (the protocol is in train/evaluate.py's docstring and docs/evaluation.md).

Its own module so that the evaluation (train/evaluate.py) and the baselines' tuning
(train/baselines.py) both read ladders the same way without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.train import metrics

__all__ = ["REGION_DILATE", "REGION_FRACTION", "SOLVENT_REACH", "EvalItem", "load_data",
           "prepare_items"]

#: Peak regions P: where the lines reach rung 0's noise std (this fraction of it) ...
#: On P an all-zero output errs by |t| >= sigma_0 per point, at least the input's expected
#: error, so it cannot gain there; with 0.25 sigma_0 the line tails and weak lines, where the
#: signal is below the noise, let it gain several dB at SNR 3-5 (docs/evaluation.md).
REGION_FRACTION = 1.0
#: ... dilated by this many points (the crossing points at the line feet) ...
REGION_DILATE = 1
#: ... without the run of the solvent line (the one touching its position +- this many
#: points): 5-50x the tallest peak, it would own the squared error inside P, and any
#: broadening of it would cost more than the noise removed from every solute line.
SOLVENT_REACH = 3


@dataclass
class EvalItem:
    """One test ladder, in the frame and units of its raw rung 0 (what a user has).

    noisy: the raw rung 0 as acquired, float32 [L]; truth: the noise-free rung-0 content
    (lines, baseline, normalisation offset); lines: the lines alone; s_hat: the pseudo-truth;
    peak_mask / base_mask: M and B of the preprocessing; region: the truth's peak regions P;
    sigma: rung 0's noise std estimated by the preprocessing; sigma_true: the simulator's;
    ppm0, ppm_step: ``ppm[i] = ppm0 - i * ppm_step``; snr: the simulator's rung-0 SNR;
    solvent_ppm: the solvent line's position (NaN without one); solvent_index: where rung 0
    holds it (points, drift included); oracle: the structure-known oracle's fit of rung 0 in
    its frame and units (None where the data set was simulated without it).
    """

    set_name: str
    index: int
    noisy: np.ndarray
    truth: np.ndarray
    lines: np.ndarray
    s_hat: np.ndarray
    peak_mask: np.ndarray
    base_mask: np.ndarray
    region: np.ndarray
    sigma: float
    sigma_true: float
    ppm0: float
    ppm_step: float
    snr: float = float("nan")
    solvent_ppm: float = float("nan")
    solvent_index: float = float("nan")
    oracle: np.ndarray | None = None
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def ppm(self) -> np.ndarray:
        """ppm of every point (decreasing with index, the NMR way)."""
        return self.ppm0 - np.arange(self.noisy.size) * self.ppm_step

    def peak_regions(self, lines: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """(P, solvent) of a line spectrum in this item's frame: P = ``|lines| >= sigma``
        (REGION_FRACTION), dilated by REGION_DILATE points, without the solvent line's run,
        which comes back as the second mask (empty without a solvent)."""
        region = metrics.peak_regions(lines, sigma, REGION_FRACTION, REGION_DILATE)
        solvent = np.zeros_like(region)
        if np.isfinite(self.solvent_index):
            at = int(round(self.solvent_index))
            solvent = metrics.runs_touching(region, at - SOLVENT_REACH, at + SOLVENT_REACH + 1)
        return region & ~solvent, solvent


def load_data(data, limit: int | None = None):
    """A Ladders object from a Ladders object, an .h5 file or a folder holding ladders.h5."""
    from nmrladder.train.simulate import Ladders, open_ladders

    if isinstance(data, Ladders):
        return data if limit is None else _first(data, limit)
    path = Path(data)
    if path.is_dir():
        path = path / "ladders.h5"
    if not path.is_file():
        raise InputError(f"{data}: no such ladder file (give an .h5 or a folder with ladders.h5)")
    with open_ladders(path) as lf:
        stop = len(lf) if limit is None else min(len(lf), int(limit))
        return lf.read(slice(0, stop))


def _first(ladders, n: int):
    """The first n ladders of a Ladders object (every per-sample array sliced)."""
    n = min(int(n), len(ladders))
    values = {}
    for f in dataclass_fields(ladders):
        value = getattr(ladders, f.name)
        if f.name == "acq":
            value = {k: v[:n] for k, v in value.items()}
        elif isinstance(value, np.ndarray):
            value = value[:n]
        values[f.name] = value
    return type(ladders)(**values)


def _preprocess(x: np.ndarray, name: str, notes: list[str]) -> list:
    """LadderResult per ladder (None where the preprocessing refuses it, with a note)."""
    from nmrladder.runtime.preprocess import preprocess_ladder, preprocess_ladders

    try:
        batch = preprocess_ladders(x, name=name)
        return [batch[i] for i in range(len(batch))]
    except InputError:
        pass  # one ladder failed: redo them one by one to keep the others
    results = []
    for i, ladder in enumerate(x):
        try:
            results.append(preprocess_ladder(ladder, name=f"{name}[{i}]"))
        except InputError as err:
            notes.append(f"{name}[{i}] skipped: {err}")
            results.append(None)
    return results


def _rung0_truth(ladders, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth and lines of ladder i in rung 0's frame and units (float64 [L] each)."""
    from nmrladder.train.simulate import fourier_shift_real

    content = ladders.shifted_truth(i)[0]  # exact: per region under a non-linear drift
    baseline = fourier_shift_real(
        ladders.truth[i].astype(np.float64) - ladders.truth_peaks[i], ladders.shifts[i, 0]
    )  # the baseline follows the global shift
    scale, offset = ladders.norm_scale[i, 0], ladders.norm_offset[i, 0]
    return (content - offset) / scale, (content - baseline) / scale


def _rung0_pseudo_truth(result) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """s_hat, M and B of a LadderResult carried from the top rung's frame to rung 0's.

    The inverse of rung 0's alignment and re-scaling, ``shift(s_hat, +d_0) / s_0 + offset_0``.
    The shift is the band-limited Fourier shift rather than the preprocessing's linear
    interpolation: s_hat is mostly the un-interpolated top rung, and a second linear
    interpolation would flatten lines a few points wide (the peak-region error it costs:
    docs/evaluation.md).
    """
    from nmrladder.train.simulate import fourier_shift_real

    shift = float(result.shifts[0])
    s_hat = fourier_shift_real(np.asarray(result.s_hat, dtype=np.float64), shift)
    s_hat = s_hat / result.scales[0] + result.offsets[0]
    roll = int(round(shift))
    return s_hat, np.roll(result.peak_mask, roll), np.roll(result.base_mask, roll)


def prepare_items(data, name: str = "test", limit: int | None = None,
                  notes: list[str] | None = None) -> list[EvalItem]:
    """The :class:`EvalItem` of every ladder of ``data`` (see :func:`load_data`)."""
    ladders = load_data(data, limit)
    notes = [] if notes is None else notes
    results = _preprocess(ladders.x, name, notes)
    items = []
    for i, result in enumerate(results):
        if result is None:
            continue
        truth, lines = _rung0_truth(ladders, i)
        s_hat, peak_mask, base_mask = _rung0_pseudo_truth(result)
        sigma_true = float(ladders.noise_sigma[i, 0] / abs(ladders.norm_scale[i, 0]))
        ppm0 = float(ladders.acq["ppm0"][i])
        ppm_step = float(ladders.acq["sw_ppm"][i]) / ladders.length
        solvent_ppm = float(ladders.acq["solvent_ppm"][i])
        item = EvalItem(
            set_name=name,
            index=i,
            noisy=np.asarray(ladders.x[i, 0], dtype=np.float32),
            truth=truth,
            lines=lines,
            s_hat=s_hat,
            peak_mask=peak_mask,
            base_mask=base_mask,
            region=np.zeros(lines.size, dtype=bool),
            sigma=float(result.sigma[0] / result.scales[0]),
            sigma_true=sigma_true,
            ppm0=ppm0,
            ppm_step=ppm_step,
            snr=float(ladders.snr[i, 0]),
            solvent_ppm=solvent_ppm,
            solvent_index=(ppm0 - solvent_ppm) / ppm_step + float(ladders.shifts[i, 0]),
        )
        item.region = item.peak_regions(lines, sigma_true)[0]
        if ladders.oracle is not None:
            item.oracle = ((ladders.oracle[i].astype(np.float64) - ladders.norm_offset[i, 0])
                           / ladders.norm_scale[i, 0])
        items.append(item)
    if not items:
        raise InputError(f"{name}: no ladder left to evaluate")
    return items
