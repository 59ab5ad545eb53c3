"""NMR file formats through nmrglue: Bruker processed data, NMRPipe 1D and JCAMP-DX.

Nothing here parses a binary layout, a parameter file or a ppm scale by hand: reading,
writing, parameter files and the ppm axis (universal dictionary + unit_conversion) are
nmrglue's. What this module adds is the checking nmrglue leaves to its caller (file sizes
against the parameters, 2D data, time-domain data) so that bad input becomes an InputError
naming the file, and the Bruker output layout a TopSpin user expects (a new procno, written
atomically). See docs/formats.md.

Importing this module imports nmrglue (about a second); nmrladder.runtime.io imports it
only when an NMR format is read or written.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import uuid
import warnings
from pathlib import Path

import nmrglue as ng
import numpy as np

from nmrladder.runtime.atomic import atomic_path, write_bytes_atomic
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.io import Spectrum, _checked

# Bruker procs parameters the ppm axis and the 1r layout need.
_PROCS_REQUIRED = ("SI", "SF", "SW_p", "OFFSET")
# acqus parameters nmrglue.bruker.guess_udic reads when acqus is present.
_ACQUS_REQUIRED = ("SW_h", "SFO1", "NUC1", "AQ_mod")
# Experiment files copied when the output goes to a new experiment folder; not the fid.
_ACQUISITION_FILES = ("acqus", "acqu", "pulseprogram")
# TopSpin stores int32 1r data with the largest magnitude between 2**28 and 2**29.
_INT_TOP_BIT = 29


def _call_nmrglue(source: Path, what: str, func, *args, **kwargs):
    """Run an nmrglue function: an exception becomes an InputError naming ``source``,
    and each warning is re-issued with the file name in front."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func(*args, **kwargs)
        except Exception as err:  # nmrglue raises anything on corrupt input
            raise InputError(
                f"{source}: nmrglue could not read {what} ({type(err).__name__}: {err})"
            ) from err
    for item in caught:
        warnings.warn(f"{source}: {item.message}", UserWarning, stacklevel=3)
    return result


# --------------------------------------------------------------------------- Bruker


def looks_like_bruker(path: Path) -> bool:
    """True for a Bruker experiment folder, a pdata/<procno> folder, or a 1r file."""
    if path.is_file():
        return path.name == "1r"
    return any((path / name).exists() for name in ("pdata", "acqus", "procs", "1r"))


def find_pdata_dir(path: Path) -> Path:
    """The pdata/<procno> folder meant by ``path`` (that folder, its 1r, or an experiment).

    An experiment folder means its lowest-numbered processed procno, as TopSpin opens it.
    """
    if path.is_file():
        path = path.parent
    if (path / "pdata").is_dir() or (path / "acqus").is_file():  # an experiment folder
        procnos = (path / "pdata").iterdir() if (path / "pdata").is_dir() else []
        processed = [
            p
            for p in procnos
            if p.name.isdigit() and any((p / f).is_file() for f in ("1r", "2rr", "3rrr"))
        ]
        if not processed:
            raise InputError(
                f"{path}: Bruker experiment without a processed spectrum (no pdata/<procno>/1r);"
                " process the fid first (e.g. efp and apk in TopSpin)"
            )
        return min(processed, key=lambda p: int(p.name))
    if path.parent.name != "pdata" or not path.name.isdigit():
        raise InputError(
            f"{path}: not a Bruker processed spectrum; expected <experiment>/pdata/<procno>"
            " holding 1r and procs"
        )
    return path


def _reject_multidimensional(pdata: Path) -> None:
    for name in ("2rr", "3rrr", "proc2s"):
        if (pdata / name).exists():
            raise InputError(
                f"{pdata}: a multidimensional Bruker dataset ({name} present);"
                " nmrladder denoises 1D spectra"
            )


def _read_procs(pdata: Path) -> dict:
    """The procs parameters, checked for what the ppm axis and the 1r size need."""
    procs_file = pdata / "procs"
    if not procs_file.is_file():
        raise InputError(f"{procs_file}: missing; a Bruker pdata folder needs its procs file")
    if procs_file.stat().st_size == 0:
        raise InputError(f"{procs_file}: the file is empty")
    procs = _call_nmrglue(procs_file, "the procs file", ng.bruker.read_jcamp, str(procs_file))
    missing = [key for key in _PROCS_REQUIRED if key not in procs]
    if missing:
        raise InputError(f"{procs_file}: lacks {', '.join(missing)}; is it a Bruker procs file?")
    return procs


