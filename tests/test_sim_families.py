"""The simulator's families, its exact spin systems and the structure-known oracle, against
analytic spectra and the simulator's own truth."""

import numpy as np
import pytest

from nmrladder.runtime import InputError
from nmrladder.train.sim.spins import spin_system_lines
from nmrladder.train.simulate import FAMILY_NAMES, load_ladders, simulate_ladders

LARMOR = {"1H": 1.0, "13C": 0.25145020, "19F": 0.94094011, "31P": 0.40480742}


def ab_quartet(delta_hz, j_hz):
    """The textbook AB quartet about 0: lines at +-(C + J/2), +-(C - J/2), C the half
    distance sqrt(delta^2 + J^2) / 2; outer/inner intensity (1 - sin 2t) / (1 + sin 2t)."""
    c = np.hypot(delta_hz, j_hz) / 2
    sin2t = j_hz / (2 * c)
    freq = np.array([-(c + j_hz / 2), -(c - j_hz / 2), c - j_hz / 2, c + j_hz / 2])
    inten = np.array([1 - sin2t, 1 + sin2t, 1 + sin2t, 1 - sin2t]) / 2
    return freq, inten


@pytest.mark.parametrize(("delta", "j"), [(10.0, 7.0), (3.0, 12.0), (200.0, 7.0)])
def test_ab_system_is_the_analytic_quartet(delta, j):
    freq, inten = spin_system_lines([-delta / 2, delta / 2], [[0, j], [j, 0]])
    want_f, want_i = ab_quartet(delta, j)
    np.testing.assert_allclose(freq, want_f, atol=1e-9)
    np.testing.assert_allclose(inten, want_i, atol=1e-9)


def test_weak_coupling_gives_first_order_multiplets():
    # AX2 far apart: A is a 1:2:1 triplet (intensity 1), X a doublet (intensity 2).
    j = np.zeros((3, 3))
    j[0, 1:] = j[1:, 0] = 6.0
    freq, inten = spin_system_lines([0.0, 1e6, 1e6], j)
    a = freq < 5e5
    np.testing.assert_allclose(freq[a], [-6.0, 0.0, 6.0], atol=1e-3)
    np.testing.assert_allclose(inten[a], [0.25, 0.5, 0.25], atol=1e-4)
    np.testing.assert_allclose(freq[~a] - 1e6, [-3.0, 3.0], atol=1e-3)
    np.testing.assert_allclose(inten.sum(), 3.0, atol=1e-9)


def test_equivalent_spins_do_not_split_each_other():
    freq, inten = spin_system_lines([40.0, 40.0], [[0, 12.0], [12.0, 0]])
    np.testing.assert_allclose(freq, [40.0], atol=1e-9)
    np.testing.assert_allclose(inten, [2.0], atol=1e-9)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_simulates_with_its_nucleus(family):
    lad = simulate_ladders(3, 2, 4096, 2.0, 10.0, 3, family=family)
    nucleus = {"1h": "1H", "1h-benchtop": "1H", "13c": "13C", "19f": "19F", "31p": "31P"}[family]
    assert set(lad.acq["family"]) == {family}
    assert set(lad.acq["nucleus"]) == {nucleus}
    np.testing.assert_allclose(lad.acq["mhz"] / lad.acq["spectrometer_mhz"], LARMOR[nucleus])
    assert np.isfinite(lad.x).all() and np.abs(lad.truth_peaks).max() > 0


def test_family_field_ranges():
    high = simulate_ladders(20, 2, 1024, 2.0, 10.0, 0, family="1h")
    bench = simulate_ladders(20, 2, 1024, 2.0, 10.0, 0, family="1h-benchtop")
    assert high.acq["spectrometer_mhz"].min() >= 300 and high.acq["spectrometer_mhz"].max() <= 1200
    assert bench.acq["spectrometer_mhz"].min() >= 40 and bench.acq["spectrometer_mhz"].max() <= 100


def fwhm_points(spectrum):
    k = int(np.argmax(spectrum))
    half = spectrum[k] / 2
    left, right = k, k
    while left > 0 and spectrum[left] > half:
        left -= 1
    while right < spectrum.size - 1 and spectrum[right] > half:
        right += 1
    return right - left - 1


def test_carbon_lines_are_a_few_points_wide_at_16k():
    lad = simulate_ladders(12, 2, 16384, 2.0, 10.0, 5, family="13c")
    widths = [fwhm_points(lad.truth_peaks[i]) for i in range(len(lad))]
    assert 1 <= np.median(widths) <= 4


def test_carbon_solvents_are_the_deuterium_multiplets():
    lad = simulate_ladders(40, 2, 8192, 2.0, 10.0, 7, family="13c")
    solvents = {round(float(p), 2) for p in lad.acq["solvent_ppm"] if np.isfinite(p)}
    assert solvents == {77.16, 39.52}


def test_a_family_and_a_contradicting_nucleus_are_refused():
    with pytest.raises(InputError, match="contradicts family '13c'"):
        simulate_ladders(1, 2, 1024, 2.0, 5.0, 0, family="13c", nucleus="1H")
    with pytest.raises(InputError, match="unknown family '2h'"):
        simulate_ladders(1, 2, 1024, 2.0, 5.0, 0, family="2h")


def rung0_truth(lad, i):
    """Rung 0's noise-free content (exact with keep_clean, else the Fourier-shifted truth)."""
    return lad.shifted_truth(i)[0]


@pytest.mark.parametrize("family", ["1h", "13c", "31p"])
def test_oracle_recovers_the_truth_without_noise(family):
    # At SNR 1e7 the least-squares fit over the true line shapes must give back rung 0's
    # noise-free content: the basis is exactly what the simulator summed.
    lad = simulate_ladders(2, 2, 4096, 2.0, 1e7, 11, family=family, keep_oracle=True,
                           nonlinear_drift=1.0, keep_clean=True)
    for i in range(len(lad)):
        np.testing.assert_allclose(lad.oracle[i], rung0_truth(lad, i), atol=2e-5)


def test_oracle_beats_the_noisy_input_and_round_trips(tmp_path):
    lad = simulate_ladders(4, 2, 4096, 2.0, 5.0, 13, family="19f", keep_oracle=True)
    err_in = err_oracle = 0.0
    for i in range(len(lad)):
        truth = rung0_truth(lad, i)
        err_in += np.mean((lad.denormalised(i)[0] - truth) ** 2)
        err_oracle += np.mean((lad.oracle[i] - truth) ** 2)
    assert err_oracle < err_in / 10
    back = load_ladders(lad.save(tmp_path / "o.h5"))
    np.testing.assert_array_equal(back.oracle, lad.oracle)
