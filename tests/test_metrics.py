"""Metric functions of METHOD 7 against analytic spectra and SciPy."""

import math

import numpy as np
import pytest
from scipy.signal import find_peaks

from nmrladder.train import metrics


def lorentzian(length, center, fwhm, height=1.0):
    x = np.arange(length, dtype=np.float64)
    return height / (1.0 + ((x - center) / (fwhm / 2)) ** 2)


def gaussian(length, center, fwhm, height=1.0):
    x = np.arange(length, dtype=np.float64)
    return height * np.exp(-4 * math.log(2) * ((x - center) / fwhm) ** 2)


# --------------------------------------------------------------------------- SNR


def test_error_snr_db_of_a_known_error():
    truth = np.ones(100)
    estimate = truth + 0.1 * np.where(np.arange(100) % 2, 1.0, -1.0)  # error power 1
    assert metrics.error_snr_db(estimate, truth) == pytest.approx(20.0)
    mask = np.zeros(100, dtype=bool)
    mask[:10] = True  # signal 10, error 0.1
    assert metrics.error_snr_db(estimate, truth, mask) == pytest.approx(20.0)
    estimate[:10] = truth[:10]
    assert metrics.error_snr_db(estimate, truth, mask) == math.inf
    assert math.isnan(metrics.error_snr_db(estimate, truth, np.zeros(100, dtype=bool)))


def test_gain_is_the_reduction_of_the_squared_error():
    rng = np.random.default_rng(0)
    truth = lorentzian(1000, 500, 8, 5.0)
    noisy = truth + rng.normal(size=1000)
    halved = truth + 0.5 * (noisy - truth)  # error amplitude halved: 6.02 dB
    gain = metrics.error_snr_db(halved, truth) - metrics.error_snr_db(noisy, truth)
    assert gain == pytest.approx(20 * math.log10(2))


def test_snr_out_on_an_analytic_spectrum():
    y = np.where(np.arange(200) % 2, 1.0, -1.0)  # baseline: median 0, std 1
    peak_mask = np.zeros(200, dtype=bool)
    peak_mask[90:110] = True
    y[90:110] = 10.0
    base_mask = ~peak_mask
    assert metrics.snr_out(y, peak_mask, base_mask) == pytest.approx(10.0)
    # P95 of the peak values 1..20 is np.percentile's interpolated 19.05
    y[90:110] = np.arange(1, 21)
    assert metrics.snr_out(y, peak_mask, base_mask) == pytest.approx(19.05)
    # a window without the peak mask has no P95 to take
    assert math.isnan(metrics.snr_out(y, peak_mask, base_mask, window=(0, 80)))
    flat = np.zeros(200)
    flat[peak_mask] = 3.0
    assert metrics.snr_out(flat, peak_mask, base_mask) == math.inf


def test_peak_regions_of_a_lorentzian():
    line = lorentzian(400, 200.0, 10.0, height=4.0)  # HWHM 5
    sigma, fraction = 1.0, 0.25
    # |x - 200| <= 5 sqrt(h / thr - 1) = 5 sqrt(15) = 19.36 -> points 181..219
    core = metrics.peak_regions(line, sigma, fraction, dilate_radius=0)
    assert np.flatnonzero(core).tolist() == list(range(181, 220))
    dilated = metrics.peak_regions(line, sigma, fraction, dilate_radius=4)
    assert np.flatnonzero(dilated).tolist() == list(range(177, 224))
    assert not metrics.peak_regions(np.zeros(50), 1.0).any()


def test_baseline_level_is_the_median_over_the_mask():
    y = np.arange(10.0)
    mask = np.zeros(10, dtype=bool)
    mask[:3] = True
    assert metrics.baseline_level(y, mask) == 1.0
    assert metrics.baseline_level(y, np.zeros(10, dtype=bool)) == 4.5


# --------------------------------------------------------------------------- peaks


def test_detect_peaks_threshold_and_scipy():
    y = lorentzian(1000, 300, 6, 10.0) + lorentzian(1000, 700, 6, 3.0) + 2.0
    peaks = metrics.detect_peaks(y, sigma=1.0, threshold=4.0, baseline=2.0)
    assert peaks.indices.tolist() == [300]  # the height-3 line is below 4 sigma
    assert peaks.heights[0] == pytest.approx(10.0, abs=1e-3)  # + the other line's tail
    expected, _ = find_peaks(y, height=2.0 + 1.5, prominence=1.5)
    low = metrics.detect_peaks(y, sigma=1.0, threshold=1.5, baseline=2.0)
    assert low.indices.tolist() == expected.tolist() == [300, 700]
    assert low.above(4.0).tolist() == [True, False]


def test_refined_position_is_exact_on_a_parabola():
    x = np.arange(100, dtype=np.float64)
    y = 100.0 - (x - 50.3) ** 2
    assert metrics.refine_positions(y, np.array([50]))[0] == pytest.approx(50.3)
    # a well-sampled Lorentzian: within a few hundredths of a point
    line = lorentzian(200, 80.37, 12.0)
    assert metrics.detect_peaks(line, 0.01).positions[0] == pytest.approx(80.37, abs=0.03)


def test_main_peaks_are_the_tallest():
    y = sum(lorentzian(500, c, 4, h) for c, h in [(50, 1), (150, 5), (250, 3), (350, 4)])
    main = metrics.main_peaks(metrics.detect_peaks(y, 0.1, baseline=0.0), 2)
    assert main.indices.tolist() == [150, 350]


