"""The SNR-ladder simulator against independent oracles (SciPy's Fourier shift, the data)."""

import hashlib

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal

from nmrladder.cli import main
from nmrladder.runtime import InputError
from nmrladder.train import simulate as simulate_module
from nmrladder.train.simulate import (
    ACQ_FIELDS,
    NORM_METHODS,
    Ladders,
    load_ladders,
    open_ladders,
    simulate_ladders,
    simulate_to_file,
)

ARRAYS = ("x", "truth", "truth_peaks", "shifts", "region_shifts", "region_edges", "T", "snr",
          "noise_sigma", "norm_method", "norm_scale", "norm_offset")


def scipy_shift(y, d):
    """Oracle: y shifted by d points (out[i] = y[i - d]) with scipy.ndimage.fourier_shift."""
    return np.fft.ifft(ndi.fourier_shift(np.fft.fft(np.asarray(y, np.float64)), d)).real


def residual_noise(lad, i):
    """Rungs of sample i in truth units minus the truth shifted by each rung's drift."""
    raw = lad.x[i] * lad.norm_scale[i][:, None] + lad.norm_offset[i][:, None]
    return raw - np.stack([scipy_shift(lad.truth[i], d) for d in lad.shifts[i]])


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same(a: Ladders, b: Ladders):
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name
    assert (a.clean is None) == (b.clean is None)
    if a.clean is not None:
        assert a.clean.tobytes() == b.clean.tobytes()
    assert a.acq.keys() == b.acq.keys()
    for key in a.acq:
        assert a.acq[key].dtype == b.acq[key].dtype, key
        np.testing.assert_array_equal(a.acq[key], b.acq[key], err_msg=key)
    assert a.meta == b.meta


@pytest.fixture(scope="module")
def small():
    return simulate_ladders(5, 3, 1024, 2.0, 10.0, 7)


def test_shapes_dtypes_and_fields(small):
    n, R, L = 5, 3, 1024
    assert len(small) == n and small.rungs == R and small.length == L
    assert small.x.shape == (n, R, L) and small.x.dtype == np.float32
    assert small.truth.shape == small.truth_peaks.shape == (n, L)
    assert small.truth.dtype == small.truth_peaks.dtype == np.float32
    for name in ("shifts", "snr", "noise_sigma", "norm_scale", "norm_offset", "norm_method"):
        assert getattr(small, name).shape == (n, R), name
    assert small.region_shifts.shape == (n, R, 1)
    np.testing.assert_array_equal(small.region_shifts[..., 0], small.shifts)
    np.testing.assert_array_equal(small.region_edges, np.tile([0, L], (n, 1)))
    assert small.T.shape == (n,) and np.all(small.T == 2.0)
    assert np.all(np.abs(small.shifts) <= 20.0) and np.all(small.shifts != np.round(small.shifts))
    np.testing.assert_allclose(small.snr * small.noise_sigma, 1.0)
    ratio = small.snr / (10.0 * 2.0 ** np.arange(R))
    assert np.all(np.abs(ratio - 1) <= 0.03 + 1e-12)
    assert set(small.norm_names.ravel()) <= set(NORM_METHODS) - {"none"}
    assert set(small.acq) == set(ACQ_FIELDS)
    assert all(v.shape == (n,) for v in small.acq.values())
    assert small.clean is None
    for key in ("seed", "options", "nmrladder_version", "format_version", "snr_convention",
                "description", "shift_convention"):
        assert key in small.meta
    assert small.meta["seed"] == 7
    assert np.all(np.isfinite(small.x)) and np.all(np.isfinite(small.truth))


def test_ppm_axis_is_nmr_oriented_and_places_lines():
    lad = simulate_ladders(3, 2, 4096, 2.0, 50.0, 3, solvent_probability=1.0,
                           reference_probability=1.0, solvent_height=(20.0, 30.0))
    for i in range(3):
        ppm = lad.ppm_axis(i)
        assert np.all(np.diff(ppm) < 0)
        assert ppm[0] - ppm[-1] == pytest.approx(lad.acq["sw_ppm"][i] * (1 - 1 / 4096))
        assert ppm[2048] == pytest.approx(lad.acq["carrier_ppm"][i])
        step = lad.acq["sw_ppm"][i] / 4096
        # the solvent is the tallest line and sits at its ppm; the reference near 0 ppm
        assert ppm[np.argmax(lad.truth_peaks[i])] == pytest.approx(lad.acq["solvent_ppm"][i],
                                                                    abs=2 * step)
        near_ref = np.abs(ppm - lad.acq["reference_ppm"][i]) < 2 * step
        assert lad.truth_peaks[i][near_ref].max() > 0.05


