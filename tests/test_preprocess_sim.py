"""The preprocessing chain against the simulator's known truth (METHOD 2.1-2.4, 3.1).

Everything here runs through the public API (nmrladder.runtime.preprocess: the compiled
kernels where built) and, for a sample, through the NumPy reference.
"""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats

from nmrladder.runtime import preprocess, reference
from nmrladder.train.simulate import fourier_shift_real, simulate_ladders

NO_PHASE_ERROR = {"phase0_deg": 0.0, "phase1_deg": 0.0}


def _truth_in_top_frame(lad, i, result, field="truth"):
    """The noise-free spectrum in the aligned, re-scaled frame of the top rung (xbar units)."""
    top = lad.rungs - 1
    shifted = fourier_shift_real(getattr(lad, field)[i], lad.shifts[i, top])
    offset = lad.norm_offset[i, top] if field == "truth" else 0.0
    in_units = (shifted - offset) / lad.norm_scale[i, top]
    return in_units - (result.offsets[top] if field == "truth" else 0.0)


@pytest.fixture(scope="module")
def ladders_snr10():
    return simulate_ladders(16, 4, 16384, 2.0, 10.0, seed=11, **NO_PHASE_ERROR)


@pytest.fixture(scope="module")
def results_snr10(ladders_snr10):
    return preprocess.preprocess_ladders(ladders_snr10.x)


def test_global_alignment_accuracy(ladders_snr10, results_snr10):
    true_relative = ladders_snr10.shifts - ladders_snr10.shifts[:, -1:]
    errors = np.abs(results_snr10.shifts - true_relative)[:, :-1].ravel()
    assert np.median(errors) <= 0.05
    assert np.percentile(errors, 95) <= 0.2


def test_local_alignment_beats_global_on_two_region_drift():
    lad = simulate_ladders(
        6, 3, 16384, 2.0, 20.0, seed=5, nonlinear_drift=1.0, region_drift=4.0, **NO_PHASE_ERROR
    )
    local_err, global_err = [], []
    for i in range(len(lad)):
        edges = lad.region_edges[i]
        true_field = np.zeros((lad.rungs, lad.length))
        for g in range(lad.region_shifts.shape[2]):
            span = slice(edges[g], edges[g + 1])
            true_field[:, span] = (lad.region_shifts[i, :, g] - lad.region_shifts[i, -1, g])[
                :, None
            ]
        glob = preprocess.preprocess_ladder(lad.x[i])
        loc = preprocess.preprocess_ladder(lad.x[i], local=True)
        peaks = loc.peak_mask
        for k in range(lad.rungs - 1):
            global_err.append(np.mean(np.abs(glob.shifts[k] - true_field[k][peaks])))
            local_err.append(np.mean(np.abs(loc.shift_fields[k][peaks] - true_field[k][peaks])))
    assert np.mean(local_err) < 0.5 * np.mean(global_err)


def test_sigma_matches_true_noise(ladders_snr10, results_snr10):
    lad, res = ladders_snr10, results_snr10
    # the noise of rung k in the top rung's normalised units
    true_sigma = lad.noise_sigma / lad.norm_scale[:, -1:]
    ratio = res.sigma / true_sigma
    assert np.all(np.abs(ratio - 1.0) < 0.10), ratio


def test_sigma_equals_scipy_mad_on_the_same_baseline_points(ladders_snr10, results_snr10):
    x = ladders_snr10.x[0, 0].astype(np.float64)
    base = results_snr10.base_mask[0]
    plain = scipy.stats.median_abs_deviation(x[base], scale=1.0) * 1.4826
    assert preprocess.mad_sigma(x, base) == pytest.approx(plain, rel=1e-5)
    # detrended: the trend is a normalised box filter over the masked points (SciPy oracle)
    r = 64
    num = ndi.uniform_filter1d(np.where(base, x, 0.0), 2 * r + 1, mode="constant")[base]
    den = ndi.uniform_filter1d(base.astype(np.float64), 2 * r + 1, mode="constant")[base]
    detrended = scipy.stats.median_abs_deviation(x[base] - num / den, scale=1.0) * 1.4826
    assert reference.mad_sigma_detrended(x, base, r) == pytest.approx(detrended, rel=1e-5)


