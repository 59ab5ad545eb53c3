"""The compiled kernels (nmrladder.kernels) against the NumPy reference, through the dispatch
layer nmrladder.runtime.preprocess: masks exactly, floats within 1e-5 relative, shifts within
1e-3 point; the ladder chain against reference.preprocess_ladders; bad input raises the
reference's InputErrors; results do not depend on the thread count.

Hypothesis example counts are modest; NMRLADDER_TEST_EXAMPLES scales them (the AddressSanitizer
run of ``make asan-test`` lowers it).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ladders import BAD_LADDERS, gaussian_peaks, simple_ladder

from nmrladder.kernels import align, ladder, rescale
from nmrladder.runtime import InputError, preprocess, reference

pytestmark = pytest.mark.skipif(not preprocess.KERNELS_BUILT, reason="kernels not built")

EXAMPLES = int(os.environ.get("NMRLADDER_TEST_EXAMPLES", "40"))


def examples(n: int = EXAMPLES):
    return settings(
        max_examples=max(1, n), deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def assert_close(actual, expected, rtol=1e-5, scale=None):
    """Floats within rtol relative, relative to the largest value where values cross zero."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    if scale is None:
        # NaN entries (e.g. no masked point in a row) must match as NaN; they set no scale.
        finite = np.abs(expected[np.isfinite(expected)])
        scale = finite.max() if finite.size else 0.0
    np.testing.assert_allclose(
        actual, expected, rtol=rtol, atol=rtol * 1e-3 * scale, equal_nan=True
    )


# --------------------------------------------------------------------------- inputs


KINDS = ("normal", "offset", "integers", "constant", "spiky", "float64")