def test_same_seed_same_bytes_whatever_workers_and_chunks(tmp_path):
    args = (6, 3, 1024, (1.5, 3.0), 8.0, 11)
    one = simulate_ladders(*args, workers=1, nonlinear_drift=0.5)
    two = simulate_ladders(*args, workers=2, nonlinear_drift=0.5)
    assert_same(one, two)
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    simulate_to_file(a, *args, chunk=2, workers=2, progress=False, nonlinear_drift=0.5)
    simulate_to_file(b, *args, chunk=5, workers=1, progress=False, nonlinear_drift=0.5)
    one.save(c)
    assert sha256(a) == sha256(b) == sha256(c)
    other = simulate_ladders(6, 3, 1024, (1.5, 3.0), 8.0, 12, nonlinear_drift=0.5)
    assert not np.array_equal(other.x, one.x)
    assert not np.array_equal(other.truth, one.truth)


def test_save_load_round_trip_is_exact(tmp_path):
    lad = simulate_ladders(4, 2, 512, 2.5, 6.0, 5, nonlinear_drift=1.0, keep_clean=True,
                           nucleus="13C")
    path = lad.save(tmp_path / "sub" / "l.h5")
    back = load_ladders(path)
    assert_same(lad, back)
    assert sorted(p.name for p in path.parent.iterdir()) == ["l.h5"]  # no temporary left


def test_a_failed_simulation_leaves_no_file(tmp_path, monkeypatch):
    real = simulate_module._simulate_sample

    def fail_on_five(index, cfg):
        if index == 5:
            raise RuntimeError("disk on fire")
        return real(index, cfg)

    monkeypatch.setattr(simulate_module, "_simulate_sample", fail_on_five)
    with pytest.raises(RuntimeError, match="disk on fire"):
        simulate_to_file(tmp_path / "f.h5", 8, 2, 512, 2.0, 5.0, 0, chunk=2, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_open_ladders_streams_what_load_reads(tmp_path):
    path = tmp_path / "s.h5"
    simulate_to_file(path, 7, 2, 512, 2.0, 5.0, 2, chunk=3, progress=False)
    full = load_ladders(path)
    with open_ladders(path) as lf:
        assert len(lf) == 7 and lf.rungs == 2 and lf.length == 512
        part = lf.read(slice(2, 5))
        np.testing.assert_array_equal(part.x, full.x[2:5])
        picked = lf.read(np.array([4, 0, 2]))
        np.testing.assert_array_equal(picked.truth, full.truth[[4, 0, 2]])
        np.testing.assert_array_equal(picked.acq["lineshape"], full.acq["lineshape"][[4, 0, 2]])
        np.testing.assert_array_equal(lf.read(3).x, full.x[3:4])
        batches = list(lf.iter_batches(3))
    assert [len(b) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b.x for b in batches]), full.x)
    np.testing.assert_array_equal(np.concatenate([b.norm_scale for b in batches]),
                                  full.norm_scale)