def test_masks_equal_scipy_morphology(results_snr10, ladders_snr10):
    res = results_snr10
    opts = reference.PreprocessOptions()
    # B is the complement of M eroded with the border counted as baseline
    structure = np.ones(2 * opts.erode_radius + 1, dtype=bool)
    for i in range(3):
        expected = ndi.binary_erosion(~res.peak_mask[i], structure=structure, border_value=1)
        np.testing.assert_array_equal(res.base_mask[i], expected)
    # component dilation: each labelled run grown by its own reach
    seed_mask = np.zeros(4000, dtype=bool)
    seed_mask[[100, 101, 102, 1500, 3990]] = True
    seed_mask[2000:2040] = True
    labels, n = ndi.label(seed_mask)
    expected = np.zeros_like(seed_mask)
    for lab in range(1, n + 1):
        run = labels == lab
        reach = max(4, int(np.ceil(1.5 * run.sum())))
        expected |= ndi.binary_dilation(run, structure=np.ones(2 * reach + 1, dtype=bool))
    np.testing.assert_array_equal(reference.dilate_components(seed_mask, 4, 1.5), expected)


def test_peak_mask_holds_the_truth_and_baseline_does_not(ladders_snr10, results_snr10):
    """Per ladder, M holds >= 95 % of the lines' absolute area and B < 1 % of their energy,
    except where lines lie below the top rung's noise (no threshold can find those): the
    median ladder meets both with margin and no ladder is far off."""
    lad, res = ladders_snr10, results_snr10
    area_in_m, energy_in_b = [], []
    for i in range(len(lad)):
        lines = np.abs(fourier_shift_real(lad.truth_peaks[i], lad.shifts[i, -1]))
        area_in_m.append(lines[res.peak_mask[i]].sum() / lines.sum())
        energy_in_b.append((lines[res.base_mask[i]] ** 2).sum() / (lines**2).sum())
    assert np.median(area_in_m) >= 0.95 and np.min(area_in_m) >= 0.85, area_in_m
    assert np.median(energy_in_b) < 0.01 and np.max(energy_in_b) < 0.03, energy_in_b
    assert np.mean(np.array(area_in_m) >= 0.95) >= 0.75


@pytest.mark.parametrize(("T", "rungs"), [(1.5, 4), (2.0, 3), (3.0, 4)])
def test_t_hat_within_ten_percent(T, rungs):
    lad = simulate_ladders(8, rungs, 8192, T, 10.0, seed=int(T * 10) + rungs)
    res = preprocess.preprocess_ladders(lad.x)
    assert np.all(np.abs(res.t_hat / lad.T - 1.0) <= 0.10), res.t_hat / lad.T


def test_pseudo_truth_beats_the_top_rung(ladders_snr10, results_snr10):
    lad, res = ladders_snr10, results_snr10
    for i in range(len(lad)):
        truth = _truth_in_top_frame(lad, i, res[i])
        top_error = np.sqrt(np.mean((res.aligned[i, -1] - truth) ** 2))
        fused_error = np.sqrt(np.mean((res.s_hat[i] - truth) ** 2))
        assert fused_error < top_error, (i, fused_error, top_error)


def test_fusion_cap_is_honoured(ladders_snr10):
    res = preprocess.preprocess_ladder(ladders_snr10.x[0], w_max=0.4)
    assert res.weights.max() <= 0.4 + 1e-12
    assert res.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(
        res.s_hat, reference.fuse(res.aligned, res.weights), rtol=1e-5, atol=1e-6
    )


def test_fused_reference_and_local_options_run(ladders_snr10):
    x = ladders_snr10.x[1]
    fused = preprocess.preprocess_ladder(x, reference="fused")
    top = preprocess.preprocess_ladder(x)
    # the fused pass aligns to s_hat, which lives in the top rung's frame: shifts agree
    np.testing.assert_allclose(fused.shifts, top.shifts, atol=0.1)
    assert fused.params["reference"] == "fused"
