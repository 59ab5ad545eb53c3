"""Shared synthetic spectra of the preprocessing tests (test_reference, test_kernels): Gaussian
lines, a small ladder whose rung k has noise 2**-k, and the bad ladders every preprocessing
entry point must refuse with an InputError naming the problem."""

import numpy as np


def gaussian_peaks(length, centres, width=3.0):
    i = np.arange(length)
    return sum(np.exp(-0.5 * ((i - c) / width) ** 2) for c in centres)


def simple_ladder(rng, rungs=3, length=2048):
    clean = 10 * gaussian_peaks(length, [300, 700, 1500], width=4.0)
    return np.stack([clean + rng.normal(0, 2.0**-k, length) for k in range(rungs)])


BAD_LADDERS = [
    (lambda lad: lad[:1], "at least 2 rungs"),
    (lambda lad: lad[0], "shape"),
    (lambda lad: np.where(np.arange(lad.shape[1]) == 5, np.nan, lad), "NaN/Inf"),
    (lambda lad: np.where(np.arange(lad.shape[1]) == 9, np.inf, lad), "NaN/Inf"),
    (lambda lad: np.concatenate([lad[:1], np.full_like(lad[:1], 3.0)]), "constant"),
    (lambda lad: lad[:, :40], "too short"),
    (lambda lad: lad[:, :0], "empty"),
    (lambda lad: [lad[0], lad[1][:-3]], "different shapes"),
    (
        lambda lad: np.stack([lad[0], np.where(np.arange(lad.shape[1]) % 4 == 0, lad[1], 0.0)]),
        "MAD = 0",
    ),
    (lambda lad: ["a", "b"], "dtype"),
]
