"""NMR file formats through nmrglue: Bruker processed data and NMRPipe 1D here, JCAMP-DX in
nmrladder.runtime.jcamp; the reader and writer tables of all three.

Nothing here parses a binary layout, a parameter file or a ppm scale by hand: reading,
writing, parameter files and the ppm axis (universal dictionary + unit_conversion) are
nmrglue's. What this module adds is the checking nmrglue leaves to its caller (file sizes
against the parameters, 2D data, time-domain data, parameter files cut off: see
nmrladder.runtime.param_files) so that bad input becomes an InputError naming the file, and
the Bruker output layout a TopSpin user expects (a new procno, written atomically, procs in
the source's line endings). Readers put nmrglue's warnings into the spectrum's notes
(nmrladder.runtime.spectrum). See docs/formats.md.

Importing this module imports nmrglue (about a second); nmrladder.runtime.io imports it
only when an NMR format is read or written.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import uuid
from pathlib import Path

import nmrglue as ng
import numpy as np

from nmrladder.runtime.atomic import atomic_path, write_bytes_atomic
from nmrladder.runtime.bruker_fid import read_bruker_fid
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.fid import FidProcessing
from nmrladder.runtime.jcamp import read_jcamp
from nmrladder.runtime.param_files import is_number, read_parameter_file
from nmrladder.runtime.spectrum import (
    Spectrum,
    call_nmrglue,
    checked_intensities,
    checked_ppm,
    nmrglue_warnings,
    one_line,
)

# Bruker procs parameters the ppm axis and the 1r layout need.
_PROCS_REQUIRED = ("SI", "SF", "SW_p", "OFFSET")
# acqus parameters nmrglue.bruker.guess_udic reads when acqus is present.
_ACQUS_REQUIRED = ("SW_h", "SFO1", "NUC1", "AQ_mod")
# Experiment files copied when the output goes to a new experiment folder; not the fid.
_ACQUISITION_FILES = ("acqus", "acqu", "pulseprogram")
# TopSpin stores int32 1r data with the largest magnitude between 2**28 and 2**29.
_INT_TOP_BIT = 29


# --------------------------------------------------------------------------- Bruker


def looks_like_bruker(path: Path) -> bool:
    """True for a Bruker experiment folder, a pdata/<procno> folder, a 1r file, or a fid
    file beside its acqus."""
    if path.is_file():
        return path.name == "1r" or (path.name == "fid" and (path.parent / "acqus").is_file())
    return any((path / name).exists() for name in ("pdata", "acqus", "procs", "1r"))


def _has_processed(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("1r", "2rr", "3rrr"))


def fid_only_experiment(path: Path) -> Path | None:
    """The experiment whose fid ``path`` means, when there is no processed spectrum to read:
    the fid file itself, a pdata/<procno> folder without 1r, or an experiment folder none
    of whose procnos is processed. None when a processed spectrum is meant (or nothing)."""
    if path.is_file():
        return path.parent if path.name == "fid" else None
    if path.parent.name == "pdata" and path.name.isdigit():
        experiment = path.parent.parent
        if _has_processed(path) or not (experiment / "acqus").is_file():
            return None
    elif (path / "pdata").is_dir() or (path / "acqus").is_file():
        experiment = path
        procnos = (path / "pdata").iterdir() if (path / "pdata").is_dir() else []
        if any(p.name.isdigit() and _has_processed(p) for p in procnos):
            return None
    else:
        return None
    if not (experiment / "fid").is_file():
        if (experiment / "ser").is_file():
            raise InputError(
                f"{experiment}: a multidimensional Bruker experiment (ser, no processed"
                " spectrum); nmrladder denoises 1D spectra"
            )
        return None
    return experiment


def find_pdata_dir(path: Path) -> Path:
    """The pdata/<procno> folder meant by ``path`` (that folder, its 1r, or an experiment).

    An experiment folder means its lowest-numbered processed procno, as TopSpin opens it.
    """
    if path.is_file():
        path = path.parent
    if (path / "pdata").is_dir() or (path / "acqus").is_file():  # an experiment folder
        procnos = (path / "pdata").iterdir() if (path / "pdata").is_dir() else []
        processed = [p for p in procnos if p.name.isdigit() and _has_processed(p)]
        if not processed:
            raise InputError(
                f"{path}: Bruker experiment without a processed spectrum (no pdata/<procno>/1r)"
                " and without a fid"
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


def _read_procs(pdata: Path, notes: list[str]) -> tuple[dict, str]:
    """The procs parameters, checked for what the ppm axis and the 1r size need, and the
    file's line ending (a new procno keeps it)."""
    procs_file = pdata / "procs"
    if not procs_file.is_file():
        raise InputError(f"{procs_file}: missing; a Bruker pdata folder needs its procs file")
    procs, newline = read_parameter_file(procs_file, notes)
    missing = [key for key in _PROCS_REQUIRED if key not in procs]
    if missing:
        raise InputError(f"{procs_file}: lacks {', '.join(missing)}; is it a Bruker procs file?")
    bad = [key for key in _PROCS_REQUIRED if not is_number(procs[key])]
    if not bad and (procs["SI"] < 2 or procs["SI"] != int(procs["SI"])):
        bad = ["SI"]
    bad += [key for key in ("SF", "SW_p") if key not in bad and procs[key] <= 0]
    if bad:
        shown = ", ".join(f"{key}={procs[key]!r}" for key in bad)
        raise InputError(
            f"{procs_file}: corrupt: {shown}; SI must be a number of points (2 or more),"
            " SF (MHz) and SW_p (Hz) positive numbers, OFFSET (ppm) a number"
        )
    return procs, newline


