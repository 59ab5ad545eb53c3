"""JCAMP-DX 1D NMR spectra through nmrglue, with the ppm axis their header defines.

nmrglue.jcampdx reads the data (XYDATA and NTUPLES, AFFN and compressed forms) and the x
range. The x grid is the JCAMP-DX one, x_i = FIRSTX + i (LASTX - FIRSTX) / (NPOINTS - 1), in
XUNITS (HZ or PPM); Hz become ppm with ``$SF`` (Bruker exports; their .OBSERVE FREQUENCY is
SFO1, the carrier) or else .OBSERVE FREQUENCY. The grid is then placed by the header's shift
reference, which nmrglue does not apply: ``##.SHIFT REFERENCE= (type, compound, point number,
shift)`` gives the shift in ppm of one data point, counted from 1 (JCAMP-DX for NMR, Davies and
Lampen 1993); without one, a Bruker export's ``$OFFSET`` gives the shift of its
highest-frequency point (TopSpin's OFFSET). TopSpin's exports count x in Hz from the right
edge of the spectrum (LASTX = 0), so a grid left unplaced is off by the shift of that edge.
See docs/formats.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import nmrglue as ng
import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.fid import FidParams, spectrum_from_fid
from nmrladder.runtime.spectrum import Spectrum, call_nmrglue, checked_intensities, checked_ppm


def first_value(dic: dict, key: str) -> str | None:
    values = dic.get(key)
    return values[0].strip() if values else None


def number(path: Path, dic: dict, key: str) -> float | None:
    """The header's ##key= as a finite number, None when absent, else an InputError."""
    text = first_value(dic, key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{path}: ##{key}= {text!r} is not a number")
    return value


def is_fid(dic: dict) -> bool:
    """Whether a JCAMP-DX header announces a FID (##DATA TYPE= NMR FID)."""
    return "FID" in (first_value(dic, "DATATYPE") or "").upper()


def _check_data(path: Path, dic: dict, data) -> np.ndarray:
    """The real trace of a JCAMP-DX spectrum, or an InputError (no data, truncated)."""
    if isinstance(data, list):  # [real, imaginary]
        data = data[0]
    if data is None:
        raise InputError(
            f"{path}: no JCAMP-DX spectrum data (XYDATA or NTUPLES) found;"
            " a truncated file (nmrglue drops a data table without its closing ##END=)?"
        )
    npoints = number(path, dic, "NPOINTS")
    if npoints is not None and npoints != len(data):
        raise InputError(
            f"{path}: truncated or corrupt: {len(data)} points, ##NPOINTS says {npoints:g}"
        )
    if len(data) < 2:
        raise InputError(f"{path}: {len(data)} point(s); not a spectrum")
    return np.asarray(data)


def _frequency(path: Path, dic: dict) -> float | None:
    """The ppm reference frequency in MHz: $SF, else .OBSERVE FREQUENCY, else None."""
    key = "$SF" if "$SF" in dic else ".OBSERVEFREQUENCY"
    frequency = number(path, dic, key)
    if frequency is not None and frequency <= 0:
        raise InputError(f"{path}: ##{key}= {frequency:g} MHz is not a frequency")
    return frequency


def _shift_reference(path: Path, dic: dict, n: int, notes: list[str]) -> tuple[int, float] | None:
    """(point index from 0, shift in ppm) of ##.SHIFT REFERENCE=, or None (absent, or not
    understood: then a note says so)."""
    text = first_value(dic, ".SHIFTREFERENCE")
    if text is None:
        return None
    fields = [field.strip() for field in text.split(",")]
    try:
        point, shift = float(fields[2]), float(fields[3])
    except (IndexError, ValueError):
        point = shift = math.nan
    usable = math.isfinite(shift) and math.isfinite(point) and point == int(point)
    if not (usable and 1 <= point <= n):
        notes.append(
            f"{path}: ##.SHIFT REFERENCE= {' '.join(text.split())} not understood (expected"
            f" type, compound, point 1..{n}, shift in ppm); the ppm axis is the x values'"
        )
        return None
    return int(point) - 1, shift


def _anchor(
    path: Path, dic: dict, n: int, ascending: bool, in_ppm: bool, notes: list[str]
) -> tuple[int, float] | None:
    """The point whose shift the header gives, and that shift: the shift reference, else a
    Bruker export's $OFFSET (the shift of the highest-frequency point) for x in Hz."""
    reference = _shift_reference(path, dic, n, notes)
    if reference is not None or in_ppm:
        return reference
    offset = number(path, dic, "$OFFSET")
    return None if offset is None else (n - 1 if ascending else 0, offset)


def _udic(path: Path, dic: dict, data: np.ndarray, notes: list[str]) -> tuple[dict | None, bool]:
    """nmrglue's universal dictionary, completed so that unit_conversion gives the header's
    x grid placed by its shift reference; and whether x ascends.

    nmrglue.jcampdx.guess_udic sets obs, label and size, takes sw = |LASTX - FIRSTX| (one
    point short of the spectral width) and leaves car unset. The udic is None (and a note
    says why) when the header has no x range, or an x range in Hz without a frequency.
    """
    udic = call_nmrglue(path, "the JCAMP-DX header", notes, ng.jcampdx.guess_udic, dic, data)
    first, last, in_ppm = call_nmrglue(  # nmrglue's own helper for FIRSTX/LASTX/XUNITS
        path, "the JCAMP-DX x range", notes, ng.jcampdx._find_firstx_lastx, dic
    )
    obs = _frequency(path, dic)
    if first is None or last is None or (obs is None and not in_ppm):
        notes.append(
            f"{path}: no ppm axis: the header gives no x range (FIRSTX, LASTX)"
            " or no frequency ($SF, .OBSERVE FREQUENCY) for its Hz"
        )
        return None, False
    if not (math.isfinite(first) and math.isfinite(last)) or first == last:
        raise InputError(f"{path}: corrupt x range: FIRSTX {first}, LASTX {last}")
    obs = 1.0 if obs is None else obs  # a ppm x range needs no frequency for a ppm axis
    to_hz = obs if in_ppm else 1.0
    n = len(data)
    sw = abs(last - first) * to_hz * n / (n - 1)
    car = max(first, last) * to_hz - sw / 2  # unit_conversion puts car + sw/2 at point 0
    anchor = _anchor(path, dic, n, first < last, in_ppm, notes)
    if anchor is not None:
        point, shift = anchor
        moved = shift * obs - (first + point * (last - first) / (n - 1)) * to_hz  # Hz
        car += moved
        if in_ppm and abs(moved) > sw / n:
            notes.append(
                f"{path}: the x values (ppm) and ##.SHIFT REFERENCE= differ by"
                f" {moved / obs:.4g} ppm; the shift reference places the axis"
            )
    udic[0].update(sw=sw, obs=obs, car=car, complex=False, time=False, freq=True)
    return udic, first < last


def read_jcamp(path: Path) -> Spectrum:
    """Read a JCAMP-DX 1D NMR spectrum, its ppm axis (from the header) and its header."""
    notes: list[str] = []
    dic, data = call_nmrglue(path, "a JCAMP-DX file", notes, ng.jcampdx.read, str(path))
    if is_fid(dic):
        return _read_fid(path, dic, data, notes)
    intensities = checked_intensities(_check_data(path, dic, data), str(path))
    udic, ascending = _udic(path, dic, intensities, notes)
    ppm = None
    if udic is not None:
        uc = call_nmrglue(path, "the ppm axis", notes, ng.fileiobase.uc_from_udic, udic)
        ppm = uc.ppm_scale()  # high to low
        if ascending:
            ppm = ppm[::-1].copy()
    meta = {"jcamp": dic, "udic": udic}
    ppm = checked_ppm(ppm, intensities, path)
    return Spectrum(intensities, ppm, meta, str(path), "jcamp", notes)


# --------------------------------------------------------------------------- FIDs


def _fid_points(path: Path, dic: dict, data) -> np.ndarray:
    """The complex FID of an NTUPLES NMR FID (pages FID/REAL and FID/IMAG), checked against
    ##VAR_DIM."""
    if not isinstance(data, list) or len(data) != 2 or data[0] is None or data[1] is None:
        raise InputError(
            f"{path}: a JCAMP-DX FID without its real and imaginary pages (a truncated file?)"
        )
    real, imag = np.asarray(data[0]), np.asarray(data[1])
    fields = (first_value(dic, "VARDIM") or "").split(",")
    try:
        declared = int(float(fields[1]))
    except (IndexError, ValueError):
        declared = None
    if real.size != imag.size or (declared is not None and real.size != declared):
        raise InputError(
            f"{path}: truncated or corrupt: {real.size} real and {imag.size} imaginary FID"
            f" points, ##VAR_DIM says {declared}"
        )
    return real + 1j * imag


def _dwell_sw(path: Path, dic: dict, points: int) -> float | None:
    """The spectral width from the FID's time axis (##FIRST, ##LAST of X in SECONDS)."""
    units = (first_value(dic, "UNITS") or "").split(",")[0].strip().upper()
    try:
        first = float((first_value(dic, "FIRST") or "").split(",")[0])
        last = float((first_value(dic, "LAST") or "").split(",")[0])
    except ValueError:
        return None
    if units != "SECONDS" or not last > first or points < 2:
        return None
    return (points - 1) / (last - first)


def _fid_params(path: Path, dic: dict, points: int) -> FidParams:
    """Spectral width ($SW_h, else the time axis), carrier ($SFO1, else .OBSERVE FREQUENCY),
    ppm reference frequency ($SF), nucleus, Bruker's digital filter and quadrature."""
    mode = (first_value(dic, ".ACQUISITIONMODE") or "").upper()
    aq_mod = number(path, dic, "$AQMOD")
    if "SEQUENTIAL" in mode or "SINGLE" in mode or aq_mod in (0, 2):
        shown = "-" if aq_mod is None else f"{aq_mod:g}"
        raise InputError(
            f"{path}: not a simultaneous (DQD) quadrature FID (##.ACQUISITION MODE= {mode or '-'},"
            f" ##$AQ_mod= {shown}); nmrladder processes those only"
        )
    sw = number(path, dic, "$SWH") or _dwell_sw(path, dic, points)
    if sw is None or sw <= 0:
        raise InputError(f"{path}: no spectral width ($SW_h, or a time axis in SECONDS)")
    carrier = number(path, dic, "$SFO1") or number(path, dic, ".OBSERVEFREQUENCY")
    reference = number(path, dic, "$SF")
    car = None if carrier is None or reference is None else (carrier - reference) * 1e6
    nucleus = first_value(dic, ".OBSERVENUCLEUS") or first_value(dic, "$NUC1") or ""
    nucleus = nucleus.strip("^<> ")
    filters = [number(path, dic, key) for key in ("$DECIM", "$DSPFVS", "$GRPDLY")]
    digital_filter = None
    if filters[0] is not None and filters[1] is not None:
        digital_filter = (filters[0], int(filters[1]), -1.0 if filters[2] is None else filters[2])
    # TopSpin's FIDs (Bruker quadrature) are conjugated; $REVERSE= yes (Spinsolve's
    # exports) says the spectrum runs the other way.
    reverse = (first_value(dic, "$REVERSE") or "").lower() in ("yes", "true")
    return FidParams(sw, reference, car, nucleus, not reverse, digital_filter, str(path))


def _read_fid(path: Path, dic: dict, data, notes: list[str]) -> Spectrum:
    """A JCAMP-DX NMR FID processed into a spectrum (nmrladder.runtime.fid)."""
    fid = _fid_points(path, dic, data)
    params = _fid_params(path, dic, fid.size)
    if params.car_hz is None:
        notes.append(f"{path}: no ppm axis: the header gives no $SF (ppm reference frequency)")
    return spectrum_from_fid(fid, params, "jcamp", {"jcamp": dic}, notes, source=str(path))