def make_values(length: int, seed: int, kind: str) -> np.ndarray:
    """Test vectors: float32 unless kind == "float64"; ties, constants and outliers included."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=length).astype(np.float32)
    if kind == "offset":
        return (1e3 + rng.normal(0, 0.5, length)).astype(np.float32)
    if kind == "integers":  # many ties
        return rng.integers(-3, 4, length).astype(np.float32)
    if kind == "constant":
        return np.full(length, 2.5, dtype=np.float32)
    if kind == "spiky":
        x = rng.normal(size=length).astype(np.float32)
        x[rng.random(length) < 0.02] = 1e6
        return x
    return rng.normal(3.0, 2.0, length)


lengths = st.one_of(st.integers(1, 64), st.integers(1, 65536), st.sampled_from([8191, 8192, 32768]))
values = st.builds(make_values, lengths, st.integers(0, 2**32 - 1), st.sampled_from(KINDS))


def random_mask(length: int, seed: int, density: float) -> np.ndarray:
    return np.random.default_rng(seed).random(length) < density


densities = st.sampled_from([0.0, 0.02, 0.3, 0.9, 1.0])


def lorentzian_ladder(rng, rungs: int = 4, length: int = 4096, factor: float = 2.0) -> np.ndarray:
    """A simulated-like ladder [R, L] float32: Lorentzian lines, drift by Fourier shift, noise
    falling by `factor` per rung, and a random affine normalisation per rung."""
    i = np.arange(length)
    n_lines = int(rng.integers(3, 15))
    centres = rng.uniform(0.05 * length, 0.95 * length, n_lines)
    widths = rng.uniform(0.5, 4.0, n_lines)
    heights = rng.uniform(0.2, 1.0, n_lines)
    clean = sum(
        h / (1 + ((i - c) / w) ** 2) for c, h, w in zip(centres, heights, widths, strict=True)
    )
    frequencies = np.fft.rfftfreq(length)
    rungs_out = []
    for k in range(rungs):
        drift = rng.uniform(-5.0, 5.0)
        shifted = np.fft.irfft(
            np.fft.rfft(clean) * np.exp(-2j * np.pi * frequencies * drift), n=length
        )
        noisy = shifted + rng.normal(0.0, 0.05 * factor**-k, length)
        rungs_out.append(rng.uniform(0.5, 3.0) * noisy + rng.uniform(-1.0, 1.0))
    return np.array(rungs_out, dtype=np.float32)


# --------------------------------------------------------------------------- robust statistics


@examples()
@given(values, st.integers(0, 2**32 - 1), densities, st.floats(0.0, 100.0))
def test_order_statistics_equal_numpy(x, seed, density, q):
    mask = random_mask(x.size, seed, density)
    for m in (None, mask):
        assert_close(preprocess.median(x, m), reference.median(x, m))
        assert_close(preprocess.percentile(x, q, m), reference.percentile(x, q, m))
        assert_close(preprocess.mad_sigma(x, m), reference.mad_sigma(x, m))
        assert_close(
            preprocess.median_and_percentile(x, q, m), reference.median_and_percentile(x, q, m)
        )


def test_order_statistics_are_exact_values():
    rng = np.random.default_rng(3)
    for length in (1, 2, 3, 1000, 8192, 32768, 65536):
        x = rng.normal(size=length).astype(np.float32)
        assert preprocess.median(x) == np.median(x.astype(np.float64))
        assert preprocess.percentile(x, 95.0) == np.percentile(x.astype(np.float64), 95.0)
        assert preprocess.mad_sigma(x) == reference.mad_sigma(x)
    assert np.isnan(preprocess.median(np.zeros(0, np.float32)))
    assert np.isnan(preprocess.mad_sigma(np.ones(10, np.float32), np.zeros(10, bool)))


@pytest.mark.parametrize("length", [8192, 20001, 65536])
def test_bracket_selection_on_hard_inputs(length):
    """Long inputs take the sampled-bracket path: ties on the bracket edges, sorted and
    periodic inputs (a biased sample), extreme ranks (fallback to radix) stay exact."""
    rng = np.random.default_rng(length)
    i = np.arange(length)
    cases = {
        "ties": rng.integers(0, 5, length).astype(np.float32),
        "sorted": np.sort(rng.normal(size=length)),
        "reversed": np.sort(rng.normal(size=length))[::-1].copy(),
        "periodic": np.sin(i * 2 * np.pi / 1024).astype(np.float32),
        "one value and outliers": np.where(rng.random(length) < 0.6, 1.0, rng.normal(size=length)),
        "spikes": np.where(rng.random(length) < 0.01, 1e30, rng.normal(size=length)),
    }
    for name, x in cases.items():
        x64 = np.asarray(x, dtype=np.float64)
        for q in (0.0, 0.1, 37.5, 50.0, 95.0, 99.99, 100.0):
            assert preprocess.percentile(x, q) == np.percentile(x64, q), (name, q)
        assert preprocess.median(x) == np.median(x64), name
        assert preprocess.mad_sigma(x) == reference.mad_sigma(x), name


@examples(10)
@given(st.integers(1, 6), st.integers(1, 5000), st.integers(0, 2**32 - 1), densities)
def test_mad_sigma_batch_and_detrended(rows, length, seed, density):
    rng = np.random.default_rng(seed)
    spectra = rng.normal(size=(rows, length)).astype(np.float32)
    masks = rng.random((rows, length)) < max(density, 0.05)
    assert_close(preprocess.mad_sigma_batch(spectra), reference.mad_sigma_batch(spectra))
    assert_close(
        preprocess.mad_sigma_batch(spectra, masks), reference.mad_sigma_batch(spectra, masks)
    )
    for radius in (0, 3, 64, length + 5):
        assert_close(
            preprocess.mad_sigma_detrended(spectra[0], masks[0], radius),
            reference.mad_sigma_detrended(spectra[0], masks[0], radius),
        )


@examples(10)
@given(st.integers(1, 5), st.integers(1, 20000), st.integers(0, 2**32 - 1))
def test_robust_scale_batch_equals_reference(rows, length, seed):
    rng = np.random.default_rng(seed)
    spectra = rng.normal(3.0, 0.5, size=(rows, length)).astype(np.float32)
    spectra[:, length // 3 : length // 3 + 40] += 400.0  # a tall peak
    centers, sigmas = preprocess.robust_scale_batch(spectra)
    expected = reference.robust_scale_batch(spectra)
    assert_close(centers, expected[0])
    assert_close(sigmas, expected[1])
    assert_close(
        preprocess.robust_scale(spectra[0], 4.0, 3, 16),
        reference.robust_scale(spectra[0], 4.0, 3, 16),
    )


@examples(10)
@given(
    st.integers(1, 4),
    st.integers(1, 5000),
    st.integers(0, 40),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**32 - 1),
)
def test_standardise_equals_numpy_bit_for_bit(rows, length, padding, dtype, seed):
    """The network's input: (x - center) / sigma in float64 cast to float32, zero padding."""
    rng = np.random.default_rng(seed)
    spectra = (rng.normal(3.0, 0.5, size=(rows, length)) * 10.0 ** rng.integers(-3, 4)).astype(
        dtype
    )
    centers = rng.normal(3.0, 1.0, size=rows)
    sigmas = rng.uniform(1e-3, 2.0, size=rows)
    z = preprocess.standardise(spectra, centers, sigmas, length + padding)
    expected = np.zeros((rows, length + padding), dtype=np.float32)
    expected[:, :length] = (spectra.astype(np.float64) - centers[:, None]) / sigmas[:, None]
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z, expected)
    padded = reference.standardise(spectra, centers, sigmas, length + padding)
    np.testing.assert_array_equal(padded, expected)