def _read_acqus(pdata: Path, notes: list[str]) -> dict | None:
    """The experiment's acqus parameters (nmrglue takes the ppm axis from them), if any."""
    acqus_file = pdata.parent.parent / "acqus"
    if not acqus_file.is_file():
        return None
    return read_parameter_file(acqus_file, notes)[0]


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
    with nmrglue_warnings() as problems:
        try:
            udic = ng.bruker.guess_udic(dic, data)
        except Exception as err:  # nmrglue raises anything on corrupt parameters
            raise InputError(
                f"{pdata}: nmrglue could not build the ppm axis ({type(err).__name__}:"
                f" {one_line(err)})"
            ) from err
    if problems:
        raise InputError(f"{pdata}: nmrglue could not build the ppm axis ({'; '.join(problems)})")
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
    """Read the real part (1r) of a Bruker processed 1D spectrum, its ppm axis and parameters;
    an experiment with a fid and no processed spectrum (or its fid file) is processed from
    the fid (nmrladder.runtime.bruker_fid)."""
    # Absolute: acqus is two levels up, and outputs are named after the layout.
    path = Path(os.path.normpath(path.absolute()))
    experiment = fid_only_experiment(path)
    if experiment is not None:
        return read_bruker_fid(experiment)
    pdata = find_pdata_dir(path)
    _reject_multidimensional(pdata)
    notes: list[str] = []
    # The parameter files are read here, not by nmrglue.bruker.read_pdata, whose parser
    # can loop forever on a file cut off (nmrladder.runtime.param_files).
    procs, procs_newline = _read_procs(pdata, notes)
    acqus = _read_acqus(pdata, notes)
    real_file = pdata / "1r"
    _check_1r_size(real_file, procs)
    dic = {"procs": procs} if acqus is None else {"procs": procs, "acqus": acqus}
    _, raw = call_nmrglue(
        real_file,
        "the processed spectrum",
        notes,
        ng.bruker.read_pdata_binary,
        str(real_file),
        big=procs.get("BYTORDP", 0) == 1,
        isfloat=_is_float_data(procs),
    )
    # undo NC_proc: the intensities TopSpin displays
    data = call_nmrglue(pdata / "procs", "NC_proc", notes, ng.bruker.scale_pdata, dic, raw)
    _check_axis_parameters(pdata, dic)
    udic = _bruker_udic(pdata, dic, data)
    intensities = checked_intensities(data, str(real_file), notes)
    uc = call_nmrglue(pdata, "the ppm axis", notes, ng.fileiobase.uc_from_udic, udic)
    meta = {
        "procs": procs,
        "acqus": acqus,
        "procno": int(pdata.name),
        "udic": udic,
        "procs_newline": procs_newline,
    }
    ppm = checked_ppm(uc.ppm_scale(), intensities, pdata)
    return Spectrum(intensities, ppm, meta, str(pdata), "bruker", notes)


def first_free_procno(experiment: Path, above: int) -> int:
    """The first processing number above ``above`` not yet used in ``experiment``."""
    procno = above + 1
    while (experiment / "pdata" / str(procno)).exists():
        procno += 1
    return procno


def source_experiment(spectrum: Spectrum) -> Path:
    """The experiment folder a Bruker spectrum was read from: two levels above its source
    (pdata/<procno>), or ``meta["experiment"]`` (a spectrum processed from the fid)."""
    return Path(spectrum.meta.get("experiment") or Path(spectrum.source).parent.parent)


