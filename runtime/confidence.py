"""Per-point confidence: an estimate of each output point's error, from re-noised copies.

The delivered output y (after the strength step) stands in for the truth: K copies
``x*_k = y + sigma n_k`` (n_k white Gaussian, sigma the input's measured noise, the MAD
kernel's) go through the same core (scaling, network, strength: auto decides afresh for each
copy) and their outputs' squared deviations from y estimate the error the core makes on a
spectrum like this one at this noise, bias included (a parametric bootstrap). Two terms:

    sigma_i^2 = c_class^2 ( mean_k (y*_k - y)^2 + max(0, <(x - y)^2> - nu) )   (<.>: SMOOTH_POINTS)

- the bootstrap's mean square, averaged over SMOOTH_POINTS neighbours (K is small; the error
  changes slowly along a line);
- the excess of what the output removed over its noise level nu (its MAD squared): where the
  output removed more than noise, a line it lost is as likely as not, and the bootstrap, which
  starts from y, cannot see lines y lacks;
- c_class: calibrated scale factors (:data:`SCALES`), one per class of point: the output's
  baseline, its weak line cores (CORE_LEVEL to STRONG_LEVEL input noise sigmas above the
  baseline) and its strong ones. Calibrated on simulated ladders so that the truth lies within
  +-2 sigma_i at 95 % of the points of each class (pooled over the five simulator families at
  rung-0 SNR 3-50, the calibration set's seeds disjoint from the evaluation's):
  ``scripts/strength_eval.py --calibrate``, recorded in docs/self-check.md.

Each spectrum's noise draws are seeded from its own bytes, so its band does not depend on the
batch it came in, and the same spectrum gets the same band every time.
"""

from __future__ import annotations

import hashlib

import numpy as np

from nmrladder.runtime.errors import InputError

#: Re-noised copies per spectrum by default: the network runs this many extra times.
DEFAULT_COPIES = 2
#: Points the mean squares are averaged over (centred).
SMOOTH_POINTS = 9
#: Classes of points: the delivered output this many input noise sigmas above its baseline
#: level is a weak line core; above STRONG_LEVEL, a strong one.
CORE_LEVEL = 1.0
STRONG_LEVEL = 8.0
#: (baseline, weak core, strong core) scale factors per number of copies, from
#: ``scripts/strength_eval.py --calibrate`` (docs/self-check.md); another K takes the
#: nearest calibrated one's.
SCALES: dict[int, tuple[float, float, float]] = {
    2: (1.25, 2.37, 2.18),
    4: (1.13, 2.13, 2.05),
}


def checked_copies(copies, name: str = "confidence copies") -> int:
    """``copies`` as an int >= 1, or InputError naming it."""
    try:
        value = int(copies)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a whole number >= 1, got {copies!r}") from None
    if value != copies or value < 1:
        raise InputError(f"{name}: expected a whole number >= 1, got {copies!r}")
    return value


def row_seeds(spectra: np.ndarray) -> list[int]:
    """One seed per row of ``spectra`` [N, L], from the row's bytes (blake2b)."""
    rows = np.ascontiguousarray(spectra)
    return [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
            for row in rows]


def renoised(delivered: np.ndarray, sigmas: np.ndarray, copies: int, seeds) -> np.ndarray:
    """``copies`` re-noised copies of each delivered output [N, L]: float32 [N * copies, L],
    spectrum i's copies in rows i * copies ... (i + 1) * copies - 1."""
    y = np.asarray(delivered, dtype=np.float64)
    out = np.empty((y.shape[0] * copies, y.shape[1]), dtype=np.float32)
    for i, (row, sigma, seed) in enumerate(zip(y, np.ravel(sigmas), seeds, strict=True)):
        noise = np.random.default_rng(seed).standard_normal((copies, y.shape[1]))
        out[i * copies : (i + 1) * copies] = row + sigma * noise
    return out


def _smoothed(values: np.ndarray, points: int) -> np.ndarray:
    """Centred moving average over ``points`` along the last axis, edges repeated."""
    half = points // 2
    padded = np.pad(values, ((0, 0), (half + 1, half)), mode="edge")
    sums = np.cumsum(padded, axis=-1)
    return (sums[:, points:] - sums[:, :-points]) / points


def scales_for(copies: int) -> tuple[float, float, float]:
    """The calibrated (baseline, weak core, strong core) factors for ``copies``."""
    nearest = min(SCALES, key=lambda k: (abs(k - copies), k))
    return SCALES[nearest]


def band(
    x: np.ndarray,
    delivered: np.ndarray,
    copies_out: np.ndarray,
    centers: np.ndarray,
    sigmas: np.ndarray,
    scales: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Each output point's estimated error sigma (module docstring): float32 [N, L].

    x, delivered [N, L]: the inputs and the outputs delivered for them; copies_out
    [N * K, L]: the delivered outputs of the re-noised copies (:func:`renoised`'s order);
    centers, sigmas [N]: the inputs' baseline levels and noise sigmas; ``scales``: the class
    factors (default: :func:`scales_for` K).
    """
    from nmrladder.runtime.strength import _noise

    y = np.atleast_2d(np.asarray(delivered, dtype=np.float64))
    n, length = y.shape
    if copies_out.shape[0] % n or copies_out.shape[-1] != length:
        raise InputError(
            f"confidence: {copies_out.shape[0]} copies of length {copies_out.shape[-1]} do not "
            f"match {n} outputs of length {length}"
        )
    k = copies_out.shape[0] // n
    deviations = np.asarray(copies_out, dtype=np.float64).reshape(n, k, length) - y[:, None]
    spread = _smoothed(np.mean(deviations * deviations, axis=1), SMOOTH_POINTS)
    removed = np.asarray(x, dtype=np.float64) - y
    level = _noise(removed.astype(np.float32)) ** 2
    excess = np.maximum(_smoothed(removed * removed, SMOOTH_POINTS) - level[:, None], 0.0)
    height = (y - np.reshape(centers, (-1, 1))) / np.reshape(sigmas, (-1, 1))
    classes = (height > CORE_LEVEL).astype(np.intp) + (height > STRONG_LEVEL)
    factor = np.asarray(scales_for(k) if scales is None else scales)[classes]
    return (factor * np.sqrt(spread + excess)).astype(np.float32)


__all__ = [
    "DEFAULT_COPIES",
    "SCALES",
    "band",
    "checked_copies",
    "renoised",
    "row_seeds",
    "scales_for",
]