# --------------------------------------------------------------------------- masks


@examples()
@given(
    st.integers(1, 3),
    st.integers(1, 20000),
    st.integers(0, 2**32 - 1),
    densities,
    st.one_of(st.integers(0, 20), st.integers(0, 30000)),
)
def test_dilate_and_erode_equal_reference(rows, length, seed, density, radius):
    mask = np.random.default_rng(seed).random((rows, length)) < density
    assert np.array_equal(preprocess.dilate(mask, radius), reference.dilate(mask, radius))
    assert np.array_equal(preprocess.erode(mask, radius), reference.erode(mask, radius))
    assert np.array_equal(preprocess.dilate(mask[0], radius), reference.dilate(mask[0], radius))


def test_dilate_erode_match_scipy():
    mask = np.random.default_rng(5).random(3000) < 0.05
    for radius in (1, 8, 40):
        structure = np.ones(2 * radius + 1, bool)
        assert np.array_equal(preprocess.dilate(mask, radius), ndi.binary_dilation(mask, structure))
        assert np.array_equal(
            preprocess.erode(~mask, radius), ndi.binary_erosion(~mask, structure, border_value=1)
        )


@examples()
@given(
    st.integers(1, 20000),
    st.integers(0, 2**32 - 1),
    densities,
    st.integers(0, 12),
    st.sampled_from([0.0, 0.5, 1.5, 3.0]),
)
def test_dilate_components_equals_reference(length, seed, density, radius, relative):
    mask = random_mask(length, seed, density)
    assert np.array_equal(
        preprocess.dilate_components(mask, radius, relative),
        reference.dilate_components(mask, radius, relative),
    )


@examples(15)
@given(
    st.integers(1, 4),
    st.integers(1, 20000),
    st.integers(0, 2**32 - 1),
    st.sampled_from([(3, 1), (9, 2), (11, 3), (21, 2)]),
)
def test_smooth_equals_reference(rows, length, seed, window):
    x = np.random.default_rng(seed).normal(size=(rows, length)).astype(np.float32)
    assert_close(preprocess.smooth(x, *window), reference.smooth(x, *window), rtol=1e-9)


