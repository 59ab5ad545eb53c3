"""The measures of the realism check (scripts/realism_measures.py) on analytic cases, the FID
recipe of the real data (scripts/realism_data.py) on a synthetic FID, and the docs section
writer (scripts/realism_report.py)."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rm = _load("realism_measures")
rd = _load("realism_data")
report = _load("realism_report")

L = 16384


def line(centre, fwhm_pts, phase_deg=0.0, height=1.0, gauss_pts=0.0, length=L, td=None):
    """Complex spectrum of one line at point ``centre`` (FID of ``td`` points, default
    length // 2, zero-filled to ``length``): a Lorentzian of FWHM ``fwhm_pts`` times a
    Gaussian decay of FWHM ``gauss_pts`` (points of the spectrum), phase error phase_deg."""
    td = length // 2 if td is None else td
    m = np.arange(td)
    f = (centre - length / 2) / length
    g = np.exp(2j * np.pi * f * m - np.pi * fwhm_pts / length * m
               - (np.pi * gauss_pts / length * m) ** 2 / (4 * math.log(2)))
    g[0] *= 0.5
    s = np.fft.fftshift(np.fft.fft(g * np.exp(1j * math.radians(phase_deg)), length))
    return s * height / np.abs(s).max()


@pytest.mark.parametrize("centre", [8000.0, 8000.37])
@pytest.mark.parametrize("fwhm", [3.0, 5.0, 12.0])
def test_fwhm_of_a_lorentzian(centre, fwhm):
    x = line(centre, fwhm).real
    peaks = rm.peak_widths(x, 1e-9)
    assert len(peaks) == 1
    assert peaks[0]["fwhm"] == pytest.approx(fwhm, rel=2e-3)
    assert peaks[0]["index"] == pytest.approx(centre, abs=0.07)


def test_fwhm_of_a_gaussian_and_of_the_tallest_isolated_lines():
    x = line(6000.2, 0.0, gauss_pts=8.0).real
    assert rm.peak_widths(x, 1e-9)[0]["fwhm"] == pytest.approx(8.0, rel=3e-3)
    # Two lines 4 points apart (their valley above half height) are not isolated: only the
    # third line counts.
    x = (line(5000.0, 3.0) + line(5004.0, 3.0) + line(9000.0, 4.0, height=0.5)).real
    peaks = rm.peak_widths(x, 1e-9)
    assert [round(p["index"]) for p in peaks] == [9000]
    assert peaks[0]["fwhm"] == pytest.approx(4.0, rel=3e-3)


def test_noise_autocorrelation_of_white_and_moving_average_noise():
    w = np.random.default_rng(3).standard_normal(1 << 17)
    lag1, lag2 = rm.noise_autocorr(w)
    assert abs(lag1) < 0.015 and abs(lag2) < 0.015
    lag1, lag2 = rm.noise_autocorr(w + np.roll(w, 1))  # MA(2): 1/2, 0
    assert lag1 == pytest.approx(0.5, abs=0.015) and abs(lag2) < 0.015
    lag1, lag2 = rm.noise_autocorr(w + np.roll(w, 1) + np.roll(w, 2))  # MA(3): 2/3, 1/3
    assert lag1 == pytest.approx(2 / 3, abs=0.015) and lag2 == pytest.approx(1 / 3, abs=0.015)
    assert rm.noise_sd(3.0 * w) == pytest.approx(3.0, rel=0.03)


def test_noise_autocorrelation_ignores_peaks():
    w = np.random.default_rng(4).standard_normal(L)
    x = w + line(5000.0, 4.0, height=400.0).real + line(11000.0, 30.0, height=200.0).real
    lag1, _ = rm.noise_autocorr(x)
    assert abs(lag1) < 0.04


def test_analytic_rebuilds_the_imaginary_part_and_resamples():
    s = line(7000.4, 6.0, phase_deg=25.0)
    z = rm.analytic(s.real)
    # The imaginary part of the halved first FID point is a constant the real part lacks.
    offset = np.median(s.imag - z.imag)
    np.testing.assert_allclose(z.imag + offset, s.imag, atol=1e-9)
    up = rm.resample(line(8000.0, 6.0).real, 4 * L)
    assert int(np.argmax(up)) == 32000
    assert up.max() == pytest.approx(line(8000.0, 6.0).real.max(), rel=1e-9)
    assert int(np.argmax(rm.resample(line(8000.0, 6.0).real, L // 4))) == 2000


@pytest.mark.parametrize("phase", [0.0, 6.0, -15.0])
def test_phase_error_of_a_lorentzian_and_a_gaussian(phase):
    m = rm.measure_spectrum(line(8000.3, 4.0, phase).real, sigma=0.0,
                            noise=np.random.default_rng(0).standard_normal(L))
    assert m["phase_deg"] == pytest.approx(abs(phase), abs=0.05)
    m = rm.measure_spectrum(line(8000.3, 0.0, phase, gauss_pts=6.0).real, sigma=0.0,
                            noise=np.random.default_rng(0).standard_normal(L))
    assert m["phase_deg"] == pytest.approx(abs(phase), abs=0.05)


def test_phase_error_with_a_neighbour_of_the_same_phase():
    s = line(8100.0, 3.0, 7.0, height=1.0) + line(8000.0, 4.0, 7.0, height=0.4)
    assert rm.measure_spectrum(s.real, sigma=0.0)["phase_deg"] == pytest.approx(7.0, abs=0.1)


def test_baseline_range_of_a_known_roll():
    i = np.arange(L)
    roll = 0.01 * np.cos(2 * np.pi * i / L) + 0.004 * np.sin(6 * np.pi * i / L)
    x = (line(5000.0, 4.0) + line(9000.0, 3.0, height=0.6) + line(12000.0, 5.0, height=0.3)).real
    core = roll[int(0.05 * L): int(0.95 * L)]
    expected = (core.max() - core.min()) / x.max()
    assert rm.baseline_range(x + roll, 0.0) == pytest.approx(expected, rel=0.1)
    assert rm.baseline_range(x, 0.0) < 0.1 * expected


def test_fid_recipe_phases_a_dephased_fid():
    sw, td = 5000.0, 4096
    t = np.arange(td) / sw
    fid = sum(h * np.exp(2j * np.pi * f * t - np.pi * 2.0 * t) for f, h in
              ((-900.0, 1.0), (300.0, 0.6), (1400.0, 0.3)))
    fid = fid * np.exp(1j * math.radians(40.0))
    spec = rd.process_fid(fid, sw, 1.0)
    assert spec.size == 8192
    m = rm.measure_spectrum(spec)
    assert m["phase_deg"] < 2.0
    assert spec.max() > 0 and spec.max() > 3 * -spec.min()
    # 2 Hz lines + 1 Hz of apodization = 3 Hz.
    assert m["fwhm_pts"] * sw / spec.size == pytest.approx(3.0, rel=0.03)


def test_docs_section_replaces_only_its_block(tmp_path):
    result = {
        "length": L, "snr": 20.0, "samples": 3, "seed": 1, "recipe": "R.",
        "measures": {"fwhm_pts": "width"}, "skipped": [],
        "families": {"13c": {
            "simulated": {k: {"n": 3, "p5": 1.0, "p25": 1.5, "p50": 2.0, "p75": 2.5, "p95": 3.0}
                          for k, _, _ in report.COLUMNS},
            "real": [{"source": "fid", **{k: 10.0 for k, _, _ in report.COLUMNS}}],
        }},
    }
    docs = tmp_path / "simulator.md"
    docs.write_text("# Title\n\nText kept.\n")
    report.write_docs(result, docs, "figures")
    first = docs.read_text()
    assert first.startswith("# Title\n\nText kept.\n\n" + report.SECTION + "\n")
    assert "| 13c | simulated | 3 | 2 (1–3) |" in first
    assert "| 13c | real, FIDs processed here | 1 | 10 † |" in first
    docs.write_text(first + "\n## Later section\n\nMore.\n")
    report.write_docs(result, docs, "figures")
    second = docs.read_text()
    assert second == first + "\n## Later section\n\nMore.\n"
    assert second.count(report.BEGIN) == 1
    docs.write_text("only " + report.BEGIN + "\n")
    with pytest.raises(ValueError, match="not a pair"):
        report.write_docs(result, docs, "figures")