def _check_axis_parameters(pdata: Path, dic: dict) -> None:
    """nmrglue's guess_udic takes the sweep width and nucleus from acqus when the experiment
    has one, else from procs: they must be there (guess_udic only warns when they are not)."""
    if "acqus" in dic:
        where, params, required = pdata.parent.parent / "acqus", dic["acqus"], _ACQUS_REQUIRED
    else:
        where, params, required = pdata / "procs", dic["procs"], ("AXNUC",)
    missing = [key for key in required if key not in params]
    if missing:
        raise InputError(f"{where}: lacks {', '.join(missing)}, needed for the ppm axis")


def _bruker_udic(pdata: Path, dic: dict, data: np.ndarray) -> dict:
    """nmrglue's universal dictionary; its warning (a failed axis) becomes an InputError."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        udic = ng.bruker.guess_udic(dic, data)
    if caught:
        problems = "; ".join(str(item.message) for item in caught)
        raise InputError(f"{pdata}: nmrglue could not build the ppm axis ({problems})")
    return udic


def _is_float_data(procs: dict) -> bool:
    return procs.get("DTYPP", 0) == 2  # 0: int32, 2: float64


def _check_1r_size(real_file: Path, procs: dict) -> None:
    """nmrglue reads whatever bytes a 1r holds; its size must match SI in procs."""
    if not real_file.is_file():
        raise InputError(f"{real_file}: missing; a Bruker pdata folder needs its 1r file")
    size = real_file.stat().st_size
    if size == 0:
        raise InputError(f"{real_file}: the file is empty")
    itemsize = 8 if _is_float_data(procs) else 4
    expected = int(procs["SI"]) * itemsize
    if size != expected:
        problem = "truncated" if size < expected else "larger than expected"
        strip = ""
        if procs.get("STSI"):
            strip = f" (a stored strip, STSI={procs['STSI']}, is not supported)"
        raise InputError(
            f"{real_file}: {problem}: {size} bytes, but procs says SI={procs['SI']}"
            f" {'float64' if itemsize == 8 else 'int32'} points ({expected} bytes){strip}"
        )


def read_bruker(path: Path) -> Spectrum:
    """Read the real part (1r) of a Bruker processed 1D spectrum, its ppm axis and parameters."""
    # Absolute: nmrglue finds acqus two levels up, and outputs are named after the layout.
    pdata = find_pdata_dir(Path(os.path.normpath(path.absolute())))
    _reject_multidimensional(pdata)
    procs = _read_procs(pdata)
    _check_1r_size(pdata / "1r", procs)
    dic, data = _call_nmrglue(
        pdata,
        "the processed spectrum",
        ng.bruker.read_pdata,
        str(pdata),
        bin_files=["1r"],
        scale_data=True,  # undo NC_proc: the intensities TopSpin displays
        big=procs.get("BYTORDP", 0) == 1,
        isfloat=_is_float_data(procs),
    )
    _check_axis_parameters(pdata, dic)
    udic = _bruker_udic(pdata, dic, data)
    ppm = ng.fileiobase.uc_from_udic(udic).ppm_scale()
    meta = {
        "procs": dic["procs"],
        "acqus": dic.get("acqus"),
        "procno": int(pdata.name),
        "udic": udic,
    }
    return Spectrum(_checked(data, str(pdata / "1r")), ppm, meta, str(pdata), "bruker")


def first_free_procno(experiment: Path, above: int) -> int:
    """The first processing number above ``above`` not yet used in ``experiment``."""
    procno = above + 1
    while (experiment / "pdata" / str(procno)).exists():
        procno += 1
    return procno


def bruker_output_path(spectrum: Spectrum, out_dir: Path | None, in_place: bool) -> Path:
    """Where a denoised Bruker spectrum goes: a new procno, in the source experiment
    (``in_place``) or in a copy of it at out_dir/<dataset name>/<expno>."""
    experiment = Path(spectrum.source).parent.parent
    if not in_place:
        if out_dir is None:
            raise InputError(f"{spectrum.source}: give an output folder, or ask for in-place")
        experiment = Path(out_dir) / experiment.parent.name / experiment.name
    procno = first_free_procno(experiment, above=spectrum.meta["procno"])
    return experiment / "pdata" / str(procno)


def _bruker_target(spectrum: Spectrum, destination: Path) -> Path:
    """The new pdata/<procno> folder: given as such, or the first free one in an experiment."""
    if destination.parent.name == "pdata" and destination.name.isdigit():
        target = destination
    else:
        procno = first_free_procno(destination, above=spectrum.meta["procno"])
        target = destination / "pdata" / str(procno)
    if target.exists():
        raise InputError(f"{target}: already exists; nmrladder never overwrites a procno")
    return target


def _copy_acquisition_files(source_experiment: Path, experiment: Path) -> None:
    """Give a new experiment folder the source's acquisition parameters (TopSpin and the
    ppm axis read acqus); refuse a folder that holds another experiment."""
    if experiment.resolve() == source_experiment.resolve():
        return
    source_acqus, acqus = source_experiment / "acqus", experiment / "acqus"
    if acqus.exists() and source_acqus.is_file():
        if acqus.read_bytes() != source_acqus.read_bytes():
            raise InputError(
                f"{experiment}: holds another experiment (its acqus differs from {source_acqus})"
            )
    for name in _ACQUISITION_FILES:
        source_file, copy_file = source_experiment / name, experiment / name
        if source_file.is_file() and not copy_file.exists():
            write_bytes_atomic(copy_file, source_file.read_bytes())


def _nc_proc_for(values: np.ndarray, fallback: int) -> int:
    """NC_proc that puts the largest |value| / 2**NC_proc in [2**28, 2**29), as TopSpin does."""
    peak = float(np.max(np.abs(values)))
    if peak == 0.0:
        return int(fallback)
    _, exponent = math.frexp(peak)  # peak = m * 2**exponent, 0.5 <= m < 1
    return exponent - _INT_TOP_BIT


def _procs_for_output(procs: dict, values: np.ndarray, source_procno: int) -> dict:
    """The source's procs with what the new data changes: NC_proc (int32 data), YMAX_p/YMIN_p."""
    new = copy.deepcopy(procs)
    if not _is_float_data(procs):
        new["NC_proc"] = _nc_proc_for(values, procs.get("NC_proc", 0))
    stored = values * 2.0 ** -new.get("NC_proc", 0)  # the numbers in 1r
    if _is_float_data(procs):
        new["YMAX_p"], new["YMIN_p"] = float(stored.max()), float(stored.min())
    else:
        new["YMAX_p"], new["YMIN_p"] = int(np.rint(stored.max())), int(np.rint(stored.min()))
    new["_comments"] = [
        *procs.get("_comments", []),
        f"$$ nmrladder: denoised from procno {source_procno}",
    ]
    return new


