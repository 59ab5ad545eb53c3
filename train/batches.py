"""Training batches drawn from prepared ladders (NumPy only, no torch).

:class:`BatchSampler` draws batches deterministically from (seed, step): several rungs of
the same ladders (:class:`RungPlan`), the same crop window for every rung of a ladder,
optionally centred on peaks, with each target moved into its input's frame
(:func:`nmrladder.train.prepared.fractional_shift`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.train.prepared import Prepared, fractional_shift


@dataclass
class Batch:
    """One training batch of B ladders x K rungs, crops of C points (NumPy).

    inputs, targets [B, K, C] float32: rung inputs and s_hat in each input's frame (rung-0
    noise units); peak_mask, base_mask [B, C] bool; centers, sigmas [B, K] float32: the
    canonical network scaling of each row; frac [B, K]: f_k, the offset of each input from
    the common frame (points); rungs [B, K] int64: rung indices (column 0 is rung 0); T [B];
    samples [B]: ladder indices; starts [B]: first point of each crop.
    """

    inputs: np.ndarray
    targets: np.ndarray
    peak_mask: np.ndarray
    base_mask: np.ndarray
    centers: np.ndarray
    sigmas: np.ndarray
    frac: np.ndarray
    rungs: np.ndarray
    T: np.ndarray
    samples: np.ndarray
    starts: np.ndarray


@dataclass(frozen=True)
class RungPlan:
    """Which rungs a batch holds: rung 0 always; with mode "all" every rung, with "sampled"
    ``extra`` (lo, hi) rungs drawn per ladder from ``min_rung..R-1`` (at least 1)."""

    mode: str = "sampled"
    extra: tuple[int, int] = (1, 2)
    min_rung: int = 1


def step_rng(seed: int, step: int, stream: int) -> np.random.Generator:
    """The generator of one purpose (stream) at one step: a pure function of its arguments,
    so a resumed run draws exactly what an uninterrupted one would."""
    return np.random.default_rng(np.random.SeedSequence([seed, step, stream]))


class BatchSampler:
    """Deterministic batches from (seed, step) over prepared ladders.

    Ladder order: epoch e = step // steps_per_epoch visits a permutation of all ladders
    drawn from (seed, e); the last batch of an epoch is completed from the permutation's
    start. Rungs: see :class:`RungPlan`. Crops: ``crop_length`` points, the same window for
    every rung of a ladder; with probability ``peak_crop_fraction`` centred (within +-1/4
    crop) on a random point of the peak mask, else uniform.
    """

    _ORDER, _RUNGS, _CROPS = 0, 1, 2

    def __init__(self, data: Prepared, batch_size: int, crop_length: int, seed: int,
                 peak_crop_fraction: float = 0.5):
        if crop_length > data.length:
            raise InputError(f"data.crop_length={crop_length} exceeds the spectra's length "
                             f"{data.length}; set data.crop_length <= {data.length}")
        if len(data) < 1:
            raise InputError("no ladders to train on")
        self.data = data
        self.batch_size = int(batch_size)
        self.crop_length = int(crop_length)
        self.seed = int(seed)
        self.peak_crop_fraction = float(peak_crop_fraction)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def ladder_indices(self, step: int) -> np.ndarray:
        """The ladders of batch `step` [B]."""
        n, b = len(self.data), self.batch_size
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = step_rng(self.seed, epoch, self._ORDER).permutation(n)
        order = np.concatenate([order] * math.ceil(b / n + 1)) if n < 2 * b else order
        idx = order[pos * b:(pos + 1) * b]
        if idx.size < b:
            idx = np.concatenate([idx, order[:b - idx.size]])
        return idx

    def rung_indices(self, step: int, plan: RungPlan) -> np.ndarray:
        """Rungs [B, K] of batch `step`: column 0 is rung 0, the rest sorted per row."""
        R, b = self.data.rungs, self.batch_size
        if plan.mode == "all":
            return np.tile(np.arange(R), (b, 1))
        pool = np.arange(max(1, plan.min_rung), R)
        rng = step_rng(self.seed, step, self._RUNGS)
        lo, hi = plan.extra
        n_extra = min(int(rng.integers(lo, hi + 1)), pool.size)
        extra = np.stack([np.sort(rng.choice(pool, n_extra, replace=False)) for _ in range(b)])
        return np.concatenate([np.zeros((b, 1), dtype=np.int64), extra.astype(np.int64)], 1)

    def crop_starts(self, step: int, peak_mask: np.ndarray) -> np.ndarray:
        """First point of each crop [B], given the ladders' peak masks [B, L]."""
        L, C = self.data.length, self.crop_length
        rng = step_rng(self.seed, step, self._CROPS)
        starts = rng.integers(0, L - C + 1, size=peak_mask.shape[0])
        centred = rng.random(peak_mask.shape[0]) < self.peak_crop_fraction
        jitter = rng.integers(-(C // 4), C // 4 + 1, size=peak_mask.shape[0])
        for b in np.flatnonzero(centred):
            points = np.flatnonzero(peak_mask[b])
            if points.size:
                centre = points[rng.integers(points.size)] + jitter[b]
                starts[b] = np.clip(centre - C // 2, 0, L - C)
        return starts

    def batch(self, step: int, plan: RungPlan = RungPlan()) -> Batch:
        """Batch number `step` (0-based) under the rung plan."""
        samples = self.ladder_indices(step)
        arrays = self.data.read(samples)
        rungs = self.rung_indices(step, plan)
        starts = self.crop_starts(step, arrays["peak_mask"])
        window = starts[:, None] + np.arange(self.crop_length)[None, :]  # [B, C]
        rows = np.arange(len(samples))[:, None]
        frac = arrays["frac"][rows, rungs]  # [B, K]
        inputs = arrays["inputs"][rows, rungs]  # [B, K, L]
        inputs = np.take_along_axis(inputs, window[:, None, :], axis=-1)
        # s_hat moved into each input's frame (band-limited: no smoothing), then cropped.
        targets = fractional_shift(arrays["s_hat"][:, None, :], frac)
        targets = np.take_along_axis(targets, window[:, None, :], axis=-1)
        return Batch(
            inputs=inputs.astype(np.float32),
            targets=targets.astype(np.float32),
            peak_mask=np.take_along_axis(arrays["peak_mask"], window, axis=-1),
            base_mask=np.take_along_axis(arrays["base_mask"], window, axis=-1),
            centers=arrays["centers"][rows, rungs].astype(np.float32),
            sigmas=arrays["sigmas"][rows, rungs].astype(np.float32),
            frac=frac,
            rungs=rungs,
            T=arrays["T"].astype(np.float64),
            samples=samples,
            starts=starts,
        )
