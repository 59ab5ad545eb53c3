"""Conventions shared by the simulator, the preprocessing and the evaluation.

They are stated once here, imported everywhere, and repeated in docs/conventions.md.
"""

#: How nmrladder states the SNR of a spectrum (simulator targets, rung SNRs, demo tables).
SNR_CONVENTION = (
    "SNR = height of the tallest non-solvent peak of the noise-free real spectrum "
    "divided by the RMS (standard deviation) of the real-part noise in a signal-free "
    "region ('height over RMS'; Bruker's sino uses 2x RMS and reads half of this)."
)

#: How shifts are signed, in points of the spectrum's own grid.
SHIFT_CONVENTION = (
    "A shift d (points) moves content to higher index: shifted[i] = x[i - d]. "
    "Rung k of a simulated ladder is the truth shifted by shifts[k]; "
    "estimate_shift(ref, x) returns d with x[i] ~= ref[i - d]; apply_shift(x, -d) aligns x to ref "
    "(linear interpolation with circular wrap, as scipy.ndimage.shift(order=1, mode='grid-wrap'))."
)

#: Scale of the MAD that makes it a consistent estimator of a Gaussian's standard deviation.
MAD_TO_SIGMA = 1.4826