@examples(15)
@given(
    st.integers(1, 4),
    st.integers(16, 20000),
    st.integers(0, 2**32 - 1),
    st.sampled_from([(9,), (1,), (5, 17)]),
    st.floats(2.0, 6.0),
)
def test_masks_equal_reference(rows, length, seed, windows, alpha):
    rng = np.random.default_rng(seed)
    spectra = rng.normal(size=(rows, length)).astype(np.float32)
    spectra[:, length // 2] += 50.0
    noise = rng.uniform(0.5, 2.0, rows)
    assert np.array_equal(
        preprocess.threshold_mask(spectra, alpha), reference.threshold_mask(spectra, alpha)
    )
    expected = reference.peak_and_baseline_masks(spectra, noise, alpha, 4, 1.5, 2, windows, 2)
    actual = preprocess.peak_and_baseline_masks(spectra, noise, alpha, 4, 1.5, 2, windows, 2)
    assert np.array_equal(actual[0], expected[0]) and np.array_equal(actual[1], expected[1])


# --------------------------------------------------------------------------- alignment


@examples()
@given(st.integers(2, 6000), st.integers(0, 2**32 - 1), st.integers(0, 80))
def test_cross_correlation_direct_and_fft_equal_reference(length, seed, max_lag):
    rng = np.random.default_rng(seed)
    ref, x = rng.normal(size=length), rng.normal(size=length)
    expected = reference.cross_correlation(ref, x, max_lag)
    scale = np.abs(expected).max()
    for method in (align.DIRECT, align.FFT):
        actual = align.cross_correlation(ref, x, max_lag, method)
        assert_close(actual, expected, rtol=1e-9, scale=scale)
    assert_close(preprocess.cross_correlation(ref, x, max_lag), expected, rtol=1e-9, scale=scale)


def test_cost_model_prefers_direct_for_narrow_lag_ranges():
    assert not align.prefer_fft(32768, 111)
    assert align.prefer_fft(32768, 20001) and not align.prefer_fft(32768, 2001)


@examples()
@given(
    st.integers(64, 20000),
    st.floats(-30.0, 30.0),
    st.integers(0, 2**32 - 1),
    st.sampled_from([5, 20, 50]),
)
def test_estimate_shift_equals_reference(length, shift, seed, max_lag):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1 * length, 0.9 * length, 4)
    ref = gaussian_peaks(length, centres) + rng.normal(0, 0.01, length)
    x = gaussian_peaks(length, centres + shift) + rng.normal(0, 0.01, length)
    expected = reference.estimate_shift(ref, x, max_lag)
    assert abs(preprocess.estimate_shift(ref, x, max_lag) - expected) < 1e-3
    rows = np.stack([x, ref, np.roll(x, 3)]).astype(np.float32)
    np.testing.assert_allclose(
        preprocess.estimate_shifts(ref.astype(np.float32), rows, max_lag),
        reference.estimate_shifts(ref.astype(np.float32), rows, max_lag),
        atol=1e-3,
    )


@pytest.mark.parametrize("gap", [1e-7, 1e-9, 0.0])
def test_screened_shift_estimate_resolves_near_ties_exactly(gap):
    """Long lines are screened in float32; two correlation peaks closer than float32 can
    tell apart must still be decided by the exact values (as the reference decides)."""
    rng = np.random.default_rng(17)
    length = 8192
    ref = gaussian_peaks(length, rng.uniform(500, 7500, 6), 1.5) + rng.normal(0, 1e-3, length)
    x = np.roll(ref, 7) + (1.0 + gap) * np.roll(ref, -12)
    for candidate in (x, x[::-1].copy()):
        expected = reference.estimate_shift(ref, candidate, 50)
        assert abs(preprocess.estimate_shift(ref, candidate, 50) - expected) < 1e-3


def test_estimate_shift_with_lags_beyond_half_the_length():
    rng = np.random.default_rng(11)
    ref, x = rng.normal(size=100), rng.normal(size=100)
    for max_lag in (50, 99, 150):
        assert (
            abs(
                preprocess.estimate_shift(ref, x, max_lag)
                - reference.estimate_shift(ref, x, max_lag)
            )
            < 1e-3
        )


