"""The NumPy reference against SciPy and analytic cases (bad input included)."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
import scipy.stats
from ladders import BAD_LADDERS, gaussian_peaks, simple_ladder

from nmrladder.runtime import InputError, reference


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_median_percentile_match_numpy(rng):
    x = rng.normal(size=1001).astype(np.float32)
    mask = rng.random(1001) < 0.3
    assert reference.median(x) == pytest.approx(np.median(x.astype(np.float64)))
    assert reference.median(x, mask) == pytest.approx(np.median(x[mask].astype(np.float64)))
    assert reference.percentile(x, 95, mask) == pytest.approx(np.percentile(x[mask], 95))
    med, p95 = reference.median_and_percentile(x, 95.0, mask)
    assert (med, p95) == (reference.median(x, mask), reference.percentile(x, 95, mask))
    assert np.isnan(reference.median(x, np.zeros_like(mask)))


def test_mad_sigma_matches_scipy(rng):
    x = rng.normal(0.0, 2.5, size=4096)
    mask = rng.random(4096) < 0.5
    expected = scipy.stats.median_abs_deviation(x[mask], scale=1.0) * 1.4826
    assert reference.mad_sigma(x, mask) == pytest.approx(expected, rel=1e-12)
    # and it estimates a Gaussian's standard deviation
    assert reference.mad_sigma(x) == pytest.approx(2.5, rel=0.05)
    batch = rng.normal(size=(3, 500))
    np.testing.assert_allclose(
        reference.mad_sigma_batch(batch),
        1.4826 * scipy.stats.median_abs_deviation(batch, axis=1),
    )


def test_robust_scale_ignores_peaks(rng):
    x = rng.normal(3.0, 0.5, size=8192)
    x[1000:1040] += 400.0  # a tall peak region must not inflate the noise estimate
    x[5000:5100] += 50.0
    center, sigma = reference.robust_scale(x)
    assert center == pytest.approx(3.0, abs=0.03)
    assert sigma == pytest.approx(0.5, rel=0.05)
    centers, sigmas = reference.robust_scale_batch(np.stack([x, 2 * x]))
    np.testing.assert_allclose(sigmas, [sigma, 2 * sigma])


@pytest.mark.parametrize("radius", [0, 1, 3, 17])
def test_dilate_erode_match_scipy(rng, radius):
    mask = rng.random(300) < 0.05
    mask[0] = mask[-1] = True
    structure = np.ones(2 * radius + 1, dtype=bool)
    expected = ndi.binary_dilation(mask, structure=structure) if radius else mask
    np.testing.assert_array_equal(reference.dilate(mask, radius), expected)
    full = rng.random(300) < 0.8
    expected = ndi.binary_erosion(full, structure=structure, border_value=1) if radius else full
    np.testing.assert_array_equal(reference.erode(full, radius), expected)
    # batched along the last axis
    batch = rng.random((4, 120)) < 0.1
    np.testing.assert_array_equal(
        reference.dilate(batch, radius),
        np.stack([reference.dilate(row, radius) for row in batch]),
    )


def test_smooth_matches_savgol(rng):
    x = rng.normal(size=(2, 257))
    np.testing.assert_allclose(
        reference.smooth(x, 11, 3), scipy.signal.savgol_filter(x, 11, 3, mode="nearest"), atol=1e-12
    )


@pytest.mark.parametrize("shift", [0.0, 2.3, -7.75, 19.5, -0.01])
def test_apply_shift_matches_scipy(rng, shift):
    x = rng.normal(size=200)
    expected = ndi.shift(x, shift, order=1, mode="grid-wrap")
    np.testing.assert_allclose(reference.apply_shift(x, shift), expected, atol=1e-12)


def test_apply_shift_field_constant_equals_apply_shift(rng):
    x = rng.normal(size=(3, 200))
    shifts = np.array([1.25, -3.5, 0.0])
    field = np.repeat(shifts[:, None], 200, axis=1)
    for k in range(3):
        np.testing.assert_allclose(
            reference.apply_shift_field(x[k], field[k]),
            reference.apply_shift(x[k], shifts[k]),
            atol=1e-12,
        )
    np.testing.assert_allclose(
        reference.apply_shift(x, shifts),
        np.stack([ndi.shift(x[k], shifts[k], order=1, mode="grid-wrap") for k in range(3)]),
        atol=1e-12,
    )


def test_cross_correlation_matches_fft(rng):
    ref, x = rng.normal(size=128), rng.normal(size=128)
    c = reference.cross_correlation(ref, x, 10)
    r0, x0 = ref - ref.mean(), x - x.mean()
    full = np.fft.ifft(np.conj(np.fft.fft(r0)) * np.fft.fft(x0)).real  # full[l] = sum r_i x_{i+l}
    np.testing.assert_allclose(c, full[np.arange(-10, 11) % 128], atol=1e-9)


@pytest.mark.parametrize("true_shift", [0.0, 3.0, -12.4, 7.6])
def test_estimate_shift_recovers_known_shift(true_shift):
    ref = gaussian_peaks(1024, [200, 420, 700])
    x = gaussian_peaks(1024, [200 + true_shift, 420 + true_shift, 700 + true_shift])
    assert reference.estimate_shift(ref, x, 20) == pytest.approx(true_shift, abs=0.05)
    aligned = reference.apply_shift(x, -reference.estimate_shift(ref, x, 20))
    assert np.abs(aligned - ref).max() < 0.05


def test_estimate_shift_at_lag_boundary_is_not_refined():
    ref = gaussian_peaks(512, [100])
    x = gaussian_peaks(512, [140])
    assert reference.estimate_shift(ref, x, 10) == 10.0


def test_ls_scale_analytic(rng):
    ref = gaussian_peaks(512, [100, 300])
    mask = ref > 0.01
    for method in ("ls", "inverse", "deming"):
        assert reference.ls_scale(ref, ref / 3.0, mask, method, 0.0, 0.0) == pytest.approx(3.0)
    # Both spectra noisy: METHOD's formula is biased low, the inverse fit high, Deming neither.
    estimates = {"ls": [], "inverse": [], "deming": []}
    for _ in range(300):
        noisy_ref = ref + rng.normal(0, 0.05, 512)
        noisy = ref / 3.0 + rng.normal(0, 0.1, 512)
        for method, values in estimates.items():
            values.append(reference.ls_scale(noisy_ref, noisy, mask, method, 0.05, 0.1))
    assert np.mean(estimates["ls"]) < 2.85
    assert np.mean(estimates["inverse"]) > 3.05
    assert np.mean(estimates["deming"]) == pytest.approx(3.0, rel=0.02)
    # Deming's limits are the two plain fits
    noisy = ref / 3.0 + rng.normal(0, 0.1, 512)
    sxy, sxx, syy = ref[mask] @ noisy[mask], noisy[mask] @ noisy[mask], ref[mask] @ ref[mask]
    assert reference.ls_scale(ref, noisy, mask, "deming", 1e-9, 0.1) == pytest.approx(syy / sxy)
    assert reference.ls_scale(ref, noisy, mask, "deming", 0.1, 1e-9) == pytest.approx(sxy / sxx)
    with pytest.raises(InputError, match="scale method"):
        reference.ls_scale(ref, ref, mask, "median", 0.1, 0.1)


def test_fusion_weights_and_cap():
    snr = np.array([2.0, 4.0, 8.0, 16.0])
    w = reference.fusion_weights(snr, 2.0, "snr", gamma=1.0)
    np.testing.assert_allclose(w, snr / snr.sum())
    np.testing.assert_allclose(
        reference.fusion_weights(snr, 2.0, "t", gamma=2.0), 4.0 ** np.arange(4) / 85
    )
    np.testing.assert_allclose(reference.fusion_weights(snr, 2.0, "top"), [0, 0, 0, 1])
    capped = reference.fusion_weights(snr, 2.0, "snr", gamma=2.0, w_max=0.5)
    assert capped.max() <= 0.5 + 1e-12 and capped.sum() == pytest.approx(1.0)
    assert capped[-1] == pytest.approx(0.5)
    # the uncapped rungs keep their relative proportions
    np.testing.assert_allclose(capped[:3] / capped[0], snr[:3] ** 2 / snr[0] ** 2)
    with pytest.raises(InputError, match="w_max"):
        reference.fusion_weights(snr, 2.0, w_max=0.1)
    with pytest.raises(InputError, match="unknown method"):
        reference.fusion_weights(snr, 2.0, "median")


def test_fuse_is_weighted_mean(rng):
    spectra = rng.normal(size=(3, 50))
    w = np.array([1.0, 2.0, 5.0])
    np.testing.assert_allclose(reference.fuse(spectra, w), (w[:, None] * spectra).sum(0) / 8.0)


@pytest.mark.parametrize(("mutate", "message"), BAD_LADDERS)
def test_bad_ladders_raise_input_error(rng, mutate, message):
    with pytest.raises(InputError, match=message):
        reference.preprocess_ladder(mutate(simple_ladder(rng)))


def test_bad_options_raise_input_error(rng):
    with pytest.raises(InputError, match="unknown preprocessing option"):
        reference.preprocess_ladder(simple_ladder(rng), alpah=3)
    with pytest.raises(InputError, match="smooth_windows"):
        reference.preprocess_ladder(simple_ladder(rng), smooth_windows=(9, 8))
    with pytest.raises(InputError, match=r"\[N, R, L\]"):
        reference.preprocess_ladders(simple_ladder(rng))


def test_noise_only_ladder_has_no_peaks(rng):
    noise = rng.normal(size=(3, 2048))
    with pytest.raises(InputError, match="no peak"):
        reference.preprocess_ladder(noise, alpha=8.0)


def test_preprocess_ladders_stacks_single_results(rng):
    batch = np.stack([simple_ladder(rng), simple_ladder(rng)])
    stacked = reference.preprocess_ladders(batch)
    assert len(stacked) == 2 and stacked.aligned.shape == (2, 3, 2048)
    single = reference.preprocess_ladder(batch[1])
    np.testing.assert_array_equal(stacked[1].peak_mask, single.peak_mask)
    np.testing.assert_allclose(stacked[1].s_hat, single.s_hat)
    assert stacked.t_hat.shape == (2,) and stacked.aligned.dtype == np.float32


def test_gaussian_taps_and_peak_position_are_exact_for_gaussians():
    taps = reference.gaussian_taps(1.5)
    assert taps.size == 11 and taps.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(taps, taps[::-1])
    np.testing.assert_array_equal(reference.gaussian_taps(0.0), [1.0])
    for centre in (10.0, 10.37, 9.81):
        values = np.exp(-0.5 * ((np.arange(21) - centre) / 2.0) ** 2)
        assert reference.peak_position(values) == pytest.approx(centre, abs=1e-9)


@pytest.mark.parametrize("width", [0.5, 1.0, 3.0])
def test_subpoint_shift_of_sharp_lines_is_unbiased(width):
    """Fourier-shifted Lorentzian lines (band-limited, as in real data): error < 0.01 point."""
    from scipy.ndimage import fourier_shift

    rng = np.random.default_rng(7)
    i = np.arange(4096)
    centres = rng.uniform(200, 3900, 12)
    ref = sum(
        h / (1 + ((i - c) / (width / 2)) ** 2)
        for c, h in zip(centres, rng.uniform(0.2, 1, 12), strict=True)
    )
    for true_shift in (0.25, -3.4, 11.5, 17.9):
        x = np.fft.ifft(fourier_shift(np.fft.fft(ref), true_shift)).real
        assert reference.estimate_shift(ref, x, 30) == pytest.approx(true_shift, abs=0.01)


def test_cap_with_all_weight_on_one_rung_shares_the_rest_equally():
    weights = reference.fusion_weights(np.array([1.0, 2.0, 3.0]), 2.0, "top", w_max=0.5)
    np.testing.assert_allclose(weights, [0.25, 0.25, 0.5])


def test_negative_trend_radius_is_refused(rng):
    with pytest.raises(InputError, match="trend_radius"):
        reference.preprocess_ladder(simple_ladder(rng), trend_radius=-1)
