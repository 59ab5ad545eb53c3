"""Every reader's ppm axis on real files, against values that do not come from the reader:
the header's own parameters (TopSpin's OFFSET, SW_p, SF; NMRPipe's ORIG, SW, OBS), read
line by line here, and known chemical shifts (the solvent and the compound's lines)."""

from __future__ import annotations

from pathlib import Path

import nmrglue as ng
import numpy as np
import pytest
from nmrfiles import jcamp_header_value, real_bruker, real_jcamp

from nmrladder.runtime.io import read_spectrum, write_spectrum

REALDATA = Path("/work/shared/realdata")


def tallest_shift(spectrum, low: float, high: float) -> float:
    """The ppm of the largest intensity between ``low`` and ``high`` ppm."""
    inside = (spectrum.ppm >= low) & (spectrum.ppm <= high)
    assert inside.sum() > 10, f"the axis hardly covers {low}..{high} ppm"
    return float(spectrum.ppm[inside][np.argmax(spectrum.intensities[inside])])


def assert_topspin_axis(spectrum, *, offset: float, sw_p: float, sf: float, si: int) -> None:
    """TopSpin's axis: the first point at OFFSET ppm, SI points SW_p / SF ppm wide."""
    step = sw_p / sf / si
    assert spectrum.ppm.size == si
    assert spectrum.ppm[0] == pytest.approx(offset, abs=0.01 * step)
    np.testing.assert_allclose(np.diff(spectrum.ppm), -step, rtol=1e-6)


def jcamp_topspin_parameters(path: Path) -> dict:
    return {
        "offset": float(jcamp_header_value(path, "$OFFSET")),
        "sw_p": float(jcamp_header_value(path, "$SW_p")),
        "sf": float(jcamp_header_value(path, "$SF")),
        "si": int(jcamp_header_value(path, "$SI")),
    }


def test_jcamp_xydata_13c_axis_is_topspins_and_puts_cdcl3_at_77_ppm(tmp_path):
    """A TopSpin export gives x in Hz from the right edge (LASTX = 0); the axis must be
    placed by ##.SHIFT REFERENCE (here the first point at OFFSET)."""
    path = real_jcamp(tmp_path, "13c_estragole")
    spectrum = read_spectrum(path)
    assert_topspin_axis(spectrum, **jcamp_topspin_parameters(path))
    reference = jcamp_header_value(path, ".SHIFT REFERENCE").split(",")
    assert spectrum.ppm[int(reference[2]) - 1] == pytest.approx(float(reference[3]), abs=1e-6)
    # CDCl3's 13C triplet (J_CD ~32 Hz) is centred at 77.0-77.2 ppm; estragole's OCH3 at
    # 55.2 ppm and its allylic CH2 at 39.3 ppm (CDCl3).
    assert 76.7 <= tallest_shift(spectrum, 70, 85) <= 77.5
    assert tallest_shift(spectrum, 30, 100) == pytest.approx(55.2, abs=0.2)
    assert tallest_shift(spectrum, 30, 45) == pytest.approx(39.3, abs=0.2)


def test_jcamp_ntuples_19f_axis_is_topspins_and_puts_the_cf3_near_minus_73_ppm(tmp_path):
    path = real_jcamp(tmp_path, "19f_trifluoroethoxyaniline")
    spectrum = read_spectrum(path)
    assert_topspin_axis(spectrum, **jcamp_topspin_parameters(path))
    # The CF3 of a 2,2,2-trifluoroethyl aryl ether resonates near -73 ppm (CFCl3 scale).
    assert -75.0 <= tallest_shift(spectrum, -200, 50) <= -71.0


def test_bruker_axis_is_topspins(tmp_path):
    experiment = real_bruker(tmp_path)
    spectrum = read_spectrum(experiment)
    procs = ng.bruker.read_jcamp(str(experiment / "pdata" / "1" / "procs"))
    assert_topspin_axis(
        spectrum, offset=procs["OFFSET"], sw_p=procs["SW_p"], sf=procs["SF"], si=procs["SI"]
    )


def test_nmrpipe_axis_follows_orig_sw_obs_and_topspins_offset(tmp_path):
    """The real Bruker spectrum converted to NMRPipe by nmrglue's converter (as bruker2pipe
    would): point i of N is at ORIG + SW (N - 1 - i) / N Hz (ORIG: the last point's
    frequency, NMRPipe's definition), ppm = Hz / OBS; and the first point still at OFFSET."""
    pdata = real_bruker(tmp_path) / "pdata" / "1"
    dic, data = ng.bruker.read_pdata(str(pdata), bin_files=["1r"])
    udic = ng.bruker.guess_udic(dic, data)
    udic[0].update(time=False, freq=True, complex=False)
    converter = ng.convert.converter()
    converter.from_bruker(dic, data.astype(np.float32), udic)
    path = tmp_path / "converted.ft"
    ng.pipe.write(str(path), *converter.to_pipe(), overwrite=True)

    spectrum = read_spectrum(path)
    header = spectrum.meta["pipe"]
    n = int(header["FDSIZE"])
    hz = header["FDF2ORIG"] + header["FDF2SW"] * (n - 1 - np.arange(n)) / n
    step = header["FDF2SW"] / header["FDF2OBS"] / n
    np.testing.assert_allclose(spectrum.ppm, hz / header["FDF2OBS"], rtol=0, atol=1e-3 * step)
    procs = dic["procs"]
    assert_topspin_axis(
        spectrum, offset=procs["OFFSET"], sw_p=procs["SW_p"], sf=procs["SF"], si=procs["SI"]
    )


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".h5"])
def test_plain_formats_carry_the_real_axis(tmp_path, suffix):
    """A JCAMP-DX source written as .npz/.csv/.h5 (the natural output of a JCAMP-DX input)
    keeps TopSpin's axis."""
    path = real_jcamp(tmp_path, "13c_estragole")
    back = read_spectrum(write_spectrum(read_spectrum(path), tmp_path / f"out{suffix}"))
    assert_topspin_axis(back, **jcamp_topspin_parameters(path))


def _is_processed_jcamp(path: Path) -> bool:
    with open(path, "rb") as handle:
        return b"NMR SPECTRUM" in handle.read(400)


REAL_PROCESSED_JCAMP = (
    sorted(path for path in REALDATA.glob("*/*.dx") if _is_processed_jcamp(path))
    if REALDATA.is_dir()
    else []
)


@pytest.mark.skipif(not REAL_PROCESSED_JCAMP, reason="/work/shared/realdata is not here")
@pytest.mark.parametrize(
    "path", REAL_PROCESSED_JCAMP, ids=lambda path: f"{path.parent.name[:12]}/{path.name}"
)
def test_every_processed_jcamp_of_realdata_is_on_topspins_axis(path):
    """All TopSpin JCAMP-DX spectra of the shared collection (where it exists): the axes that
    were 19 to 145 ppm off before the shift reference was applied."""
    assert_topspin_axis(read_spectrum(path), **jcamp_topspin_parameters(path))