def test_drift_follows_the_shift_convention():
    lad = simulate_ladders(4, 3, 2048, 2.0, 100.0, 21, keep_clean=True, solvent_probability=0.0)
    L = 2048
    for i in range(4):
        for k in range(3):
            d = lad.shifts[i, k]
            expected = scipy_shift(lad.truth[i], d)
            np.testing.assert_allclose(lad.clean[i, k], expected, atol=2e-5)
            assert np.abs(lad.clean[i, k] - scipy_shift(lad.truth[i], -d)).max() > 0.05
            # plain peak positions: content moved to higher index by d (circularly)
            moved = (np.argmax(lad.clean[i, k]) - np.argmax(lad.truth[i]) + L // 2) % L - L // 2
            assert abs(moved - d) <= 1.0
        # shifted_truth (no clean kept) is the same content
        bare = Ladders(**{**lad.__dict__, "clean": None})
        np.testing.assert_allclose(bare.shifted_truth(i), lad.clean[i], atol=2e-5)


def test_rung_minus_shifted_truth_is_pure_noise():
    lad = simulate_ladders(4, 4, 4096, 2.0, 5.0, 8)
    for i in range(4):
        noise = residual_noise(lad, i)
        sigma = noise.std(axis=1)
        np.testing.assert_allclose(sigma, lad.noise_sigma[i], rtol=0.10)
        assert np.all(np.abs(noise.mean(axis=1)) < 0.1 * lad.noise_sigma[i])


@pytest.mark.parametrize("T", [1.5, 2.0, 3.0])
def test_noise_falls_by_T_per_rung(T):
    lad = simulate_ladders(3, 4, 8192, T, 5.0, 30)
    for i in range(3):
        sigma = residual_noise(lad, i).std(axis=1)
        ratio = sigma[:-1] / sigma[1:]
        np.testing.assert_allclose(ratio, T, rtol=0.10)


@pytest.mark.parametrize("snr", [3.0, 20.0])
def test_rung0_snr_matches_the_request(snr):
    lad = simulate_ladders(3, 2, 8192, 2.0, snr, 4, solvent_probability=0.0)
    for i in range(3):
        height = lad.truth_peaks[i].max()
        assert height == pytest.approx(1.0, abs=1e-6)  # truth units
        measured = height / residual_noise(lad, i)[0].std()
        assert measured == pytest.approx(snr, rel=0.15)


def test_solvent_is_not_the_reference_height():
    lad = simulate_ladders(4, 2, 4096, 2.0, 20.0, 6, solvent_probability=1.0,
                           solvent_height=(20.0, 30.0))
    for i in range(4):
        ppm = lad.ppm_axis(i)
        near = np.abs(ppm - lad.acq["solvent_ppm"][i]) < 0.05
        assert lad.truth_peaks[i][near].max() > 15.0
        assert lad.truth_peaks[i][np.abs(ppm - lad.acq["solvent_ppm"][i]) > 1.0].max() < 1.02


def test_truth_is_lines_plus_a_small_smooth_baseline(small):
    base = small.truth.astype(np.float64) - small.truth_peaks
    np.testing.assert_allclose(np.abs(base).max(axis=1), small.acq["baseline_max"], atol=1e-5)
    assert np.all(small.acq["baseline_max"] <= 0.02)
    spectrum = np.abs(np.fft.rfft(base, axis=1))
    assert spectrum[:, 5:].max() < 1e-3 * max(spectrum.max(), 1e-9) + 1e-4  # harmonics <= 3


@pytest.mark.parametrize("method", NORM_METHODS)
def test_fixed_normalisations(method):
    lad = simulate_ladders(3, 3, 2048, 2.0, 30.0, 9, normalisation=method)
    names = lad.norm_names
    x = lad.x.astype(np.float64)
    if method == "max":
        np.testing.assert_allclose(x.max(axis=-1), 1.0, rtol=1e-6)
    elif method == "zscore":
        np.testing.assert_allclose(x.mean(axis=-1), 0.0, atol=1e-5)
        np.testing.assert_allclose(x.std(axis=-1), 1.0, rtol=1e-5)
    elif method == "area":
        np.testing.assert_allclose(x.sum(axis=-1), 1.0, rtol=1e-4)
    elif method == "none":
        assert np.all(lad.norm_scale == 1.0) and np.all(lad.norm_offset == 0.0)
    elif method == "reference":
        assert set(names.ravel()) <= {"reference", "max"}
        for i in range(3):
            for k in range(3):
                p = int(round(lad.acq["ref_peak_index"][i] + lad.shifts[i, k]))
                assert x[i, k, p - 3 : p + 4].max() == pytest.approx(1.0, rel=1e-6)
    if method != "reference":
        assert set(names.ravel()) == {method}


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rungs": 1}, "rungs"),
        ({"length": 100}, "length"),
        ({"snr": 0.0}, "snr"),
        ({"snr": -2.0}, "snr"),
        ({"T": 1.0}, "T"),
        ({"T": (0.5, 2.0)}, "T"),
        ({"seed": -1}, "seed"),
        ({"normalisation": "median"}, "normalisation"),
        ({"nucleus": "2H"}, "nucleus"),
        ({"colour": "red"}, "colour"),
        ({"max_drift": -1.0}, "max_drift"),
        ({"nonlinear_drift": 1.5}, "nonlinear_drift"),
        ({"linewidth_hz": (5.0, 1.0)}, "linewidth_hz"),
        ({"zero_fill": 0}, "zero_fill"),
        ({"lineshape": "square"}, "lineshape"),
    ],
)
def test_bad_options_raise_input_error_naming_them(kwargs, name):
    args = {"n": 2, "rungs": 2, "length": 512, "T": 2.0, "snr": 5.0, "seed": 0}
    args.update(kwargs)
    with pytest.raises(InputError, match=name):
        simulate_ladders(**args)


def test_nonlinear_drift_shifts_each_region_on_its_own():
    lad = simulate_ladders(4, 3, 4096, 2.0, 100.0, 13, keep_clean=True, nonlinear_drift=1.0,
                           solvent_probability=0.0, n_multiplets=(8, 12))
    assert lad.region_shifts.shape == (4, 3, 3)
    for i in range(4):
        n_regions = int(lad.acq["n_regions"][i])
        assert n_regions in (2, 3)
        edges = lad.region_edges[i]
        assert edges[0] == 0 and edges[n_regions] == 4096 and np.all(np.diff(edges) >= 0)
        offsets = lad.region_shifts[i, :, :n_regions] - lad.shifts[i][:, None]
        assert np.all(np.abs(offsets) <= 3.0) and np.any(offsets != 0)
        for g in range(n_regions):
            inside = slice(edges[g] + 60, edges[g + 1] - 60)
            for k in range(3):
                expected = scipy_shift(lad.truth[i], lad.region_shifts[i, k, g])
                np.testing.assert_allclose(lad.clean[i, k, inside], expected[inside], atol=5e-3)
        approx = Ladders(**{**lad.__dict__, "clean": None}).shifted_truth(i)
        np.testing.assert_allclose(approx, lad.clean[i], atol=5e-3)
        noise = lad.x[i] * lad.norm_scale[i][:, None] + lad.norm_offset[i][:, None] - lad.clean[i]
        np.testing.assert_allclose(noise.std(axis=1), lad.noise_sigma[i], rtol=0.10)


