"""The real spectra of the realism check (scripts/realism.py): which files of
/work/shared/realdata stand for which simulator family, how they are read (nmrglue) and how
their FIDs are processed into phased real spectra.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import nmrglue as ng
import numpy as np

__all__ = ["LB_HZ", "MAX_POINTS", "PROCESSED", "RAW", "RECIPE", "RealSpectrum", "read_real"]

#: Exponential line broadening of the FIDs, by nucleus (Hz).
LB_HZ = {"1H": 0.3, "13C": 1.0, "19F": 1.0, "31P": 1.0}
#: Largest spectrum the FIDs are zero-filled to.
MAX_POINTS = 65536

RECIPE = (
    "FIDs: Bruker digital filter removed (nmrglue remove_digital_filter; JCAMP-DX FIDs from their "
    "$DECIM/$DSPFVS/$GRPDLY), exponential apodization (LB 0.3 Hz for 1H, 1 Hz for 13C, 19F and "
    "31P), first point halved, zero-filled to twice the points and then to a power of two "
    f"(at most {MAX_POINTS}; longer FIDs are cut to half that), FFT, automatic phase correction "
    "(nmrglue autops 'acme', started from the phase of the tallest peak), real part, sign so "
    "that the tallest peak is positive. Vendor-processed spectra (Bruker 1r, Spinsolve "
    "spectrum.1d, JCAMP-DX NMR SPECTRUM) are taken as they are (real part, sign as above)."
)

S = "13c_31p_1h_series_erythrocytes_600mhz_nmrpy"
EST = "13c_estragole_125mhz_nmr-dataset1"
BROMO = "19f_bromofluoronitroaniline_nmr-dataset1"
PHOS = "31p_phosphineoxide_202mhz_nmr-dataset1"
COFFEE = "1h_400mhz_coffee_extracts_bruker-data-test/UV1010_M1-1003-1002_6268756_ErISKLIoeB"
SPIN = "1h_benchtop_80mhz_spinsolve_nmrpy"
F1 = "19f_13c_1h_fluorophenylethylamine_nmr-dataset1"
SPIN_ACQS = ("1D_exp_1_20240725-103717", "1D_exp_1_20240725-104133", "1D_exp_1_20240725-104548")

#: (family, label, reader, path relative to the realdata folder). Of a series of one sample
#: the first FID only (the later ones repeat its lines); the three benchtop acquisitions are
#: separate shims of the only benchtop sample, so all three count.
RAW = (
    ("1h", "600 MHz erythrocytes, spin echo (expno 3)", "bruker", f"{S}/3"),
    ("1h", "400 MHz DPG, zg", "bruker", "1h_400mhz_dpg_bruker_nmrpy/1"),
    ("1h", "400 MHz coffee, presat", "bruker", f"{COFFEE}/11"),
    ("1h", "400 MHz coffee, NOESY-presat", "bruker", f"{COFFEE}/12"),
    ("1h", "400 MHz fluorophenylethylamine", "jcamp", f"{F1}/1h.fid.dx"),
    ("1h", "400 MHz fluorophenylethylamine {19F}", "jcamp", f"{F1}/1h19f-dec.fid.dx"),
    *(("1h-benchtop", f"80 MHz Spinsolve, acquisition {k + 1}", "spinsolve", f"{SPIN}/{a}")
      for k, a in enumerate(SPIN_ACQS)),
    ("13c", "150 MHz erythrocytes (expno 1)", "bruker", f"{S}/1"),
    ("13c", "100 MHz fluorophenylethylamine, no decoupling", "jcamp", f"{F1}/13c-no-dec.fid.dx"),
    ("13c", "100 MHz fluorophenylethylamine {1H}", "jcamp", f"{F1}/13c1h-dec.fid.dx"),
    ("13c", "100 MHz fluorophenylethylamine {1H,19F}", "jcamp", f"{F1}/13c-1h19f-dec.fid.dx"),
    ("13c", "150 MHz menthol", "jcamp", "13c_menthol_150mhz_nmr-dataset1/13c.fid.dx"),
    ("13c", "150 MHz glucose", "jcamp", "13c_glucose_150mhz_nmr-dataset1/13c.fid.dx"),
    ("13c", "125 MHz estragole", "jcamp", f"{EST}/13c.fid.dx"),
    ("13c", "125 MHz estragole DEPT-135", "jcamp", f"{EST}/dept135.fid.dx"),
    ("19f", "376 MHz fluorophenylethylamine", "jcamp", f"{F1}/19f.fid.dx"),
    ("19f", "376 MHz fluorophenylethylamine {1H}", "jcamp", f"{F1}/19f1h-dec.fid.dx"),
    ("19f", "376 MHz trifluoroethoxyaniline {1H}", "jcamp",
     "19f_trifluoroethoxyaniline_nmr-dataset1/19f1hdec.fid.dx"),
    ("19f", "376 MHz bromofluoronitroaniline", "jcamp", f"{BROMO}/19f.dx"),
    ("19f", "376 MHz bromofluoronitroaniline {1H}", "jcamp",
     f"{BROMO}/19f-1h-dec.fid.dx"),
    ("31p", "243 MHz erythrocytes (expno 2)", "bruker", f"{S}/2"),
    ("31p", "162 MHz PGI reaction (first FID of 24)", "varian",
     "31p_array_pgi_reaction_varian_nmrpy/test1.fid"),
    ("31p", "243 MHz 3PG/Pi/TEP, 1000 scans", "varian",
     "31p_single_1000scans_varian_nmrpy/test2.fid"),
    ("31p", "202 MHz phosphine oxide {1H}", "jcamp", f"{PHOS}/31p.fid.dx"),
    ("31p", "202 MHz phosphine oxide, gated decoupling", "jcamp",
     f"{PHOS}/31p-gd.fid.dx"),
)

#: Vendor-processed spectra (the processing, phasing and baseline of the vendor software).
PROCESSED = (
    ("1h", "600 MHz erythrocytes 1r (expno 3)", "bruker-pdata", f"{S}/3"),
    ("1h", "400 MHz coffee zg30 1r", "bruker-pdata", f"{COFFEE}/10"),
    ("1h", "400 MHz coffee presat 1r", "bruker-pdata", f"{COFFEE}/11"),
    ("1h", "400 MHz coffee NOESY-presat 1r", "bruker-pdata", f"{COFFEE}/12"),
    ("1h-benchtop", "80 MHz Spinsolve spectrum.1d, acquisition 1", "spinsolve-spectrum",
     f"{SPIN}/{SPIN_ACQS[0]}"),
    ("13c", "150 MHz erythrocytes 1r (expno 1)", "bruker-pdata", f"{S}/1"),
    ("13c", "100 MHz fluorophenylethylamine {1H,19F}", "jcamp", f"{F1}/13c-1h19f-dec.dx"),
    ("13c", "125 MHz estragole (XYDATA)", "jcamp", f"{EST}/13c.dx"),
    ("19f", "376 MHz fluorophenylethylamine", "jcamp", f"{F1}/19f.dx"),
    ("19f", "376 MHz fluorophenylethylamine {1H}", "jcamp", f"{F1}/19f1h-dec.dx"),
    ("19f", "376 MHz trifluoroethoxyaniline {1H}", "jcamp",
     "19f_trifluoroethoxyaniline_nmr-dataset1/19f1h-dec.dx"),
    ("31p", "243 MHz erythrocytes 1r (expno 2)", "bruker-pdata", f"{S}/2"),
    ("31p", "202 MHz phosphine oxide {1H}", "jcamp", f"{PHOS}/31p.dx"),
)


@dataclass
class RealSpectrum:
    """A phased real spectrum of a real data set and what it was made from."""

    family: str
    label: str
    source: str  # "fid" (processed here) or "processed" (by the vendor software)
    path: str
    nucleus: str
    mhz: float
    sw_hz: float
    td: int  # complex FID points (0: unknown)
    spectrum: np.ndarray  # float64, ppm decreasing or increasing with index (either)


def _nucleus(text: str) -> str:
    text = str(text).strip("<>^ ")
    return {"H1": "1H", "C13": "13C", "F19": "19F", "P31": "31P"}.get(text, text)


def _jv(dic: dict, key: str, default=None):
    value = dic.get(key)
    return value[0] if value else default


def _read_bruker(path: Path) -> tuple[np.ndarray, dict]:
    dic, data = ng.bruker.read(str(path))
    a = dic["acqus"]
    fid = ng.bruker.remove_digital_filter(dic, data)
    return fid, {"nucleus": _nucleus(a["NUC1"]), "mhz": float(a["SFO1"]),
                 "sw_hz": float(a["SW_h"]), "td": int(a["TD"]) // 2}


def _read_varian(path: Path) -> tuple[np.ndarray, dict]:
    dic, data = ng.varian.read(str(path))
    p = dic["procpar"]
    fid = data[0] if data.ndim == 2 else data
    return fid, {"nucleus": _nucleus(p["tn"]["values"][0]), "mhz": float(p["sfrq"]["values"][0]),
                 "sw_hz": float(p["sw"]["values"][0]), "td": fid.size}


def _spinsolve_meta(dic: dict) -> dict:
    a = dic["acqu"]
    return {"nucleus": _nucleus(a.get("rxChannel", "1H")), "mhz": float(a["b1Freq"]),
            "sw_hz": 1e6 / float(a["dwellTime"]), "td": int(a["nrPnts"])}


def _read_spinsolve(path: Path) -> tuple[np.ndarray, dict]:
    dic, fid = ng.spinsolve.read(str(path), specfile="data.1d")
    return np.asarray(fid), _spinsolve_meta(dic)


def _read_jcamp(path: Path) -> tuple[np.ndarray, dict, bool]:
    """(data, meta, is_fid): a complex FID (digital filter removed) or a real spectrum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dic, data = ng.jcampdx.read(str(path))
    meta = {"nucleus": _nucleus(_jv(dic, ".OBSERVENUCLEUS", _jv(dic, "$NUC1", "?"))),
            "mhz": float(_jv(dic, ".OBSERVEFREQUENCY", _jv(dic, "$SFO1", "nan"))),
            "sw_hz": float(_jv(dic, "$SWH", "nan")), "td": 0}
    if "FID" in str(_jv(dic, "DATATYPE", "")).upper():
        fid = np.asarray(data[0]) + 1j * np.asarray(data[1])
        decim = float(_jv(dic, "$DECIM", "1"))
        acqus = {"DECIM": int(decim) if decim == int(decim) else decim,
                 "DSPFVS": int(float(_jv(dic, "$DSPFVS", "0"))),
                 "GRPDLY": float(_jv(dic, "$GRPDLY", "-1"))}
        fid = ng.bruker.remove_digital_filter({"acqus": acqus}, fid)
        meta["td"] = fid.size
        return fid, meta, True
    spec = np.asarray(data[0] if isinstance(data, list) else data, dtype=np.float64)
    if not math.isfinite(meta["sw_hz"]):
        first, last = float(_jv(dic, "FIRSTX")), float(_jv(dic, "LASTX"))
        meta["sw_hz"] = abs(first - last) * spec.size / (spec.size - 1)
    return spec, meta, False


