"""Classical baselines: exact definitions, error reduction, tuning on validation data only."""

import math

import numpy as np
import pytest
from scipy.signal import savgol_filter

from nmrladder.runtime.errors import InputError
from nmrladder.train import baselines, metrics
from nmrladder.train.evaluate import prepare_items
from nmrladder.train.simulate import simulate_ladders

SIM = {"phase0_deg": 0.0, "phase1_deg": 0.0}


def _fid(td, sw_hz, lines, rng):
    """Complex FID of damped lines (Hz, amplitude, R2 in Hz) with a little noise."""
    t = np.arange(td) / sw_hz
    fid = sum(a * np.exp(-2j * np.pi * nu * t - np.pi * r2 * t) for nu, a, r2 in lines)
    return fid + 0.05 * (rng.normal(size=td) + 1j * rng.normal(size=td))


def test_line_broadening_equals_fid_exponential_multiplication():
    rng = np.random.default_rng(0)
    td, sw_hz, lb_hz = 2048, 5000.0, 3.0
    length = 2 * td  # zero-filled twice
    fid = _fid(td, sw_hz, [(310.0, 1.0, 1.5), (-1200.0, 0.7, 2.5), (2000.0, 0.3, 0.8)], rng)
    fid[0] *= 0.5  # first point halved, as a spectrometer processes it

    def real_spectrum(f):
        padded = np.zeros(length, dtype=complex)
        padded[:td] = f
        return np.fft.fftshift(np.fft.fft(padded)).real

    t = np.arange(td) / sw_hz
    expected = real_spectrum(fid * np.exp(-np.pi * lb_hz * t))
    spectrum = real_spectrum(fid)
    lb_points = lb_hz * length / sw_hz
    broadened = baselines.lorentzian_broaden(spectrum, lb_points)[0]
    np.testing.assert_allclose(broadened, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    denoiser = baselines.LineBroadening.from_hz(lb_hz, sw_hz, length)
    assert denoiser.lb_points == pytest.approx(lb_points)
    out = denoiser.denoise(spectrum)
    assert out.dtype == np.float32 and out.shape == spectrum.shape
    np.testing.assert_allclose(out, expected, atol=1e-5 * np.abs(expected).max())


def test_line_broadening_kernel_is_a_unit_area_lorentzian():
    length, lb = 4096, 6.0
    delta = np.zeros(length)
    delta[2000] = 1.0
    kernel = baselines.lorentzian_broaden(delta, lb)[0]
    assert kernel.sum() == pytest.approx(1.0)
    assert metrics.fwhm(kernel, 2000) == pytest.approx(lb, rel=0.01)
    assert kernel[2000] == pytest.approx(2 / (math.pi * lb), rel=0.01)  # Lorentzian peak


def test_savitzky_golay_is_scipy_and_keeps_shapes():
    x = np.random.default_rng(2).normal(size=(3, 500))
    sg = baselines.SavitzkyGolay(window=15, polyorder=3)
    np.testing.assert_allclose(sg.denoise(x), savgol_filter(x, 15, 3, axis=-1), atol=1e-5)
    assert sg.denoise(x[0]).shape == (500,)
    np.testing.assert_allclose(sg.denoise(np.full(50, 2.5)), 2.5, rtol=1e-6)  # constants kept
    with pytest.raises(InputError, match="odd"):
        baselines.SavitzkyGolay(window=10)
    with pytest.raises(InputError, match="NaN"):
        sg.denoise(np.full(50, np.nan))


def test_estimated_linewidth_of_noisy_lorentzians():
    rng = np.random.default_rng(3)
    x = np.arange(8192)
    clean = sum(h / (1 + ((x - c) / 4.0) ** 2) for c, h in [(1000, 30), (3000, 20), (6000, 25)])
    assert baselines.estimate_linewidth(clean + rng.normal(size=x.size)) == pytest.approx(
        8.0, rel=0.15)
    assert math.isnan(baselines.estimate_linewidth(rng.normal(size=x.size)))


@pytest.fixture(scope="module")
def val_items():
    lad = simulate_ladders(8, 3, 4096, 2.0, 5.0, seed=21, **SIM)
    return prepare_items(lad, "val")


@pytest.fixture(scope="module")
def test_items():
    lad = simulate_ladders(8, 3, 4096, 2.0, 5.0, seed=22, **SIM)
    return prepare_items(lad, "test")


@pytest.mark.parametrize("name", list(baselines.BASELINES))
def test_tuned_baselines_reduce_the_error_on_test_data(name, val_items, test_items):
    tuned = baselines.BASELINES[name].tune(val_items)
    assert tuned.tuning["n_val"] == len(val_items)
    assert tuned.tuning["score"] == max(row["score"] for row in tuned.tuning["grid"])
    noisy = np.stack([it.noisy for it in test_items])
    out = tuned.denoise(noisy)
    err_in = sum(np.sum((it.noisy - it.truth) ** 2) for it in test_items)
    err_out = sum(np.sum((y - it.truth) ** 2) for y, it in zip(out, test_items, strict=True))
    assert err_out < err_in
    assert baselines.peak_region_gain(tuned, test_items) > 2.0  # dB


def test_tuning_depends_on_the_validation_data_only(val_items, test_items):
    tuned = baselines.LineBroadening.tune(val_items)
    # scored on its validation items, the chosen parameters are the grid's best there ...
    assert baselines.peak_region_gain(tuned, val_items) == pytest.approx(tuned.tuning["score"])
    # ... and a much cleaner validation set leads to less broadening
    cleaner = prepare_items(simulate_ladders(8, 3, 4096, 2.0, 50.0, seed=23, **SIM), "clean")
    other = baselines.LineBroadening.tune(cleaner)
    assert other.lb_points < tuned.lb_points
    # tuning on a Ladders object prepares it itself
    lad = simulate_ladders(4, 3, 4096, 2.0, 5.0, seed=21, **SIM)
    assert baselines.LineBroadening.tune(lad).tuning["n_val"] == 4


def test_tune_baselines_rejects_unknown_names(val_items):
    with pytest.raises(InputError, match="unknown baseline"):
        baselines.tune_baselines(val_items, ["wavelets"])
    with pytest.raises(InputError, match="empty"):
        baselines.SavitzkyGolay.tune([])