@pytest.mark.parametrize(("kind", "ratios"), [("d", [1, 1]), ("t", [1, 2, 1]), ("q", [1, 3, 3, 1])])
def test_multiplets_have_binomial_intensities_and_even_splitting(kind, ratios):
    lad = simulate_ladders(2, 2, 16384, 2.0, 50.0, 4, multiplets={kind: 1.0},
                           n_multiplets=(1, 1), j_hz=(12.0, 16.0), linewidth_hz=(3.0, 3.2),
                           lineshape="gaussian", mhz_range=(400.0, 500.0), phase0_deg=0.0,
                           phase1_deg=0.0, apodization_probability=0.0, reference_probability=0.0,
                           solvent_probability=0.0, weak_peaks=(0, 0), baseline_amplitude=0.0)
    for i in range(2):
        peaks, props = scipy.signal.find_peaks(lad.truth[i], height=0.05)
        assert peaks.size == len(ratios)
        heights = props["peak_heights"]
        np.testing.assert_allclose(heights / heights.max(), np.array(ratios) / max(ratios),
                                   rtol=0.03)
        # equal splittings of J (12-16 Hz)
        hz_per_point = lad.acq["sw_hz"][i] / 16384
        gaps = np.diff(peaks) * hz_per_point
        tol = 1.5 * hz_per_point
        assert np.ptp(gaps) <= tol and np.all((gaps >= 12.0 - tol) & (gaps <= 16.0 + tol))


@pytest.mark.parametrize(("nucleus", "sw"), [("13C", (200, 240)), ("19F", (100, 300))])
def test_presets_beyond_1h(nucleus, sw):
    lad = simulate_ladders(3, 2, 2048, 2.0, 10.0, 1, nucleus=nucleus)
    assert np.all((lad.acq["sw_ppm"] >= sw[0]) & (lad.acq["sw_ppm"] <= sw[1]))
    assert set(lad.acq["nucleus"]) == {nucleus}
    ratio = {"13C": 0.2514502, "19F": 0.9409401}[nucleus]
    np.testing.assert_allclose(lad.acq["mhz"] / lad.acq["spectrometer_mhz"], ratio, rtol=1e-6)
    if nucleus == "13C":  # proton-decoupled singlets (+ reference, weak peaks, CDCl3 triplet)
        expected = (lad.acq["n_multiplets"] + np.isfinite(lad.acq["reference_ppm"])
                    + lad.acq["n_weak"] + 3 * np.isfinite(lad.acq["solvent_ppm"]))
        np.testing.assert_array_equal(lad.acq["n_lines"], expected)
    for i in range(3):
        np.testing.assert_allclose(residual_noise(lad, i).std(axis=1), lad.noise_sigma[i],
                                   rtol=0.15)


def test_out_of_distribution_options_are_honoured():
    lad = simulate_ladders(3, 2, 1024, 2.0, 10.0, 2, mhz_range=(900.0, 1000.0),
                           linewidth_hz=(8.0, 9.0), lineshape="gaussian", zero_fill=1,
                           apodization_probability=0.0, baseline_amplitude=0.0)
    assert np.all(lad.acq["spectrometer_mhz"] >= 900.0)
    assert np.all(lad.acq["gauss_hz"] >= 8.0) and set(lad.acq["lineshape"]) == {"gaussian"}
    assert np.all(lad.acq["td"] == 1024) and np.all(lad.acq["lb_hz"] == 0.0)
    np.testing.assert_array_equal(lad.truth, lad.truth_peaks)


def test_cli_simulate_writes_a_loadable_file(tmp_path, capsys):
    rc = main(["simulate", "--out", str(tmp_path), "--samples", "3", "--rungs", "3",
               "--length", "512", "--T", "1.5:2.5", "--snr", "4", "--seed", "1",
               "--workers", "1", "--no-progress"])
    assert rc == 0
    lad = load_ladders(tmp_path / "ladders.h5")
    assert lad.x.shape == (3, 3, 512)
    assert np.all((lad.T >= 1.5) & (lad.T <= 2.5))
    out = capsys.readouterr().out
    assert "ladders/s" in out and "N=3" in out
    assert main(["simulate", "--out", str(tmp_path / "bad"), "--rungs", "1"]) == 2
    assert not (tmp_path / "bad" / "ladders.h5").exists()
