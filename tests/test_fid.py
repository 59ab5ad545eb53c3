"""FID processing (nmrladder.runtime.fid) against NumPy's transform of the documented steps,
analytic lines (known frequency, width and phase), and its own linearity."""

from __future__ import annotations

import dataclasses

import nmrglue as ng
import numpy as np
import pytest

from nmrladder.runtime import fid as F
from nmrladder.runtime.errors import InputError

SW = 5000.0  # Hz
OBS = 400.0  # MHz
CAR = 1880.0  # Hz: the centre of the spectrum is at 4.7 ppm
TD = 3000  # complex points: zero-filled to 8192
LINES = [(-1200.0, 1.0, 2.0), (450.0, 0.6, 3.0), (1800.0, 0.3, 1.5)]  # Hz, height, FWHM Hz


def line_fid(lines=LINES, td=TD, sign=-1.0, phase_deg=0.0, seed=None) -> np.ndarray:
    """Damped lines at offsets nu (Hz) above the carrier: exp(sign 2 pi i nu t - pi fwhm t),
    sign -1 as Varian and Spinsolve store them, +1 as Bruker does (its spectrum comes out the
    other way round), times a constant phase error, with optional noise."""
    t = np.arange(td) / SW
    fid = sum(h * np.exp(sign * 2j * np.pi * nu * t - np.pi * w * t) for nu, h, w in lines)
    fid = fid * np.exp(1j * np.deg2rad(phase_deg))
    if seed is not None:
        rng = np.random.default_rng(seed)
        fid = fid + 0.002 * (rng.normal(size=td) + 1j * rng.normal(size=td))
    return fid


def params(**changes) -> F.FidParams:
    base = F.FidParams(SW, OBS, CAR, "1H", source="synthetic.fid")
    return dataclasses.replace(base, **changes)


def local_maxima(y: np.ndarray, level: float) -> np.ndarray:
    inner = (y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > level * y.max())
    return np.flatnonzero(inner) + 1


def numpy_reference(fid, lb_hz, size, p0, p1, conjugate=False) -> np.ndarray:
    """The documented steps written with NumPy alone: first point halved, exp(-pi lb t),
    (conjugate), zero filling, DFT with the zero frequency in the middle, linear phase."""
    fid = np.asarray(fid, dtype=complex).copy()
    fid[0] *= 0.5
    fid = fid * np.exp(-np.pi * lb_hz * np.arange(fid.size) / SW)
    if conjugate:
        fid = np.conj(fid)
    padded = np.zeros(size, complex)
    padded[: fid.size] = fid
    spectrum = np.fft.fftshift(np.fft.fft(padded))
    phase = np.deg2rad(p0 + p1 * np.arange(size) / size)
    return (spectrum * np.exp(1j * phase)).real


@pytest.mark.parametrize("conjugate", [False, True])
def test_a_given_phase_gives_numpys_transform_of_the_documented_steps(conjugate):
    fid = line_fid(sign=1.0 if conjugate else -1.0, seed=1)
    spectrum, ppm, record = F.process_fid(
        fid, params(conjugate=conjugate), lb_hz=0.7, phase=(25.0, -40.0)
    )
    assert record.size == 8192 and record.points == TD and record.phase == "given"
    expected = numpy_reference(fid, 0.7, 8192, 25.0, -40.0, conjugate)
    np.testing.assert_allclose(spectrum, expected, atol=1e-9 * np.abs(expected).max())
    assert (record.p0, record.p1, record.lb_hz) == (25.0, -40.0, 0.7)


@pytest.mark.parametrize("conjugate", [False, True])
def test_lines_land_at_carrier_plus_offset_over_obs(conjugate):
    """Either quadrature convention puts a line nu Hz above the carrier at (car + nu) / obs
    ppm; the axis runs from high to low ppm."""
    fid = line_fid(sign=1.0 if conjugate else -1.0)
    spectrum, ppm, _ = F.process_fid(fid, params(conjugate=conjugate), phase=(0.0, 0.0))
    step = SW / OBS / ppm.size
    assert ppm[0] == pytest.approx((CAR + SW / 2) / OBS) and np.all(np.diff(ppm) < 0)
    found = sorted(ppm[local_maxima(spectrum, 0.1)])
    expected = sorted((CAR + nu) / OBS for nu, _, _ in LINES)
    np.testing.assert_allclose(found, expected, atol=1.5 * step)


@pytest.mark.parametrize("error_deg", [0.0, 70.0, -130.0, 180.0])
def test_automatic_phase_undoes_a_constant_phase_error(error_deg):
    fid = line_fid(phase_deg=error_deg, seed=2)
    spectrum, _, record = F.process_fid(fid, params())
    ideal, _, _ = F.process_fid(line_fid(seed=2), params(), phase=(0.0, 0.0))
    assert record.phase == "automatic" and record.positive_fraction > 0.95
    assert np.corrcoef(spectrum, ideal)[0, 1] > 0.995
    # the correction at the lines: -error (mod 360), whatever p1 the optimiser settled on
    for index in local_maxima(ideal, 0.2):
        applied = record.p0 + record.p1 * index / record.size
        assert np.cos(np.deg2rad(applied + error_deg)) > 0.99


