"""Exact lines of a small coupled spin-1/2 system (strong coupling included).

First-order multiplets hold while the shift difference of two coupled groups is much larger
than their coupling; at benchtop fields (and for close shifts at any field) the lines move
and their intensities lean towards each other (the "roof"). The exact spectrum comes from
diagonalising the Hamiltonian in the product basis, one block per total z-magnetisation:

    H = sum_i nu_i Iz_i + sum_{i<j} J_ij (Iz_i Iz_j + (I+_i I-_j + I-_i I+_j) / 2)      (Hz)

The lines are the single-quantum transitions between eigenstates of adjacent blocks, at the
energy difference, with intensity |<lower| F- |upper>|^2 (F- = sum_i I-_i), normalised so
that the intensities of an n-spin system sum to n.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_SPINS", "spin_system_lines"]

#: Product basis of 2**n states; 7 spins (128 states, blocks up to 35 x 35) stay cheap.
MAX_SPINS = 7


def _block_hamiltonians(shifts: np.ndarray, couplings: np.ndarray):
    """(states, H) per total magnetisation block, highest first; bit i set = spin i beta."""
    n = shifts.size
    states = np.arange(1 << n)
    bits = (states[:, None] >> np.arange(n)) & 1
    m = 0.5 - bits  # m_i of each spin in each state
    diagonal = m @ shifts + 0.5 * np.einsum("si,ij,sj->s", m, couplings, m)
    n_beta = bits.sum(axis=1)
    blocks = []
    for k in range(n + 1):
        members = np.flatnonzero(n_beta == k)
        where = {int(s): r for r, s in enumerate(members)}
        h = np.diag(diagonal[members])
        for r, s in enumerate(members):
            for i in range(n):
                for j in range(i + 1, n):
                    if bits[s, i] != bits[s, j] and couplings[i, j] != 0.0:
                        flipped = int(s) ^ (1 << i) ^ (1 << j)  # flip-flop of spins i and j
                        h[r, where[flipped]] += 0.5 * couplings[i, j]
        blocks.append((members, h))
    return blocks, bits


def spin_system_lines(shifts_hz, couplings_hz, *, min_intensity: float = 1e-3,
                      merge_hz: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and intensities of the spectrum of a coupled spin-1/2 system.

    Parameters
    ----------
    shifts_hz : array [n]
        Resonance frequency of each spin, Hz from the carrier (n <= MAX_SPINS).
    couplings_hz : array [n, n]
        Symmetric scalar couplings, Hz (the diagonal is ignored). Magnetically equivalent
        spins are given as several spins of the same shift.
    min_intensity : float
        Lines weaker than this fraction of the strongest are dropped.
    merge_hz : float
        Degenerate lines closer than this are merged (their intensities added).

    Returns
    -------
    (freq_hz, intensity) : float64 arrays, sorted by frequency; intensities sum to about n.
    """
    shifts = np.asarray(shifts_hz, dtype=np.float64).ravel()
    n = shifts.size
    if not 1 <= n <= MAX_SPINS:
        raise ValueError(f"spin system of {n} spins: need 1 to {MAX_SPINS}")
    couplings = np.array(couplings_hz, dtype=np.float64).reshape(n, n)
    couplings = 0.5 * (couplings + couplings.T)
    np.fill_diagonal(couplings, 0.0)
    blocks, bits = _block_hamiltonians(shifts, couplings)
    eig = [np.linalg.eigh(h) for _, h in blocks]
    freqs, intensities = [], []
    for k in range(n):  # F- takes block k (k beta spins) to block k + 1
        upper, lower = blocks[k][0], blocks[k + 1][0]
        row = {int(s): r for r, s in enumerate(lower)}
        f_minus = np.zeros((lower.size, upper.size))
        for c, s in enumerate(upper):
            for i in np.flatnonzero(bits[s] == 0):
                f_minus[row[int(s) | (1 << int(i))], c] += 1.0
        (e_up, v_up), (e_low, v_low) = eig[k], eig[k + 1]
        amp = v_low.T @ f_minus @ v_up
        freqs.append((e_up[None, :] - e_low[:, None]).ravel())
        intensities.append((amp**2).ravel())
    freq, inten = np.concatenate(freqs), np.concatenate(intensities) / 2.0 ** (n - 1)
    keep = inten >= min_intensity * inten.max()
    freq, inten = freq[keep], inten[keep]
    key = np.round(freq / merge_hz).astype(np.int64)
    unique, inverse = np.unique(key, return_inverse=True)
    merged = np.bincount(inverse, weights=inten, minlength=unique.size)
    merged_freq = np.bincount(inverse, weights=freq * inten, minlength=unique.size) / merged
    return merged_freq, merged