def _pdata_values(values: np.ndarray, procs: dict) -> np.ndarray:
    """float64 values that write_pdata(scale_data=True) turns into 1r numbers exactly:
    for int32 data, rounded to the integer grid (write_pdata's cast truncates)."""
    values = values.astype(np.float64)
    if _is_float_data(procs):
        return values
    step = 2.0 ** procs["NC_proc"]  # a power of two: the scaling is exact
    return np.rint(values / step) * step


def _title_for(source_pdata: Path, source_procno: int) -> str:
    title_file = source_pdata / "title"
    old = title_file.read_text(errors="replace").rstrip() if title_file.is_file() else ""
    line = f"nmrladder: denoised from procno {source_procno}"
    return f"{old}\n{line}\n" if old else f"{line}\n"


def _write_pdata_atomic(target: Path, procs: dict, values: np.ndarray, title: str) -> None:
    """Write 1r, procs, proc and title into a hidden folder beside ``target``, then rename it:
    TopSpin never sees a half-written procno."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.nmrladder-tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        ng.bruker.write_pdata(
            str(tmp),
            {"procs": procs},
            _pdata_values(values, procs),
            scale_data=True,  # divide by 2**NC_proc, as TopSpin expects
            write_procs=True,  # writes procs and proc
            overwrite=True,
            big=procs.get("BYTORDP", 0) == 1,  # write_pdata does not take these from procs
            isfloat=_is_float_data(procs),
        )
        (tmp / "title").write_text(title)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bruker(spectrum: Spectrum, values: np.ndarray, destination: Path) -> Path:
    """Write ``values`` as a new procno (see _bruker_target); returns its pdata/<procno> folder."""
    if spectrum.format != "bruker":
        raise InputError(
            f"{destination}: Bruker output needs a Bruker source (its procs and acqus);"
            f" {spectrum.source or 'this spectrum'} is {spectrum.format or 'not from a file'}"
        )
    source_pdata = Path(spectrum.source)
    source_procno = int(spectrum.meta["procno"])
    target = _bruker_target(spectrum, Path(destination))
    _copy_acquisition_files(source_pdata.parent.parent, target.parent.parent)
    procs = _procs_for_output(spectrum.meta["procs"], values, source_procno)
    _write_pdata_atomic(target, procs, values, _title_for(source_pdata, source_procno))
    return target


# --------------------------------------------------------------------------- NMRPipe


def _check_pipe_header(path: Path, dic: dict, data: np.ndarray) -> None:
    """What nmrglue.pipe.read does not check: the magic number, 1D, frequency domain, size."""
    if abs(dic.get("FDFLTORDER", 0.0) - 2.345) > 1e-4:
        raise InputError(f"{path}: not an NMRPipe file (no 2.345 byte-order mark in the header)")
    if dic["FDDIMCOUNT"] != 1 or data.ndim != 1:
        raise InputError(
            f"{path}: a {int(dic['FDDIMCOUNT'])}D NMRPipe dataset; nmrladder denoises 1D spectra"
        )
    if dic["FDF2FTFLAG"] == 0:
        raise InputError(f"{path}: time-domain NMRPipe data (an FID); Fourier transform it first")
    expected = int(dic["FDSIZE"])
    if data.shape[-1] != expected:
        raise InputError(
            f"{path}: truncated or corrupt: {data.shape[-1]} points, the header says {expected}"
        )


def read_pipe(path: Path) -> Spectrum:
    """Read an NMRPipe 1D spectrum (.ft, .ft1, .fid) and its ppm axis."""
    dic, data = _call_nmrglue(path, "an NMRPipe file", ng.pipe.read, str(path))
    _check_pipe_header(path, dic, np.asarray(data))
    # make_uc places the axis by ORIG, as NMRPipe does; guess_udic's CAR goes stale after EXT.
    ppm = ng.pipe.make_uc(dic, data).ppm_scale()
    meta = {"pipe": dic, "udic": ng.pipe.guess_udic(dic, data)}
    return Spectrum(_checked(np.real(data), str(path)), ppm, meta, str(path), "pipe")


def _udic_from_meta(udic: dict) -> dict:
    """A 1D universal dictionary for a real frequency-domain trace; JSON turns key 0 into "0"."""
    udic = {int(k) if str(k).isdigit() else k: copy.deepcopy(v) for k, v in udic.items()}
    udic[0].update(complex=False, time=False, freq=True, encoding="direct")
    return udic


def _pipe_dic_for(spectrum: Spectrum, size: int, destination: Path) -> dict:
    """The NMRPipe header to write: the source's, or one nmrglue builds from the udic."""
    if "pipe" in spectrum.meta:
        dic = copy.deepcopy(spectrum.meta["pipe"])
        if int(dic["FDSIZE"]) != size:
            raise InputError(
                f"{destination}: {size} points do not fit the NMRPipe header ({dic['FDSIZE']:.0f})"
            )
        dic["FDF2QUADFLAG"] = dic["FDQUADFLAG"] = 1.0  # only the real part is written
        return dic
    if "udic" in spectrum.meta:
        return ng.pipe.create_dic(_udic_from_meta(spectrum.meta["udic"]))
    raise InputError(
        f"{destination}: NMRPipe output needs the spectral parameters (an NMRPipe, Bruker or"
        f" JCAMP-DX source); {spectrum.source or 'this spectrum'} has none"
    )