def bruker_output_path(
    spectrum: Spectrum, out_dir: Path | None, in_place: bool, skip: int = 0
) -> Path:
    """Where a denoised Bruker spectrum goes: a new procno, in the source experiment
    (``in_place``) or in a copy of it at out_dir/<dataset name>/<expno>; ``skip`` free
    procnos are left for other outputs (a processed fid's)."""
    experiment = source_experiment(spectrum)
    if not in_place:
        if out_dir is None:
            raise InputError(f"{spectrum.source}: give an output folder, or ask for in-place")
        experiment = Path(out_dir) / experiment.parent.name / experiment.name
    procno = first_free_procno(experiment, above=spectrum.meta["procno"])
    for _ in range(skip):
        procno = first_free_procno(experiment, above=procno)
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


def _provenance(spectrum: Spectrum, values: np.ndarray) -> list[str]:
    """What the new procno holds, one line each (its title's last lines, procs' comments):
    denoised from a procno, or processed from the fid (and then denoised, unless ``values``
    are the processed spectrum itself)."""
    if not spectrum.meta.get("processed_from_fid"):
        return [f"nmrladder: denoised from procno {spectrum.meta['procno']}"]
    record = FidProcessing(**spectrum.meta["fid_processing"])
    lines = [f"nmrladder: processed from the fid with nmrglue ({record.summary()})"]
    if not np.array_equal(values, spectrum.intensities):
        lines.append("nmrladder: denoised")
    return lines


def _procs_for_output(procs: dict, values: np.ndarray, provenance: list[str]) -> dict:
    """The source's procs with what the new data changes: NC_proc (int32 data), YMAX_p/YMIN_p."""
    new = copy.deepcopy(procs)
    if not _is_float_data(procs):
        new["NC_proc"] = _nc_proc_for(values, procs.get("NC_proc", 0))
    stored = values * 2.0 ** -new.get("NC_proc", 0)  # the numbers in 1r
    if _is_float_data(procs):
        new["YMAX_p"], new["YMIN_p"] = float(stored.max()), float(stored.min())
    else:
        new["YMAX_p"], new["YMIN_p"] = int(np.rint(stored.max())), int(np.rint(stored.min()))
    new["_comments"] = [*procs.get("_comments", []), *(f"$$ {line}" for line in provenance)]
    return new


def _pdata_values(values: np.ndarray, procs: dict) -> np.ndarray:
    """float64 values that write_pdata(scale_data=True) turns into 1r numbers exactly:
    for int32 data, rounded to the integer grid (write_pdata's cast truncates)."""
    values = values.astype(np.float64)
    if _is_float_data(procs):
        return values
    step = 2.0 ** procs["NC_proc"]  # a power of two: the scaling is exact
    return np.rint(values / step) * step


def _title_for(source_pdata: Path, provenance: list[str]) -> str:
    title_file = source_pdata / "title"
    old = title_file.read_text(errors="replace").rstrip() if title_file.is_file() else ""
    return "\n".join([old, *provenance] if old else provenance) + "\n"


def _write_pdata_atomic(
    target: Path, procs: dict, values: np.ndarray, title: str, newline: str
) -> None:
    """Write 1r, procs, proc and title into a hidden folder beside ``target``, then rename it:
    TopSpin never sees a half-written procno. procs and proc get the line ending ``newline``
    (nmrglue writes "\n"; TopSpin on Windows writes and keeps "\r\n")."""
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
        if newline != "\n":
            for name in ("procs", "proc"):
                written = tmp / name
                written.write_bytes(written.read_bytes().replace(b"\n", newline.encode()))
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
    experiment = source_experiment(spectrum)
    source_pdata = experiment / "pdata" / str(spectrum.meta["procno"])
    target = _bruker_target(spectrum, Path(destination))
    _copy_acquisition_files(experiment, target.parent.parent)
    provenance = _provenance(spectrum, values)
    procs = _procs_for_output(spectrum.meta["procs"], values, provenance)
    newline = spectrum.meta.get("procs_newline", "\n")
    _write_pdata_atomic(target, procs, values, _title_for(source_pdata, provenance), newline)
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
    notes: list[str] = []
    dic, data = call_nmrglue(path, "an NMRPipe file", notes, ng.pipe.read, str(path))
    _check_pipe_header(path, dic, np.asarray(data))
    intensities = checked_intensities(np.real(data), str(path))  # complex: the real part
    # make_uc places the axis by ORIG, as NMRPipe does; guess_udic's CAR goes stale after EXT.
    uc = call_nmrglue(path, "the NMRPipe axis", notes, ng.pipe.make_uc, dic, data)
    ppm = checked_ppm(uc.ppm_scale(), intensities, path)
    udic = call_nmrglue(path, "the NMRPipe header", notes, ng.pipe.guess_udic, dic, data)
    meta = {"pipe": dic, "udic": udic}
    return Spectrum(intensities, ppm, meta, str(path), "pipe", notes)


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


READERS = {"bruker": read_bruker, "pipe": read_pipe, "jcamp": read_jcamp}
WRITERS = {"bruker": write_bruker, "pipe": write_pipe}
