"""The compiled preprocessing kernels against their NumPy/SciPy baselines, L = 32768 float32.

One pytest-benchmark group per kernel, the kernel and its baseline in the same group so that
the ratio of the medians reads directly; single thread unless the name says otherwise::

    .venv/bin/python -m pytest benchmarks/bench_kernels.py --benchmark-enable --benchmark-only

The residual line broadening group prices the opt-in step after the network (runtime/residual.py)
against the line broadening it contains.

Targets on the 2-core Zen 4 (benchmarks/README.md has the measured table): median + MAD
>= 3x the np.median-based reference, dilation >= 15x scipy.ndimage, shift estimation over
+-50 lags >= 3x an np.fft correlation with the same refinement, the ladder chain (R = 4)
>= 10x reference.preprocess_ladder and >= 1.7x from 1 to 2 threads on 64 ladders.
"""

from __future__ import annotations

import os

# OpenBLAS worker threads spin after use and would take the second core from the kernels'
# own threads; no benchmark here needs a threaded BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.ndimage as ndi  # noqa: E402

from nmrladder.kernels import robust  # noqa: E402
from nmrladder.runtime import preprocess, reference  # noqa: E402

L = 32768
R = 4
MAX_LAG = 50


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture(scope="module")
def spectrum(rng):
    return rng.normal(size=L).astype(np.float32)


def lorentzian_ladder(rng, rungs: int = R, length: int = L) -> np.ndarray:
    """Lines, a drift per rung (Fourier shift), noise halving per rung, affine normalisation."""
    i = np.arange(length)
    clean = np.zeros(length)
    for _ in range(20):
        centre, width = rng.uniform(0.05 * length, 0.95 * length), rng.uniform(0.5, 4.0)
        clean += rng.uniform(0.2, 1.0) / (1 + ((i - centre) / width) ** 2)
    frequencies = np.fft.rfftfreq(length)
    out = []
    for k in range(rungs):
        phase = np.exp(-2j * np.pi * frequencies * rng.uniform(-5, 5))
        noisy = np.fft.irfft(np.fft.rfft(clean) * phase, n=length) + rng.normal(
            0, 0.05 / 2**k, length
        )
        out.append(rng.uniform(0.5, 3.0) * noisy + rng.uniform(-1, 1))
    return np.array(out, dtype=np.float32)


# --------------------------------------------------------------------------- median + MAD


@pytest.mark.benchmark(group="median+MAD")
def test_median_mad_kernel(benchmark, spectrum):
    rows = spectrum[None]
    medians, _, sigmas = benchmark(
        robust.robust_stats, rows, None, 0.0, robust.MEDIAN | robust.MAD, 1
    )
    assert medians[0] == reference.median(spectrum) and sigmas[0] == reference.mad_sigma(spectrum)


@pytest.mark.benchmark(group="median+MAD")
def test_median_mad_dispatch(benchmark, spectrum):
    benchmark(lambda: (preprocess.median(spectrum), preprocess.mad_sigma(spectrum)))


@pytest.mark.benchmark(group="median+MAD")
def test_median_mad_reference(benchmark, spectrum):
    benchmark(lambda: (reference.median(spectrum), reference.mad_sigma(spectrum)))


# --------------------------------------------------------------------------- dilation


@pytest.fixture(scope="module")
def mask(rng):
    return rng.random(L) < 0.05


@pytest.mark.benchmark(group="dilation r=8")
def test_dilate_kernel(benchmark, mask):
    out = benchmark(preprocess.dilate, mask, 8)
    assert np.array_equal(out, ndi.binary_dilation(mask, np.ones(17, bool)))


@pytest.mark.benchmark(group="dilation r=8")
def test_dilate_scipy(benchmark, mask):
    structure = np.ones(17, bool)
    benchmark(ndi.binary_dilation, mask, structure)


# --------------------------------------------------------------------------- shift estimation


@pytest.fixture(scope="module")
def shifted_pair(rng):
    ladder = lorentzian_ladder(rng, rungs=2)
    return ladder[1], ladder[0]