def _read_pdata(path: Path) -> tuple[np.ndarray, dict]:
    acqus = ng.bruker.read_jcamp(str(path / "acqus"))
    pdic, spec = ng.bruker.read_pdata(str(path / "pdata" / "1"))
    return np.asarray(spec, dtype=np.float64), {
        "nucleus": _nucleus(acqus["NUC1"]), "mhz": float(acqus["SFO1"]),
        "sw_hz": float(pdic["procs"]["SW_p"]), "td": int(acqus["TD"]) // 2}


def _read_spinsolve_spectrum(path: Path) -> tuple[np.ndarray, dict]:
    dic, spec = ng.spinsolve.read(str(path), specfile="spectrum.1d")
    return np.asarray(spec).real.astype(np.float64), _spinsolve_meta(dic)


def process_fid(fid: np.ndarray, sw_hz: float, lb_hz: float) -> np.ndarray:
    """Phased real spectrum of a FID by ``RECIPE`` (float64, a power of two in length)."""
    fid = np.asarray(fid, dtype=np.complex128)
    n = min(MAX_POINTS, 1 << int(math.ceil(math.log2(2 * fid.size))))
    fid = fid[: n // 2].copy()
    fid *= np.exp(-math.pi * lb_hz * np.arange(fid.size) / sw_hz)
    fid[0] *= 0.5
    spec = np.fft.fftshift(np.fft.fft(fid, n))
    p0 = -math.degrees(float(np.angle(spec[int(np.argmax(np.abs(spec)))])))
    phased = ng.proc_autophase.autops(spec, "acme", p0=p0, p1=0.0, disp=False)
    real = phased.real
    tallest = int(np.argmax(np.abs(real)))
    return real if real[tallest] > 0 else -real


def _positive(spec: np.ndarray) -> np.ndarray:
    """The spectrum, its sign flipped if its largest excursion is negative."""
    return spec if spec[int(np.argmax(np.abs(spec)))] > 0 else -spec


def read_real(root: Path, family: str, label: str, reader: str, rel: str,
              source: str) -> RealSpectrum:
    """Read one entry of RAW or PROCESSED into a phased real spectrum."""
    path = root / rel
    if reader in ("bruker", "varian", "spinsolve"):
        fid, meta = {"bruker": _read_bruker, "varian": _read_varian,
                     "spinsolve": _read_spinsolve}[reader](path)
        spec = process_fid(fid, meta["sw_hz"], LB_HZ.get(meta["nucleus"], 1.0))
    elif reader == "jcamp":
        data, meta, is_fid = _read_jcamp(path)
        spec = process_fid(data, meta["sw_hz"], LB_HZ.get(meta["nucleus"], 1.0)) if is_fid \
            else _positive(data)
    elif reader == "bruker-pdata":
        spec, meta = _read_pdata(path)
        spec = _positive(spec)
    elif reader == "spinsolve-spectrum":
        spec, meta = _read_spinsolve_spectrum(path)
        spec = _positive(spec)
    else:
        raise ValueError(f"reader {reader!r}: unknown (entry {label!r})")
    return RealSpectrum(family=family, label=label, source=source, path=rel, spectrum=spec,
                        **meta)