@examples()
@given(
    st.integers(1, 20000),
    st.integers(0, 2**32 - 1),
    st.one_of(st.floats(-100.0, 100.0), st.sampled_from([0.0, -0.5, 0.5, 1e6 + 0.25])),
)
def test_apply_shift_equals_reference_and_scipy(length, seed, shift):
    x = np.random.default_rng(seed).normal(size=(2, length)).astype(np.float32)
    expected = reference.apply_shift(x, shift)
    assert_close(preprocess.apply_shift(x, shift), expected, rtol=1e-12)
    assert_close(
        preprocess.apply_shift(x, np.array([shift, -shift])),
        reference.apply_shift(x, np.array([shift, -shift])),
        rtol=1e-12,
    )
    if abs(shift) < 1e3:  # scipy interpolates its own way: equal to rounding
        np.testing.assert_allclose(
            preprocess.apply_shift(x[0], shift),
            ndi.shift(x[0].astype(np.float64), shift, order=1, mode="grid-wrap"),
            atol=1e-9,
        )


@examples(15)
@given(st.integers(1, 20000), st.integers(0, 2**32 - 1), st.floats(0.0, 40.0))
def test_apply_shift_field_equals_reference(length, seed, spread):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, length))
    field = rng.normal(0.0, spread, length)
    assert_close(
        preprocess.apply_shift_field(x, field), reference.apply_shift_field(x, field), rtol=1e-12
    )


@examples(15)
@given(
    st.integers(300, 12000),
    st.integers(0, 2**32 - 1),
    st.sampled_from([(64, 6, 16), (128, 10, 4), (32, 3, 0)]),
)
def test_local_shift_field_and_anchors_equal_reference(length, seed, params):
    window, max_lag, n_anchors = params
    rng = np.random.default_rng(seed)
    centres = np.sort(rng.uniform(0.05 * length, 0.95 * length, 12))
    ref = gaussian_peaks(length, centres, 2.0) + rng.normal(0, 0.01, length)
    drift = 2.0 * np.sin(centres / length * 3.0)
    x = gaussian_peaks(length, centres + drift, 2.0) + rng.normal(0, 0.01, length)
    assert np.array_equal(
        align.anchors(ref, n_anchors, window), reference.find_anchors(ref, n_anchors, window)
    )
    np.testing.assert_allclose(
        preprocess.local_shift_field(ref, x, window, max_lag, n_anchors),
        reference.local_shift_field(ref, x, window, max_lag, n_anchors),
        atol=1e-3,
    )


# --------------------------------------------------------------------------- scale and fusion


@examples()
@given(
    st.integers(1, 5000),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["deming", "ls", "inverse"]),
    st.sampled_from([0.0, 1e-3, 0.1, 1.0]),
    st.sampled_from([0.0, 1e-3, 0.05, 1.0]),
    densities,
)
def test_ls_scale_equals_reference(length, seed, method, noise_ref, noise_x, density):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=length)
    x = 0.4 * ref + rng.normal(0, 0.1, length)
    mask = random_mask(length, seed, density)
    assert_close(
        preprocess.ls_scale(ref, x, mask, method, noise_ref, noise_x),
        reference.ls_scale(ref, x, mask, method, noise_ref, noise_x),
        rtol=1e-9,
    )


@examples()
@given(
    st.lists(st.floats(-5.0, 100.0), min_size=2, max_size=8),
    st.floats(1.0, 4.0),
    st.sampled_from(["snr", "t", "top"]),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
    st.one_of(st.none(), st.floats(0.5, 1.0)),
)
def test_fusion_weights_and_fuse_equal_reference(snr, t_hat, method, gamma, w_max):
    snr = np.array(snr)
    try:
        expected = reference.fusion_weights(snr, t_hat, method, gamma, w_max)
    except InputError as error:
        with pytest.raises(InputError, match=str(error).split(":")[0]):
            preprocess.fusion_weights(snr, t_hat, method, gamma, w_max)
        return
    weights = preprocess.fusion_weights(snr, t_hat, method, gamma, w_max)
    assert_close(weights, expected, rtol=1e-9)
    if np.isnan(expected).any():  # the reference's water-filling divides by zero here
        return
    spectra = np.random.default_rng(0).normal(size=(snr.size, 257))
    assert_close(preprocess.fuse(spectra, weights), reference.fuse(spectra, expected), rtol=1e-9)