def write_pipe(spectrum: Spectrum, values: np.ndarray, destination: Path) -> Path:
    """Write ``values`` as an NMRPipe 1D file (real part), keeping the source's header."""
    dic = _pipe_dic_for(spectrum, values.size, destination)
    dic["FDMAX"], dic["FDMIN"] = float(values.max()), float(values.min())
    with atomic_path(destination) as tmp:
        ng.pipe.write(str(tmp), dic, values.astype(np.float32), overwrite=True)
    return Path(destination)


# --------------------------------------------------------------------------- JCAMP-DX


def _jcamp_first(dic: dict, key: str) -> str | None:
    values = dic.get(key)
    return values[0] if values else None


def _check_jcamp_data(path: Path, dic: dict, data) -> np.ndarray:
    """The real trace of a JCAMP-DX spectrum, or an InputError (no data, FID, truncated)."""
    if isinstance(data, list):  # [real, imaginary]
        data = data[0]
    if data is None:
        raise InputError(
            f"{path}: no JCAMP-DX spectrum data (XYDATA or NTUPLES) found;"
            " a truncated file (nmrglue drops a data table without its closing ##END=)?"
        )
    if "FID" in (_jcamp_first(dic, "DATATYPE") or "").upper():
        raise InputError(f"{path}: a JCAMP-DX FID (time domain); nmrladder reads spectra")
    npoints = _jcamp_first(dic, "NPOINTS")
    if npoints is not None and int(float(npoints)) != len(data):
        raise InputError(
            f"{path}: truncated or corrupt: {len(data)} points, ##NPOINTS says {npoints}"
        )
    if len(data) < 2:
        raise InputError(f"{path}: {len(data)} point(s); not a spectrum")
    return np.asarray(data)