def test_line_broadening_adds_lb_to_the_line_width():
    """exp(-pi lb t) on the FID widens a Lorentzian by lb Hz (full width at half height)."""
    fid = line_fid(lines=[(300.0, 1.0, 2.0)], td=16384)
    for lb in (0.0, 3.0):
        spectrum, _, record = F.process_fid(fid, params(), lb_hz=lb, phase=(0.0, 0.0))
        hz_per_point = SW / record.size
        above = np.flatnonzero(spectrum >= spectrum.max() / 2)
        assert (above[-1] - above[0] + 1) * hz_per_point == pytest.approx(2.0 + lb, abs=0.25)


def test_default_line_broadening_by_nucleus():
    assert F.default_lb("1H") == 0.3
    assert F.default_lb("13C") == F.default_lb("19F") == F.default_lb("31P") == 1.0
    assert F.default_lb("15N") == F.OTHER_LB_HZ
    _, _, record = F.process_fid(line_fid(), params(nucleus="13C"), phase=(0.0, 0.0))
    assert record.lb_hz == 1.0


@pytest.mark.parametrize(("points", "size"), [(8, 16), (1000, 2048), (1024, 2048), (3000, 8192)])
def test_zero_filled_to_a_power_of_two_of_at_least_twice_the_points(points, size):
    assert F.zero_filled_size(points) == size


def test_rows_share_one_phase_and_add_up():
    """process_fids: every row gets the phase of the rows' sum (automatic) or the given one,
    and the transform is linear: the rows' spectra add up to the sum's spectrum."""
    rows = np.stack([line_fid(phase_deg=40.0, seed=seed) for seed in range(4)])
    spectra, ppm, record = F.process_fids(rows, params())
    summed, _, summed_record = F.process_fid(rows.sum(axis=0), params())
    assert (record.p0, record.p1) == pytest.approx((summed_record.p0, summed_record.p1))
    np.testing.assert_allclose(spectra.sum(axis=0), summed, atol=1e-9 * np.abs(summed).max())
    alone, _, _ = F.process_fid(rows[2], params(), phase=(record.p0, record.p1))
    np.testing.assert_allclose(spectra[2], alone, atol=1e-12 * np.abs(alone).max())
    given, _, given_record = F.process_fids(rows, params(), phase=(10.0, 5.0))
    assert given_record.phase == "given" and (given_record.p0, given_record.p1) == (10.0, 5.0)
    assert given.shape == spectra.shape == (4, record.size)


def test_a_mostly_negative_automatic_phase_is_turned_by_180_degrees(monkeypatch):
    """The positive-absorption check: an automatic phase that leaves the lines negative is
    turned (here the optimiser is made to return the wrong half-turn)."""
    fid = line_fid(seed=3)
    right, _, record = F.process_fid(fid, params())

    def wrong_half_turn(data, fn, **kwargs):
        return None, [record.p0 + 180.0, record.p1]

    monkeypatch.setattr(ng.proc_autophase, "autops", wrong_half_turn)
    turned, _, turned_record = F.process_fid(fid, params())
    assert turned_record.flipped and not record.flipped
    np.testing.assert_allclose(turned, right, atol=1e-9 * np.abs(right).max())


def test_digital_filter_group_delay_is_removed():
    """A FID delayed by a whole group delay (as a Bruker digital filter delivers it), processed
    with that GRPDLY, gives the undelayed FID's spectrum (minus the points nmrglue drops)."""
    fid = line_fid(td=4096, seed=4)
    delay = 68
    delayed = np.roll(fid, delay)  # the FID has decayed: its tail wraps round as ~zero
    filtered = params(digital_filter=(20.0, 20, float(delay)))
    spectrum, _, record = F.process_fid(delayed, filtered, phase=(0.0, 0.0))
    dropped = int(np.floor(delay + 2.0))  # nmrglue's rm_dig_filter drops GRPDLY + 2 points
    assert record.points == 4096 - dropped and record.digital_filter == (20.0, 20, 68.0)
    expected, _, _ = F.process_fid(fid[: 4096 - dropped], params(), phase=(0.0, 0.0))
    assert np.max(np.abs(spectrum - expected)) < 1e-3 * np.max(np.abs(expected))
    left_in, _, _ = F.process_fid(delayed, params(), phase=(0.0, 0.0))
    assert np.max(np.abs(left_in - expected)) > 0.5 * np.max(np.abs(expected))


def test_no_ppm_axis_without_reference_frequency():
    _, ppm, record = F.process_fid(line_fid(), params(obs_mhz=None), phase=(0.0, 0.0))
    assert ppm is None and record.size == 8192


@pytest.mark.parametrize(
    ("fid", "changes", "problem"),
    [
        (np.zeros(TD, complex), {}, "all zeros"),
        (np.r_[line_fid()[:-1], np.nan], {}, "NaN/Inf"),
        (line_fid()[:4], {}, "too few"),
        (line_fid(), {"sw_hz": -5.0}, "spectral width"),
        (line_fid(), {"digital_filter": (7.0, 10, -1.0)}, "digital filter"),
    ],
    ids=["zeros", "nan", "short", "sw", "unknown-filter"],
)
def test_bad_fids_are_named_errors(fid, changes, problem):
    with pytest.raises(InputError, match=problem) as caught:
        F.process_fid(fid, params(**changes))
    assert str(caught.value).startswith("synthetic.fid: ") and "\n" not in str(caught.value)


def test_record_summary_is_one_line_with_the_values():
    _, _, record = F.process_fid(line_fid(), params(digital_filter=None))
    text = record.summary()
    assert "\n" not in text and "LB 0.3 Hz" in text and "3000 -> 8192" in text
    assert f"p0 {record.p0:.1f}" in text and "automatic" in text
    assert record.as_meta()["size"] == 8192