def fft_shift_estimate(ref: np.ndarray, x: np.ndarray, max_lag: int) -> float:
    """Baseline: np.fft circular correlation over +-(max_lag + h), the reference's refinement."""
    half = reference.gaussian_taps(reference.SHIFT_SMOOTH_SIGMA).size // 2
    r, v = ref - ref.mean(), x - x.mean()
    full = np.fft.irfft(np.conj(np.fft.rfft(r)) * np.fft.rfft(v), n=r.size)
    lags = np.arange(-max_lag - half, max_lag + half + 1) % r.size
    return reference.smoothed_correlation_peak(full[lags])


@pytest.mark.benchmark(group="shift estimate +-50")
def test_shift_kernel(benchmark, shifted_pair):
    ref, x = shifted_pair
    shift = benchmark(preprocess.estimate_shift, ref, x, MAX_LAG)
    assert abs(shift - fft_shift_estimate(ref, x, MAX_LAG)) < 1e-3


@pytest.mark.benchmark(group="shift estimate +-50")
def test_shift_numpy_fft(benchmark, shifted_pair):
    benchmark(fft_shift_estimate, *shifted_pair, MAX_LAG)


# --------------------------------------------------------------------------- the ladder chain


@pytest.fixture(scope="module")
def one_ladder(rng):
    return lorentzian_ladder(rng)


@pytest.mark.benchmark(group="ladder chain R=4")
def test_chain_kernel(benchmark, one_ladder):
    benchmark(preprocess.preprocess_ladder, one_ladder)  # one ladder: one thread


@pytest.mark.benchmark(group="ladder chain R=4")
def test_chain_reference(benchmark, one_ladder):
    benchmark.pedantic(reference.preprocess_ladder, (one_ladder,), rounds=3, iterations=1)


@pytest.fixture(scope="module")
def batch64(rng):
    one = lorentzian_ladder(rng)
    # 64 ladders: one simulated ladder under different normalisations and noise draws
    return np.stack(
        [
            one * rng.uniform(0.5, 2.0) + rng.normal(0, 1e-3, one.shape).astype(np.float32)
            for _ in range(64)
        ]
    )


@pytest.mark.benchmark(group="ladder chain x64 threads")
@pytest.mark.parametrize("threads", [1, 2])
def test_chain_batch_threads(benchmark, batch64, threads):
    benchmark.pedantic(
        preprocess.preprocess_ladders,
        (batch64,),
        {"threads": threads},
        rounds=5,
        iterations=1,
        warmup_rounds=1,
    )


# --------------------------------------------------------------------------- residual LB


@pytest.fixture(scope="module")
def denoised_pair(rng):
    """A noisy 16384-point spectrum of 20 lines and the same lines without noise (an ideal
    network output), with the baseline level and noise sigma the input scaling hands over."""
    length = 16384
    i = np.arange(length)
    clean = np.zeros(length)
    for _ in range(20):
        centre, width = rng.uniform(0.05 * length, 0.95 * length), rng.uniform(2.0, 6.0)
        clean += rng.uniform(5.0, 50.0) / (1 + ((i - centre) / width) ** 2)
    noisy = clean + rng.normal(size=length)
    return noisy.astype(np.float32), clean.astype(np.float32), (0.0, 1.0)


@pytest.mark.benchmark(group="residual line broadening, L=16384")
def test_restore_residual(benchmark, denoised_pair):
    from nmrladder.runtime.residual import restore_residual

    x, y, (center, sigma) = denoised_pair
    out = benchmark(restore_residual, x, y, 0.5, ([center], [sigma]))
    assert out.shape == x.shape


@pytest.mark.benchmark(group="residual line broadening, L=16384")
def test_amplitude_refit_alone(benchmark, denoised_pair):
    from nmrladder.runtime.residual import refit_amplitudes

    x, y, (center, sigma) = denoised_pair
    rows = x[None].astype(np.float64), y[None].astype(np.float64)
    out = benchmark(refit_amplitudes, *rows, np.array([center]), np.array([sigma]))
    assert out.shape == (1, x.size)


@pytest.mark.benchmark(group="residual line broadening, L=16384")
def test_line_broadening_alone(benchmark, denoised_pair):
    from nmrladder.runtime.residual import lorentzian_broaden

    x, _, _ = denoised_pair
    out = benchmark(lorentzian_broaden, x, 4.0)
    assert out.shape == (1, x.size)