# --------------------------------------------------------------------------- the ladder chain


FIELDS = ("aligned", "offsets", "shifts", "scales", "sigma", "snr", "t_hat", "weights", "s_hat")


def assert_same_result(actual, expected):
    for name in FIELDS:
        a, e = getattr(actual, name), getattr(expected, name)
        if name == "shifts":
            np.testing.assert_allclose(a, e, atol=1e-3)
        else:
            assert_close(a, e)
    assert np.array_equal(actual.peak_mask, expected.peak_mask)
    assert np.array_equal(actual.base_mask, expected.base_mask)
    assert actual.params == expected.params


CHAIN_OPTIONS = [
    {},
    {"reference": "fused"},
    {"local": True, "local_window": 64, "local_max_lag": 6},
    {"local": True, "reference": "fused", "w_max": 0.4, "n_anchors": 0},
    {"weights": "t", "scale_method": "ls", "smooth_windows": (5, 17), "dilate_relative": 0.0},
    {"weights": "top", "scale_method": "inverse", "max_lag": 20, "trend_radius": 8},
]


@pytest.mark.parametrize("options", CHAIN_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_chain_equals_reference(options):
    rng = np.random.default_rng(sum(map(ord, str(options))))
    batch = np.stack([lorentzian_ladder(rng, rungs=4) for _ in range(3)])
    assert_same_result(
        preprocess.preprocess_ladders(batch, **options),
        reference.preprocess_ladders(batch, **options),
    )
    single = preprocess.preprocess_ladder(batch[1], name="x", **options)
    expected = reference.preprocess_ladder(batch[1], name="x", **options)
    assert_same_result(single, expected)
    assert isinstance(single.t_hat, float)
    if options.get("local"):
        np.testing.assert_allclose(single.shift_fields, expected.shift_fields, atol=1e-3)
        assert single.shift_fields.dtype == np.float32
    else:
        assert single.shift_fields is None


@examples(6)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.sampled_from([512, 2048, 8192]))
def test_chain_equals_reference_on_random_ladders(seed, rungs, length):
    rng = np.random.default_rng(seed)
    batch = np.stack([lorentzian_ladder(rng, rungs, length), lorentzian_ladder(rng, rungs, length)])
    try:
        expected = reference.preprocess_ladders(batch)
    except InputError as err:  # a draw with no baseline left (seed 0, 6 rungs, 512 points)
        with pytest.raises(InputError) as refused:
            preprocess.preprocess_ladders(batch)
        assert str(refused.value) == str(err)  # the chain refuses it the same way
        return
    assert_same_result(preprocess.preprocess_ladders(batch), expected)


def test_chain_takes_float64_and_integer_input():
    rng = np.random.default_rng(21)
    ladder64 = lorentzian_ladder(rng).astype(np.float64)
    assert_same_result(
        preprocess.preprocess_ladder(ladder64), reference.preprocess_ladder(ladder64)
    )
    counts = np.round(ladder64 * 1000).astype(np.int32)
    assert_same_result(preprocess.preprocess_ladder(counts), reference.preprocess_ladder(counts))


