"""A FID (complex time-domain signal) made into a phased 1D spectrum, with nmrglue.

Every step is nmrglue's; the order, the defaults and the checks are this module's:

1. Bruker's digital filter removed (``bruker.remove_digital_filter`` with DECIM, DSPFVS and
   GRPDLY): a Bruker FID starts with the filter's group delay, which would roll the
   spectrum's baseline and phase. TopSpin's JCAMP-DX FIDs keep it too.
2. The first point halved: the discrete transform counts the t = 0 point once where the
   integral counts half of it, and a full one offsets the whole baseline.
3. Exponential apodization (``proc_base.em``) of ``lb_hz`` Hz; by default
   :data:`DEFAULT_LB_HZ` for the nucleus (0.3 Hz 1H, 1 Hz otherwise): little enough to keep
   the lines' width, enough to damp the truncated FID's sinc wiggles.
4. Zero-filled (``proc_base.zf_size``) to the next power of two of at least twice the points.
5. Fourier transformed (``proc_base.fft``). Bruker and TopSpin JCAMP-DX FIDs are conjugated
   first (``FidParams.conjugate``): their quadrature puts the spectrum the other way round.
6. Phased (``proc_base.ps``): automatically by ``proc_autophase.autops`` ("acme", from p0 =
   p1 = 0, on the transform before zero filling: the same phases, half the points), then
   checked: a result whose lines are mostly negative is turned by 180 degrees. Or with a
   given (p0, p1), e.g. one phase shared by all the rungs of a ladder.
7. The ppm axis from the parameters by nmrglue's ``unit_conversion`` (sw, obs, car).

Phases are nmrglue's: degrees, phase(i) = p0 + p1 i / size on the spectrum as returned
(point 0 first, the highest ppm). :func:`process_fid` does one FID; :func:`process_fids` an
[N, td] array row by row with one phase (the phase of their sum unless one is given), as
ladder building needs. The record (:class:`FidProcessing`) says what was done.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import nmrglue as ng
import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.spectrum import Spectrum, call_nmrglue, checked_intensities, checked_ppm

# Exponential line broadening (Hz) by nucleus; any other nucleus gets OTHER_LB_HZ.
DEFAULT_LB_HZ = {"1H": 0.3, "13C": 1.0, "19F": 1.0, "31P": 1.0}
OTHER_LB_HZ = 1.0
# The lines (points above this fraction of the tallest) must be mostly positive after the
# automatic phase; below POSITIVE_ENOUGH a note asks the user to check the phase.
LINE_LEVEL = 0.05
POSITIVE_ENOUGH = 0.8
MIN_POINTS = 8


@dataclass(frozen=True)
class FidParams:
    """What processing a FID needs from its parameter files.

    ``sw_hz``: the spectral width (1 / dwell time); ``obs_mhz``: the ppm reference
    frequency (Hz / obs_mhz = ppm); ``car_hz``: the carrier's offset from 0 ppm in Hz (the
    centre of the spectrum); ``obs_mhz`` or ``car_hz`` None: no ppm axis. ``nucleus``:
    "1H", "13C", ... (the default line broadening). ``conjugate``: the FID's complex
    conjugate is transformed (Bruker's quadrature). ``digital_filter``: Bruker's (DECIM,
    DSPFVS, GRPDLY), None for none. ``source``: the file, for messages.
    """

    sw_hz: float
    obs_mhz: float | None
    car_hz: float | None
    nucleus: str
    conjugate: bool = False
    digital_filter: tuple[float, int, float] | None = None
    source: str = ""

    def udic(self, size: int) -> dict:
        """nmrglue's universal dictionary of the processed spectrum (``size`` points)."""
        udic = ng.fileiobase.create_blank_udic(1)
        udic[0].update(size=int(size), complex=False, time=False, freq=True)
        udic[0].update(sw=self.sw_hz, label=self.nucleus, encoding="direct")
        if self.obs_mhz is not None and self.car_hz is not None:
            udic[0].update(obs=self.obs_mhz, car=self.car_hz)
        return udic


@dataclass(frozen=True)
class FidProcessing:
    """What was done to a FID: line broadening (Hz), the FID's complex points after the
    digital filter, the zero-filled size, the phase (nmrglue's p0, p1 in degrees; "automatic"
    or "given"), whether the automatic phase was turned by 180 degrees, the share of the
    lines' area that is positive, the digital filter removed (DECIM, DSPFVS, GRPDLY) and
    whether the FID was conjugated."""

    lb_hz: float
    points: int
    size: int
    p0: float
    p1: float
    phase: str
    flipped: bool
    positive_fraction: float
    digital_filter: tuple[float, int, float] | None
    conjugated: bool

    def as_meta(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: the steps and their values."""
        steps = ["digital filter removed"] if self.digital_filter else []
        steps.append(f"LB {self.lb_hz:g} Hz")
        steps.append(f"zero-filled {self.points} -> {self.size}")
        turned = ", turned 180" if self.flipped else ""
        steps.append(f"FT, phase p0 {self.p0:.1f} p1 {self.p1:.1f} ({self.phase}{turned})")
        return ", ".join(steps)


def default_lb(nucleus: str) -> float:
    """The default exponential line broadening (Hz) for ``nucleus`` ("1H", "13C", ...)."""
    return DEFAULT_LB_HZ.get(nucleus, OTHER_LB_HZ)


def zero_filled_size(points: int) -> int:
    """The next power of two of at least twice ``points``."""
    return 1 << math.ceil(math.log2(2 * points))


def _checked_fids(fids, params: FidParams, ndim: int) -> np.ndarray:
    """complex128 FIDs of ``ndim`` dimensions, finite, not all zero, or an InputError."""
    arr = np.asarray(fids)
    where = params.source or "FID"
    if arr.ndim != ndim or arr.dtype.kind not in "biufc":
        shape = "[td]" if ndim == 1 else "[N, td]"
        raise InputError(f"{where}: expected a {shape} array of FID points, got {arr.shape}")
    if arr.shape[-1] < MIN_POINTS or arr.size == 0:
        raise InputError(f"{where}: {arr.shape[-1]} FID points; too few to transform")
    arr = arr.astype(np.complex128)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{where}: the FID has NaN/Inf values")
    if not np.any(arr):
        raise InputError(f"{where}: the FID is all zeros (nothing was acquired)")
    if not (math.isfinite(params.sw_hz) and params.sw_hz > 0):
        raise InputError(f"{where}: spectral width {params.sw_hz!r} Hz is not a positive number")
    return arr


def _remove_filter(fids: np.ndarray, params: FidParams, notes: list[str]) -> np.ndarray:
    if params.digital_filter is None:
        return fids
    decim, dspfvs, grpdly = params.digital_filter
    decim = int(decim) if float(decim).is_integer() else decim  # nmrglue's table keys
    acqus = {"DECIM": decim, "DSPFVS": int(dspfvs), "GRPDLY": grpdly}
    what = f"the digital filter (DECIM {decim}, DSPFVS {dspfvs}, GRPDLY {grpdly})"
    where = params.source or "FID"
    result = call_nmrglue(
        where, what, notes, ng.bruker.remove_digital_filter, {"acqus": acqus}, fids
    )
    if result.shape[-1] < MIN_POINTS:
        raise InputError(f"{where}: {fids.shape[-1]} FID points; too few for {what}")
    return result


def _apodized(fids: np.ndarray, params: FidParams, lb_hz: float) -> np.ndarray:
    """First point halved, exponential line broadening, conjugated where the vendor's
    quadrature asks for it."""
    fids = fids.copy()
    fids[..., 0] *= 0.5
    fids = ng.proc_base.em(fids, lb_hz / params.sw_hz)
    return np.conj(fids) if params.conjugate else fids


def _positive_fraction(real: np.ndarray) -> float:
    """The share of the lines' area (points above LINE_LEVEL of the tallest) that is
    positive."""
    lines = real[np.abs(real) >= LINE_LEVEL * np.max(np.abs(real))]
    total = np.sum(np.abs(lines))
    return float(np.sum(lines[lines > 0]) / total) if total > 0 else 1.0


def _automatic_phase(fid: np.ndarray, params: FidParams, notes: list[str]) -> tuple[float, float]:
    """nmrglue's ACME phase of ``fid`` (already apodized), from p0 = p1 = 0."""
    spectrum = ng.proc_base.fft(fid)
    _, phases = call_nmrglue(
        params.source or "FID", "the automatic phase", notes,
        ng.proc_autophase.autops, spectrum, "acme", return_phases=True, disp=False,
    )  # fmt: skip
    p0, p1 = (float(value) for value in phases)
    if not (math.isfinite(p0) and math.isfinite(p1)):
        raise InputError(f"{params.source or 'FID'}: the automatic phase found no phase")
    return p0, p1


def _transform(fids: np.ndarray, size: int) -> np.ndarray:
    return ng.proc_base.fft(ng.proc_base.zf_size(fids, size))


def _phased(spectra: np.ndarray, p0: float, p1: float) -> np.ndarray:
    return ng.proc_base.ps(spectra, p0=p0, p1=p1).real


def ppm_axis(params: FidParams, size: int) -> np.ndarray | None:
    """The ppm of each point of a processed spectrum of ``size`` points (high to low), by
    nmrglue's unit_conversion; None without a reference frequency and carrier."""
    if params.obs_mhz is None or params.car_hz is None:
        return None
    uc = ng.fileiobase.unit_conversion(size, True, params.sw_hz, params.obs_mhz, params.car_hz)
    return uc.ppm_scale()


def process_fids(
    fids,
    params: FidParams,
    *,
    lb_hz: float | None = None,
    phase: tuple[float, float] | None = None,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, FidProcessing]:
    """Process an [N, td] array of FIDs row by row with one phase: (spectra [N, L] float64,
    ppm [L] or None, record).

    ``phase`` (p0, p1) in degrees (nmrglue's ``ps``) is applied to every row; None: the
    automatic phase of the rows' sum (their co-add), checked for positive lines, applied to
    every row, so that the rows share one phase. ``lb_hz`` None: :func:`default_lb`.
    nmrglue's warnings go to ``notes``. Bad input (NaN, all zeros, too few points, a
    digital filter nmrglue does not know) raises an InputError naming ``params.source``.
    """
    notes = [] if notes is None else notes
    lb_hz = default_lb(params.nucleus) if lb_hz is None else float(lb_hz)
    fids = _remove_filter(_checked_fids(fids, params, 2), params, notes)
    fids = _apodized(fids, params, lb_hz)
    size = zero_filled_size(fids.shape[-1])
    spectra = _transform(fids, size)
    flipped, how = False, "given"
    if phase is None:
        how = "automatic"
        p0, p1 = _automatic_phase(fids.sum(axis=0), params, notes)
        if _positive_fraction(_phased(spectra.sum(axis=0), p0, p1)) < 0.5:
            p0, flipped = p0 + 180.0, True
    else:
        p0, p1 = (float(value) for value in phase)
    real = _phased(spectra, p0, p1)
    record = FidProcessing(
        lb_hz=lb_hz,
        points=int(fids.shape[-1]),
        size=size,
        p0=p0,
        p1=p1,
        phase=how,
        flipped=flipped,
        positive_fraction=_positive_fraction(real.sum(axis=0)),
        digital_filter=params.digital_filter,
        conjugated=params.conjugate,
    )
    return real, ppm_axis(params, size), record


def process_fid(
    fid,
    params: FidParams,
    *,
    lb_hz: float | None = None,
    phase: tuple[float, float] | None = None,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, FidProcessing]:
    """Process one FID [td]: (spectrum [L] float64, ppm [L] or None, record).

    The steps are the module's (digital filter, first point, exponential line broadening
    ``lb_hz`` or :func:`default_lb`, zero filling, FFT, phase); ``phase`` (p0, p1) in degrees
    replaces the automatic phase. See :func:`process_fids`.
    """
    fid = _checked_fids(fid, params, 1)
    spectra, ppm, record = process_fids(fid[None, :], params, lb_hz=lb_hz, phase=phase, notes=notes)
    return spectra[0], ppm, record


def spectrum_from_fid(
    fid, params: FidParams, fmt: str, meta: dict, notes: list[str], *, source: str | None = None
) -> Spectrum:
    """The Spectrum of a processed FID, for the readers: ``meta`` gains
    ``processed_from_fid`` (True), ``fid_processing`` (the record) and ``udic``; a note (one
    line) says the spectrum was processed here, and another when its lines are not mostly
    positive."""
    source = params.source if source is None else source
    real, ppm, record = process_fid(fid, params, notes=notes)
    intensities = checked_intensities(real, source)
    notes.append(f"{params.source}: processed from the FID with nmrglue ({record.summary()})")
    if record.positive_fraction < POSITIVE_ENOUGH:
        notes.append(
            f"{params.source}: {100 * (1 - record.positive_fraction):.0f} % of the lines' area"
            " is negative after the automatic phase; check the phase"
        )
    meta = {
        **meta,
        "processed_from_fid": True,
        "fid_processing": record.as_meta(),
        "udic": params.udic(record.size),
    }
    return Spectrum(intensities, checked_ppm(ppm, intensities, source), meta, source, fmt, notes)


__all__ = [
    "DEFAULT_LB_HZ",
    "OTHER_LB_HZ",
    "FidParams",
    "FidProcessing",
    "default_lb",
    "ppm_axis",
    "process_fid",
    "process_fids",
    "spectrum_from_fid",
    "zero_filled_size",
]
