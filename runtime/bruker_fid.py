"""A Bruker 1D experiment without a processed spectrum: its ``fid`` read through nmrglue and
processed (nmrladder.runtime.fid), written back as a new procno like any Bruker spectrum.

acqus is read by nmrladder.runtime.param_files (nmrglue's parser, fed so that every read
ends); the fid by ``nmrglue.bruker.read_binary`` after its size is checked against TD, as
nmrglue reads whatever bytes are there. The spectrum's ``procs`` is the experiment's own
(its lowest-numbered pdata/<n>/procs) with what describes the processed spectrum set (SI,
SF, SW_p, OFFSET, LB, WDW), or a new one with those, so that the new procno opens in TopSpin
on the same ppm axis. See docs/formats.md.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nmrglue as ng
import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.fid import FidParams, spectrum_from_fid
from nmrladder.runtime.param_files import is_number, read_parameter_file
from nmrladder.runtime.spectrum import Spectrum, call_nmrglue

# acqus parameters a fid needs: size, spectral width, carrier, nucleus, quadrature mode.
_ACQUS_FOR_FID = ("TD", "SW_h", "SFO1", "NUC1", "AQ_mod")
# Old spectrometers wrote the fid in blocks of 1024 bytes, zero-padded.
_FID_BLOCK = 1024


def _acqus(experiment: Path, notes: list[str]) -> dict:
    acqus_file = experiment / "acqus"
    if not acqus_file.is_file():
        raise InputError(f"{acqus_file}: missing; a Bruker fid needs its acqus parameters")
    acqus, _ = read_parameter_file(acqus_file, notes)
    missing = [key for key in _ACQUS_FOR_FID if key not in acqus]
    if missing:
        raise InputError(f"{acqus_file}: lacks {', '.join(missing)}, needed to process the fid")
    bad = [key for key in ("TD", "SW_h", "SFO1") if not is_number(acqus[key])]
    if not bad and (acqus["TD"] < 16 or acqus["SW_h"] <= 0 or acqus["SFO1"] <= 0):
        bad = ["TD", "SW_h", "SFO1"]
    if bad:
        shown = ", ".join(f"{key}={acqus[key]!r}" for key in bad)
        raise InputError(f"{acqus_file}: corrupt: {shown}")
    if acqus["AQ_mod"] not in (1, 3):
        raise InputError(
            f"{acqus_file}: AQ_mod {acqus['AQ_mod']!r} (single-channel or sequential"
            " acquisition); nmrladder processes simultaneous quadrature fids (AQ_mod 1 or 3)"
        )
    return acqus


def _source_procs(experiment: Path, notes: list[str]) -> tuple[int, dict | None, str]:
    """(procno, procs, line ending) of the experiment's lowest pdata/<n> that holds a procs
    file; (0, None, "\\n") when none does."""
    pdata = experiment / "pdata"
    numbered = pdata.iterdir() if pdata.is_dir() else []
    with_procs = sorted(
        int(p.name) for p in numbered if p.name.isdigit() and (p / "procs").is_file()
    )
    if not with_procs:
        return 0, None, "\n"
    procs, newline = read_parameter_file(pdata / str(with_procs[0]) / "procs", notes)
    return with_procs[0], procs, newline


def _digital_filter(acqus_file: Path, acqus: dict) -> tuple[float, int, float] | None:
    """(DECIM, DSPFVS, GRPDLY) of a digitally filtered fid; None for analog data (DIGMOD 0,
    or no DECIM at all, as spectrometers before the digital filter wrote)."""
    if acqus.get("DIGMOD") == 0 or "DECIM" not in acqus:
        return None
    decim, dspfvs = acqus.get("DECIM"), acqus.get("DSPFVS")
    grpdly = acqus.get("GRPDLY", 0)
    if not (is_number(decim) and is_number(dspfvs) and is_number(grpdly)):
        raise InputError(
            f"{acqus_file}: DECIM {decim!r}, DSPFVS {dspfvs!r}, GRPDLY {grpdly!r}: not the"
            " numbers nmrglue needs to remove the digital filter"
        )
    return float(decim), int(dspfvs), float(grpdly)


def _read_fid(experiment: Path, acqus: dict, notes: list[str]) -> np.ndarray:
    """The fid's TD / 2 complex points; its size checked against TD (and the 1024-byte
    blocks of older spectrometers)."""
    fid_file = experiment / "fid"
    if acqus.get("DTYPA", 0) not in (0, 2):
        raise InputError(
            f"{experiment / 'acqus'}: DTYPA {acqus['DTYPA']!r}; nmrglue reads int32 (0) and"
            " float64 (2) fids"
        )
    isfloat = acqus.get("DTYPA", 0) == 2
    itemsize = 8 if isfloat else 4
    points = int(acqus["TD"]) // 2
    expected = 2 * points * itemsize
    size = fid_file.stat().st_size
    if size == 0:
        raise InputError(f"{fid_file}: the file is empty")
    padded = -(-expected // _FID_BLOCK) * _FID_BLOCK
    if size < expected or size > padded or size % (2 * itemsize):
        problem = "truncated" if size < expected else "not the size TD says"
        raise InputError(
            f"{fid_file}: {problem}: {size} bytes, but acqus says TD={acqus['TD']}"
            f" {'float64' if isfloat else 'int32'} values ({expected} bytes)"
        )
    _, data = call_nmrglue(
        fid_file, "the fid", notes, ng.bruker.read_binary, str(fid_file),
        shape=(size // itemsize // 2,), cplex=True, big=acqus.get("BYTORDA", 0) == 1,
        isfloat=isfloat,
    )  # fmt: skip
    return np.asarray(data).reshape(-1)[:points]


def _procs_for(procs: dict | None, acqus: dict, spectrum: Spectrum) -> dict:
    """The procs of the processed spectrum: the source's (or a new one) with its size, axis
    and window."""
    if procs is None:
        procs = {
            "_coreheader": ["##TITLE= Parameter file", "##JCAMPDX= 5.0"],
            "_comments": [],
            "BYTORDP": acqus.get("BYTORDA", 0),
            "DTYPP": 0,
            "NC_proc": 0,
            "PHC0": 0.0,
            "PHC1": 0.0,
        }
    new = copy.deepcopy(procs)
    udic, record = spectrum.meta["udic"][0], spectrum.meta["fid_processing"]
    new.update(
        SI=len(spectrum), FTSIZE=len(spectrum), SF=udic["obs"], SW_p=udic["sw"],
        OFFSET=float(spectrum.ppm[0]), AXNUC=udic["label"], LB=record["lb_hz"], WDW=1,
        STSI=0, STSR=0,
    )  # fmt: skip
    if "XDIM" in new:
        new["XDIM"] = len(spectrum)
    return new


def read_bruker_fid_raw(experiment: Path, notes: list[str] | None = None
                        ) -> tuple[np.ndarray, FidParams, dict]:
    """The raw fid of a Bruker 1D experiment (an absolute experiment folder), the parameters
    that process it and what the reader keeps (acqus, the source procno and its line ending):
    for co-adding the FIDs of several experiments with one phase (runtime/fid.py)."""
    notes = [] if notes is None else notes
    acqus = _acqus(experiment, notes)
    procno, procs, newline = _source_procs(experiment, notes)
    reference = procs.get("SF") if procs else None
    if not is_number(reference) or reference <= 0:
        reference = acqus.get("BF1")  # SF = BF1 + SR, and no procs gives SR
    if not is_number(reference) or reference <= 0:
        raise InputError(f"{experiment / 'acqus'}: no BF1 (and no procs SF) for the ppm axis")
    params = FidParams(
        sw_hz=float(acqus["SW_h"]),
        obs_mhz=float(reference),
        car_hz=(float(acqus["SFO1"]) - float(reference)) * 1e6,
        nucleus=str(acqus["NUC1"]),
        conjugate=True,  # Bruker's quadrature: the spectrum comes out reversed otherwise
        digital_filter=_digital_filter(experiment / "acqus", acqus),
        source=str(experiment),
    )
    fid = _read_fid(experiment, acqus, notes)
    meta = {"acqus": acqus, "procno": procno, "procs": procs, "procs_newline": newline}
    return fid, params, meta


def read_bruker_fid(experiment: Path) -> Spectrum:
    """The processed fid of a Bruker 1D experiment (an absolute experiment folder)."""
    notes: list[str] = []
    fid, params, raw = read_bruker_fid_raw(experiment, notes)
    meta = {"acqus": raw["acqus"], "procno": raw["procno"], "procs_newline": raw["procs_newline"]}
    meta["experiment"] = str(experiment)
    # The source is <experiment>/pdata/<procno>, as for a processed spectrum (procno 0 when
    # the experiment has no procs): outputs are new procnos above it.
    source = str(experiment / "pdata" / str(raw["procno"]))
    spectrum = spectrum_from_fid(fid, params, "bruker", meta, notes, source=source)
    spectrum.meta["procs"] = _procs_for(raw["procs"], raw["acqus"], spectrum)
    return spectrum


__all__ = ["read_bruker_fid", "read_bruker_fid_raw"]