def test_chain_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(8)
    batch = np.stack([lorentzian_ladder(rng, 3, 2048) for _ in range(5)])
    one = preprocess.preprocess_ladders(batch, threads=1, reference="fused", local=True)
    two = preprocess.preprocess_ladders(batch, threads=2, reference="fused", local=True)
    for name in (*FIELDS, "peak_mask", "base_mask"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    spectra = batch.reshape(-1, 2048)
    assert np.array_equal(
        preprocess.mad_sigma_batch(spectra, threads=1),
        preprocess.mad_sigma_batch(spectra, threads=2),
    )
    assert np.array_equal(
        preprocess.smooth(spectra, 9, 2, threads=1), preprocess.smooth(spectra, 9, 2, threads=2)
    )
    assert np.array_equal(
        preprocess.robust_scale_batch(spectra, threads=1)[1],
        preprocess.robust_scale_batch(spectra, threads=2)[1],
    )


# --------------------------------------------------------------------------- bad input


def reference_error(function, *args, **kwargs) -> str:
    with pytest.raises(InputError) as caught:
        function(*args, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize(("mutate", "message"), BAD_LADDERS)
def test_bad_ladders_raise_the_reference_errors(mutate, message):
    bad = mutate(simple_ladder(np.random.default_rng(0)))
    expected = reference_error(reference.preprocess_ladder, bad)
    assert message in expected
    assert reference_error(preprocess.preprocess_ladder, bad) == expected


def test_errors_inside_the_chain_name_the_ladder_and_come_back_as_status():
    rng = np.random.default_rng(1)
    good = simple_ladder(rng)
    noise = rng.normal(size=(3, 2048))
    # in native code: a status per ladder, the reference's message in Python
    statuses = ladder_status(np.stack([good, noise]), alpha=8.0)
    assert list(statuses) == [ladder.STATUS_OK, ladder.STATUS_NO_PEAK]
    for batch in (
        np.stack([good, noise]),
        np.stack([good, good, np.where(good > 1, np.nan, good)]),
    ):
        expected = reference_error(reference.preprocess_ladders, batch, alpha=8.0)
        assert reference_error(preprocess.preprocess_ladders, batch, alpha=8.0) == expected
        assert "ladders[1]" in expected or "ladders[2]" in expected
    flipped = np.stack([good[0], -good[1], good[2]])  # max_lag 0: no shift can hide the sign
    expected = reference_error(reference.preprocess_ladder, flipped, max_lag=0)
    assert "rung 1" in expected
    assert reference_error(preprocess.preprocess_ladder, flipped, max_lag=0) == expected
    assert ladder_status(flipped[None], max_lag=0)[0] == ladder.STATUS_BAD_SCALE


def ladder_status(batch: np.ndarray, **options) -> np.ndarray:
    """The native chain's per-ladder status codes, without the dispatch layer."""
    opts = reference.make_options(**options)
    x32 = np.ascontiguousarray(batch, dtype=np.float32)
    offsets = np.median(x32.astype(np.float64), axis=-1)
    ordered = np.sort(x32.astype(np.float64), axis=-1)
    length = x32.shape[-1]
    middles = np.ascontiguousarray(ordered[..., [(length - 1) // 2, length // 2]])
    taps, counts = preprocess._window_taps(opts.smooth_windows, opts.smooth_polyorder)
    result = ladder.preprocess_batch(
        x32,
        offsets,
        middles,
        fused=False,
        local=False,
        max_lag=opts.max_lag,
        local_window=opts.local_window,
        local_max_lag=opts.local_max_lag,
        n_anchors=opts.n_anchors,
        alpha=opts.alpha,
        dilate_radius=opts.dilate_radius,
        dilate_relative=opts.dilate_relative,
        erode_radius=opts.erode_radius,
        trend_radius=opts.trend_radius,
        savgol_taps=taps,
        tap_counts=counts,
        weights_method=rescale.WEIGHT_METHODS[opts.weights],
        gamma=opts.gamma,
        has_cap=False,
        cap=0.0,
        scale_method=rescale.SCALE_METHODS[opts.scale_method],
        percentile=opts.snr_percentile,
        shift_taps=reference.gaussian_taps(1.5),
    )
    return result["status"]


def test_bad_options_and_batches_raise_the_reference_errors():
    rng = np.random.default_rng(2)
    good = simple_ladder(rng)
    cases = [
        (reference.preprocess_ladder, preprocess.preprocess_ladder, (good,), {"alpah": 3}),
        (
            reference.preprocess_ladder,
            preprocess.preprocess_ladder,
            (good,),
            {"smooth_windows": (8,)},
        ),
        (reference.preprocess_ladder, preprocess.preprocess_ladder, (good,), {"w_max": 0.1}),
        (reference.preprocess_ladder, preprocess.preprocess_ladder, (good,), {"weights": "median"}),
        (reference.preprocess_ladders, preprocess.preprocess_ladders, (good,), {}),
        (reference.preprocess_ladders, preprocess.preprocess_ladders, (good[None, :, :0][:0],), {}),
    ]
    for ref_fn, kernel_fn, args, options in cases:
        assert reference_error(kernel_fn, *args, **options) == reference_error(
            ref_fn, *args, **options
        )
    with pytest.raises(ValueError, match="Percentiles"):
        preprocess.preprocess_ladder(good, snr_percentile=101.0)


@pytest.mark.parametrize("seed", [0, 2])
def test_degenerate_noise_estimates_are_decided_by_the_reference(seed):
    # trend_radius 0 makes a detrended MAD zero: the kernel defers such a ladder to the
    # reference, whose outcome (an error or a result) it then returns.
    good = simple_ladder(np.random.default_rng(seed))
    try:
        expected = reference.preprocess_ladder(good, trend_radius=0)
    except InputError as error:
        assert reference_error(preprocess.preprocess_ladder, good, trend_radius=0) == str(error)
    else:
        assert_same_result(preprocess.preprocess_ladder(good, trend_radius=0), expected)


@pytest.mark.parametrize(
    ("function", "args"),
    [
        (preprocess.median, (np.array([1.0, np.nan, 2.0]),)),
        (preprocess.mad_sigma_batch, (np.array([[1.0, np.inf]]),)),
        (preprocess.smooth, (np.array([1.0, np.nan, 2.0, 3.0]), 3, 1)),
        (preprocess.apply_shift, (np.ones(8), np.nan)),
        (preprocess.estimate_shift, (np.ones(8), np.array([1.0] * 7 + [np.nan]), 2)),
        (preprocess.robust_scale_batch, (np.array([[np.nan] * 20]),)),
    ],
)
def test_kernels_reject_nan_before_running(function, args):
    with pytest.raises(InputError, match="NaN/Inf"):
        function(*args)


# --------------------------------------------------------------------------- the switch


@pytest.mark.skipif(os.environ.get("NMRLADDER_EXPECT_ASAN") != "1", reason="make asan-test only")
def test_runs_under_address_sanitizer():
    """make asan-test: the kernels come from the sanitizer build and libasan is loaded."""
    from nmrladder.kernels import checks, masks, robust

    build = os.path.abspath(os.environ["NMRLADDER_KERNELS_PATH"])
    for module in (align, checks, ladder, masks, rescale, robust):
        assert os.path.abspath(module.__file__).startswith(build), module.__file__
    with open("/proc/self/maps") as maps:
        assert "libasan" in maps.read()


def test_reference_can_be_forced():
    x = np.random.default_rng(4).normal(size=100)
    assert preprocess.backend() == "kernels"
    with preprocess.use_reference():
        assert preprocess.backend() == "reference"
        assert np.isnan(preprocess.median(np.array([1.0, np.nan])))  # the reference's NaN
        assert preprocess.mad_sigma(x) == reference.mad_sigma(x)
    assert preprocess.backend() == "kernels"
    # the environment switch, read at import
    code = "from nmrladder.runtime import preprocess; print(preprocess.backend())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "NMRLADDER_KERNELS": "reference"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "reference"


def test_chain_options_are_the_references():
    """The native chain implements every PreprocessOptions field; a new one needs a kernel."""
    from dataclasses import fields

    assert {f.name for f in fields(reference.PreprocessOptions)} == preprocess.CHAIN_OPTIONS