def test_matching_maximises_the_number_of_pairs():
    # nearest-first would pair 2 with 1.9 and leave 1 alone; two pairs fit the tolerance
    det, ref, dist = metrics.match_peaks(np.array([1.0, 2.0]), np.array([1.9, 2.8]), 1.0)
    assert sorted(zip(det.tolist(), ref.tolist(), strict=True)) == [(0, 0), (1, 1)]
    assert dist.tolist() == pytest.approx([0.9, 0.8])
    # one-to-one: two detections near one reference peak make one pair
    det, ref, _ = metrics.match_peaks(np.array([10.0, 10.4]), np.array([10.3]), 1.0)
    assert det.tolist() == [1] and ref.tolist() == [0]
    det, _, _ = metrics.match_peaks(np.array([]), np.array([1.0]), 1.0)
    assert det.size == 0


def test_matching_on_a_ppm_axis():
    axis = 10.0 - 0.01 * np.arange(100)  # decreasing, 0.01 ppm per point
    det, ref, dist = metrics.match_peaks(np.array([20.0, 50.0]), np.array([21.0, 53.0]),
                                         tolerance=0.015, axis=axis)
    assert det.tolist() == [0] and ref.tolist() == [0]
    assert dist[0] == pytest.approx(0.01)


def test_peak_scores():
    reference = np.array([10.0, 30.0, 50.0, 70.0])
    strong = np.array([True, True, True, False])  # 70 is a weak true line
    detected = np.array([10.5, 29.0, 70.2, 90.0])  # 50 missed, 90 false, 70 excused
    s = metrics.peak_scores(detected, reference, strong, tolerance=2.0)
    assert s.precision == pytest.approx(3 / 4)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))
    assert s.position_error == pytest.approx(0.75)  # strong pairs only: 0.5 and 1.0
    assert s.false_peaks == 1
    nothing = metrics.peak_scores(np.array([]), reference, strong, 2.0)
    assert math.isnan(nothing.precision) and nothing.recall == 0 and nothing.f1 == 0
    no_truth = metrics.peak_scores(detected, reference[:0], strong[:0], 2.0)
    assert no_truth.precision == 0 and math.isnan(no_truth.recall) and math.isnan(no_truth.f1)
    assert no_truth.false_peaks == 4


# --------------------------------------------------------------------------- line shape


@pytest.mark.parametrize("shape", [lorentzian, gaussian])
def test_fwhm_of_known_lines(shape):
    y = shape(2000, 1000.0, 12.5, 3.0)
    # crossings interpolated linearly between points: within a few tenths of a percent
    assert metrics.fwhm(y, 1000) == pytest.approx(12.5, rel=4e-3)
    assert metrics.fwhm(y + 7.0, 1000, baseline=7.0) == pytest.approx(12.5, rel=4e-3)
    assert math.isnan(metrics.fwhm(-y, 1000))


def test_integral_of_a_lorentzian():
    height, fwhm = 2.0, 10.0
    y = lorentzian(4000, 2000.0, fwhm, height)
    gamma = fwhm / 2
    window = 2 * fwhm
    # the sum over the points within +-window is the midpoint rule over +-(window + 0.5)
    expected = 2 * height * gamma * math.atan((window + 0.5) / gamma)
    assert metrics.peak_integral(y, 2000.0, window) == pytest.approx(expected, rel=2e-3)
    assert metrics.peak_integral(y + 1.0, 2000.0, window, 1.0) == pytest.approx(expected,
                                                                                 rel=2e-3)
    assert metrics.peak_integral(y, 2000.0, 1500.0) == pytest.approx(math.pi * height * gamma,
                                                                      rel=3e-3)


def test_relative_error_and_height_retention():
    assert metrics.relative_error(1.1, 1.0) == pytest.approx(0.1)
    assert metrics.relative_error(-0.9, -1.0) == pytest.approx(0.1)
    assert math.isnan(metrics.relative_error(1.0, 0.0))
    ref = lorentzian(100, 50, 5, 4.0) + 1.0
    out = 0.5 * (ref - 1.0) + 2.0
    kept = metrics.height_retention(out, ref, np.array([50]), baseline_y=2.0, baseline_ref=1.0)
    assert kept[0] == pytest.approx(0.5)


def test_l1_l2_distortion():
    ref = np.zeros(100)
    y = np.full(100, 0.3)
    assert metrics.l1_error(y, ref) == pytest.approx(0.3)
    assert metrics.l2_error(y, ref, scale=0.3) == pytest.approx(1.0)
    noise = np.random.default_rng(1).normal(0, 2.0, 200_000)
    assert metrics.l1_error(noise, ref[:1], 2.0) == pytest.approx(math.sqrt(2 / math.pi),
                                                                   rel=0.01)
    assert metrics.l2_error(noise, ref[:1], 2.0) == pytest.approx(1.0, rel=0.01)


def test_runs_touching_a_range():
    mask = np.array([0, 1, 1, 0, 0, 1, 1, 1, 0, 1], dtype=bool)
    assert np.flatnonzero(metrics.runs_touching(mask, 6, 7)).tolist() == [5, 6, 7]
    assert np.flatnonzero(metrics.runs_touching(mask, 2, 6)).tolist() == [1, 2, 5, 6, 7]
    assert not metrics.runs_touching(mask, 3, 5).any()
