"""Fast sums of damped complex exponentials and the real spectrum of a processed FID."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["alternate", "damped_sum", "decay_sums", "powers", "ramp", "real_fft", "spectrum"]


def powers(log_ratio: np.ndarray, n: int) -> np.ndarray:
    """``exp(log_ratio[:, None] * arange(n))`` by doubling: n multiplications, log2(n) exps.

    Each doubling step multiplies the filled block by an exactly computed exp, so the
    rounding error grows with log2(n), not with n as a cumulative product's would.
    """
    log_ratio = np.asarray(log_ratio, dtype=np.complex128)
    out = np.empty((log_ratio.size, n), dtype=np.complex128)
    out[:, 0] = 1.0
    filled = 1
    while filled < n:
        step = min(filled, n - filled)
        factor = np.exp(log_ratio * filled)[:, None]
        np.multiply(out[:, :step], factor, out=out[:, filled : filled + step])
        filled += step
    return out


def _block(n: int) -> tuple[int, int]:
    """Split n points into q_count blocks of b points (b a power of two near sqrt(n))."""
    b = 1 << max(1, round(math.log2(max(n, 2)) / 2))
    return -(-n // b), b


def damped_sum(amplitudes: np.ndarray, log_ratio: np.ndarray, n: int) -> np.ndarray:
    """``sum_j amplitudes[j] * exp(log_ratio[j] * m)`` for m = 0..n-1, complex128 [n].

    Writes m = q * b + p, so the sum is the matrix product of [Q, P] (powers of
    exp(log_ratio * b), scaled by the amplitudes) and [P, b] (powers of exp(log_ratio)):
    n * P multiply-adds in BLAS instead of n * P complex exponentials.
    """
    q_count, b = _block(n)
    coarse = powers(np.asarray(log_ratio) * b, q_count) * np.asarray(amplitudes)[:, None]
    fine = powers(log_ratio, b)
    return (np.ascontiguousarray(coarse.T) @ fine).ravel()[:n]


def decay_sums(weights: np.ndarray, log_ratio: np.ndarray) -> np.ndarray:
    """``sum_m weights[m] * exp(log_ratio[j] * m)`` per j (real inputs), float64 [P].

    This is a line's peak height at resonance: the weighted sum of its decay.
    """
    n = weights.size
    if len(log_ratio) == 0:
        return np.zeros(0)
    q_count, b = _block(n)
    padded = np.zeros(q_count * b)
    padded[:n] = weights
    coarse = powers(np.asarray(log_ratio) * b, q_count).real
    fine = powers(log_ratio, b).real
    return np.einsum("jq,jq->j", coarse, fine @ padded.reshape(q_count, b).T)



def alternate(n: int) -> np.ndarray:
    """(-1)^m: multiplying the FID by it moves the spectrum by L/2 points (fftshift)."""
    out = np.ones(n)
    out[1::2] = -1.0
    return out


def real_fft(fid: np.ndarray, length: int) -> np.ndarray:
    """``np.fft.fft(fid, n=length).real`` along the last axis at half the cost.

    Only the Hermitian part of a signal reaches the real part of its spectrum, and that
    part's transform is the real-output FFT (hfft) of its first half.
    """
    half, td = length // 2 + 1, fid.shape[-1]
    first = np.zeros((*fid.shape[:-1], half), dtype=np.complex128)
    n = min(td, half)
    first[..., :n] = 0.5 * fid[..., :n]
    first[..., 0] = fid[..., 0].real
    if td > length - half + 1:  # without zero-filling the FID's end folds back onto its start
        m = np.arange(max(1, length - td + 1), half)
        first[..., m] += 0.5 * np.conj(fid[..., length - m])
    return np.fft.hfft(first, n=length)


def spectrum(fid: np.ndarray, length: int) -> np.ndarray:
    """Real spectrum (float64 [length]) of a processed FID, zero-filled, NMR orientation."""
    return real_fft(fid * alternate(fid.size), length)


def ramp(shifts: np.ndarray, length: int, n: int) -> np.ndarray:
    """FID multipliers [len(shifts), n] that shift the spectrum by ``shifts`` points.

    ``exp(2 pi i (d / L + 1/2) m)``: the 1/2 is the fftshift (-1)^m; the ramp moves the
    content to higher index, ``shifted[i] = x[i - d]`` (SHIFT_CONVENTION), exactly.
    """
    return powers(2j * np.pi * (np.asarray(shifts, dtype=np.float64).ravel() / length + 0.5), n)