def _jcamp_frequency(path: Path, dic: dict, udic: dict) -> float | None:
    """The ppm reference frequency in MHz: $SF where a Bruker export gives it (its
    .OBSERVE FREQUENCY is SFO1, the carrier), else .OBSERVE FREQUENCY, else None."""
    sf = _jcamp_first(dic, "$SF")
    if sf is None:
        return udic[0]["obs"] if ".OBSERVEFREQUENCY" in dic else None
    try:
        return float(sf)
    except ValueError as err:
        raise InputError(f"{path}: ##$SF= {sf!r} is not a number") from err


def _jcamp_udic(path: Path, dic: dict, data: np.ndarray) -> tuple[dict | None, bool]:
    """nmrglue's universal dictionary, completed so that unit_conversion gives the header's
    x grid (x_i = FIRSTX + i (LASTX - FIRSTX) / (NPOINTS - 1)); and whether x ascends.

    nmrglue.jcampdx.guess_udic sets obs, label and size, takes sw = |LASTX - FIRSTX| (one
    point short of the spectral width) and leaves car unset. The udic is None when the
    header has no x range, or an x range in Hz without a frequency.
    """
    udic = _call_nmrglue(path, "the JCAMP-DX header", ng.jcampdx.guess_udic, dic, data)
    first, last, in_ppm = _call_nmrglue(  # nmrglue's own helper for FIRSTX/LASTX/XUNITS
        path, "the JCAMP-DX x range", ng.jcampdx._find_firstx_lastx, dic
    )
    obs = _jcamp_frequency(path, dic, udic)
    if first is None or last is None or (obs is None and not in_ppm):
        return None, False
    obs = 1.0 if obs is None else obs  # a ppm x range needs no frequency for a ppm axis
    to_hz = obs if in_ppm else 1.0
    n = len(data)
    sw = abs(last - first) * to_hz * n / (n - 1)
    udic[0].update(
        sw=sw,
        obs=obs,
        car=max(first, last) * to_hz - sw / 2,  # unit_conversion puts car + sw/2 at point 0
        complex=False,
        time=False,
        freq=True,
    )
    return udic, first < last


def read_jcamp(path: Path) -> Spectrum:
    """Read a JCAMP-DX 1D NMR spectrum, its ppm axis (from the header) and its header."""
    dic, data = _call_nmrglue(path, "a JCAMP-DX file", ng.jcampdx.read, str(path))
    data = _check_jcamp_data(path, dic, data)
    udic, ascending = _jcamp_udic(path, dic, data)
    ppm = None
    if udic is not None:
        ppm = ng.fileiobase.uc_from_udic(udic).ppm_scale()  # high to low
        if ascending:
            ppm = ppm[::-1].copy()
    meta = {"jcamp": dic, "udic": udic}
    return Spectrum(_checked(data, str(path)), ppm, meta, str(path), "jcamp")


READERS = {"bruker": read_bruker, "pipe": read_pipe, "jcamp": read_jcamp}
WRITERS = {"bruker": write_bruker, "pipe": write_pipe}
