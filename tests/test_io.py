"""Spectrum I/O: real files in every format, written by nmrglue (or by hand from the
JCAMP-DX spec, which nmrglue cannot write), read, modified, written back and read again."""

from __future__ import annotations

import ast
import re
import shutil
import signal
import warnings
from pathlib import Path

import h5py
import nmrglue as ng
import numpy as np
import pytest
from nmrfiles import (
    O1,
    OFFSET,
    SF,
    SI,
    SW,
    make_bruker,
    procs_dict,
    real_bruker,
    spectrum_values,
)

from nmrladder.runtime import formats
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.io import (
    ReaderNote,
    Spectrum,
    detect_format,
    output_path_for,
    read_spectrum,
    write_spectrum,
)


def make_pipe(path: Path, values=None, *, ndim=1, time=False) -> Path:
    udic = ng.fileiobase.create_blank_udic(ndim)
    for dim in range(ndim):
        udic[dim].update(
            size=SI if dim == ndim - 1 else 8, complex=False, sw=SW, obs=SF, car=O1,
            label="1H", time=time, freq=not time,
        )  # fmt: skip
    dic = ng.pipe.create_dic(udic)
    data = spectrum_values() if values is None else values
    if ndim == 2:
        data = np.tile(data, (8, 1))
    ng.pipe.write(str(path), dic, np.asarray(data, dtype=np.float32), overwrite=True)
    return path


def make_jcamp(
    path: Path, y: np.ndarray, *, first: float, last: float, units="HZ", extra=()
) -> Path:
    """An XYDATA (X++(Y..Y)) JCAMP-DX 5.01 NMR spectrum, AFFN form, as in the spec's examples.

    Like Bruker's export: .OBSERVE FREQUENCY is SFO1, $SF the ppm reference frequency.
    ``extra``: more header lines, before the data.
    """
    n = y.size
    step = (last - first) / (n - 1)
    yfactor = 0.001
    ints = np.rint(y / yfactor).astype(np.int64)
    lines = [
        "##TITLE= nmrladder test spectrum",
        "##JCAMP-DX= 5.01",
        "##DATA TYPE= NMR SPECTRUM",
        "##DATA CLASS= XYDATA",
        "##ORIGIN= nmrladder tests",
        "##OWNER= public domain",
        f"##.OBSERVE FREQUENCY= {SF + O1 * 1e-6:.7f}",
        "##.OBSERVE NUCLEUS= ^1H",
        f"##$SF= {SF}",
        f"##XUNITS= {units}",
        "##YUNITS= ARBITRARY UNITS",
        "##XFACTOR= 1.0",
        f"##YFACTOR= {yfactor}",
        f"##FIRSTX= {first!r}",
        f"##LASTX= {last!r}",
        f"##NPOINTS= {n}",
        f"##FIRSTY= {ints[0] * yfactor!r}",
        *extra,
        "##XYDATA= (X++(Y..Y))",
    ]
    for start in range(0, n, 8):
        chunk = " ".join(str(v) for v in ints[start : start + 8])
        lines.append(f"{first + start * step:.6f} {chunk}")
    lines.append("##END=")
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_names(error: pytest.ExceptionInfo, path: Path) -> None:
    assert str(path) in str(error.value), f"message does not name {path}: {error.value}"


# --------------------------------------------------------------------------- Bruker


def test_bruker_read_matches_nmrglue(tmp_path):
    experiment = make_bruker(tmp_path)
    for path in (experiment, experiment / "pdata" / "1", experiment / "pdata" / "1" / "1r"):
        spectrum = read_spectrum(path)
        assert detect_format(path) == "bruker" and spectrum.format == "bruker"
        dic, data = ng.bruker.read_pdata(str(experiment / "pdata" / "1"))
        uc = ng.fileiobase.uc_from_udic(ng.bruker.guess_udic(dic, data))
        np.testing.assert_array_equal(spectrum.ppm, uc.ppm_scale())
        np.testing.assert_array_equal(spectrum.intensities, data.astype(np.float32))
        assert spectrum.intensities.dtype == np.float32
        assert spectrum.ppm[0] == pytest.approx(OFFSET, abs=1e-9)
        assert spectrum.meta["procs"]["SF"] == SF and spectrum.meta["acqus"]["NUC1"] == "1H"
        assert spectrum.meta["procno"] == 1


@pytest.mark.parametrize(("bytordp", "dtypp"), [(0, 0), (1, 0), (0, 2)])
def test_bruker_round_trip_as_new_procno(tmp_path, bytordp, dtypp):
    experiment = make_bruker(tmp_path / "data", bytordp=bytordp, dtypp=dtypp)
    source = read_spectrum(experiment)
    denoised = source.intensities * 0.37 + 12.5  # a different scale: NC_proc must follow

    out = write_spectrum(source, output_path_for(source, tmp_path / "out"), denoised)

    assert out == tmp_path / "out" / "sample" / "10" / "pdata" / "2"
    assert sorted(p.name for p in out.iterdir()) == ["1r", "proc", "procs", "title"]
    assert not list(out.parent.glob(".*"))  # no temporary folder left behind
    # nmrglue opens it the way TopSpin would (scaled by NC_proc), with the same ppm axis
    dic, data = ng.bruker.read_pdata(str(out))
    uc = ng.fileiobase.uc_from_udic(ng.bruker.guess_udic(dic, data))
    np.testing.assert_array_equal(uc.ppm_scale(), source.ppm)
    top = np.abs(denoised).max()
    assert np.abs(data - denoised).max() <= 1e-6 * top
    if dtypp == 0:  # int32 stored with the top magnitude in [2**28, 2**29), as TopSpin does
        stored = np.abs(ng.bruker.read_pdata(str(out), scale_data=False)[1]).max()
        assert 2**28 <= stored < 2**29
    back = read_spectrum(out)
    np.testing.assert_array_equal(back.ppm, source.ppm)
    assert np.abs(back.intensities - denoised).max() <= 1e-6 * top
    for key in ("SF", "SW_p", "OFFSET", "SI", "BYTORDP", "DTYPP", "AXNUC"):
        assert back.meta["procs"][key] == source.meta["procs"][key]
    assert back.meta["acqus"] == source.meta["acqus"]
    assert (out.parent.parent / "acqus").read_bytes() == (experiment / "acqus").read_bytes()
    assert "denoised from procno 1" in (out / "title").read_text()
    assert "made-up sample" in (out / "title").read_text()
    # the source experiment is untouched
    assert sorted(p.name for p in (experiment / "pdata").iterdir()) == ["1"]


def test_bruker_in_place_and_explicit_procno(tmp_path):
    experiment = make_bruker(tmp_path)
    source = read_spectrum(experiment / "pdata" / "1")
    first = write_spectrum(source, output_path_for(source, in_place=True))
    assert first == experiment / "pdata" / "2"
    assert write_spectrum(source, experiment) == experiment / "pdata" / "3"
    explicit = write_spectrum(source, experiment / "pdata" / "7", source.intensities * 2)
    assert explicit == experiment / "pdata" / "7"
    np.testing.assert_allclose(read_spectrum(explicit).intensities, source.intensities * 2)
    with pytest.raises(InputError) as error:
        write_spectrum(source, experiment / "pdata" / "7")
    assert_names(error, experiment / "pdata" / "7")
    # the source pdata is still what it was
    np.testing.assert_array_equal(read_spectrum(experiment).intensities, source.intensities)


def test_bruker_write_is_atomic(tmp_path, monkeypatch):
    experiment = make_bruker(tmp_path)
    source = read_spectrum(experiment)

    def fail_midway(directory, *args, **kwargs):
        (Path(directory) / "1r").write_bytes(b"\0" * 16)  # a half-written file
        raise OSError("disk full")

    monkeypatch.setattr(formats.ng.bruker, "write_pdata", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_spectrum(source, experiment)
    assert sorted(p.name for p in (experiment / "pdata").iterdir()) == ["1"]


def test_bruker_copy_refuses_a_different_experiment(tmp_path):
    source = read_spectrum(make_bruker(tmp_path / "a"))
    other = tmp_path / "out" / "sample" / "10"
    other.mkdir(parents=True)
    (other / "acqus").write_text("##TITLE= another experiment\n##END=\n")
    with pytest.raises(InputError) as error:
        write_spectrum(source, output_path_for(source, tmp_path / "out"))
    assert_names(error, other)


def test_bruker_pdata_without_acqus_takes_the_axis_fromprocs_dict(tmp_path):
    experiment = make_bruker(tmp_path, acqus=False)
    spectrum = read_spectrum(experiment)
    assert spectrum.meta["acqus"] is None
    assert spectrum.ppm[0] == pytest.approx(OFFSET, abs=1e-9)
    assert spectrum.ppm[0] - spectrum.ppm[1] == pytest.approx(SW / SF / SI)


def test_bruker_to_nmrpipe_keeps_the_axis(tmp_path):
    source = read_spectrum(make_bruker(tmp_path))
    back = read_spectrum(write_spectrum(source, tmp_path / "converted.ft"))
    np.testing.assert_array_equal(back.intensities, source.intensities)
    np.testing.assert_allclose(back.ppm, source.ppm, atol=1e-5)  # header floats are float32


# --------------------------------------------------------------------------- NMRPipe


@pytest.mark.parametrize("suffix", [".ft", ".ft1", ".fid"])
def test_pipe_round_trip(tmp_path, suffix):
    path = make_pipe(tmp_path / f"spec{suffix}")
    source = read_spectrum(path)
    assert detect_format(path) == "pipe" and source.format == "pipe"
    dic, data = ng.pipe.read(str(path))
    np.testing.assert_array_equal(source.ppm, ng.pipe.make_uc(dic, data).ppm_scale())
    np.testing.assert_array_equal(source.intensities, data)

    denoised = source.intensities * 0.5 - 3.0
    destination = output_path_for(source, tmp_path / "out")
    assert destination == tmp_path / "out" / f"spec_denoised{suffix}"
    back = read_spectrum(write_spectrum(source, destination, denoised))
    np.testing.assert_array_equal(back.intensities, denoised.astype(np.float32))
    np.testing.assert_array_equal(back.ppm, source.ppm)
    for key in ("FDF2SW", "FDF2OBS", "FDF2ORIG", "FDF2CAR", "FDF2LABEL", "FDSIZE"):
        assert back.meta["pipe"][key] == source.meta["pipe"][key]


# --------------------------------------------------------------------------- JCAMP-DX


def test_jcamp_hz_axis_referenced_to_sf(tmp_path):
    y = spectrum_values()
    first, last = OFFSET * SF, OFFSET * SF - SW * (SI - 1) / SI  # Hz from SF, high to low
    path = make_jcamp(tmp_path / "spec.jdx", y, first=first, last=last)
    spectrum = read_spectrum(path)
    assert detect_format(path) == "jcamp" and spectrum.format == "jcamp"
    np.testing.assert_allclose(spectrum.intensities, y, atol=1e-3)
    np.testing.assert_allclose(spectrum.ppm, np.linspace(first, last, SI) / SF, atol=1e-10)
    assert spectrum.meta["jcamp"]["$SF"] == [str(SF)]

    # nmrglue has no JCAMP-DX writer: the natural output is .npz, with the header as metadata
    destination = output_path_for(spectrum, tmp_path / "out")
    assert destination == tmp_path / "out" / "spec_denoised.npz"
    back = read_spectrum(write_spectrum(spectrum, destination, spectrum.intensities / 2))
    np.testing.assert_array_equal(back.intensities, spectrum.intensities / 2)
    np.testing.assert_array_equal(back.ppm, spectrum.ppm)
    assert back.meta["jcamp"]["NPOINTS"] == [str(SI)]
    with pytest.raises(InputError) as error:
        write_spectrum(spectrum, tmp_path / "out.jdx")
    assert_names(error, tmp_path / "out.jdx")


def test_jcamp_ascending_ppm_axis(tmp_path):
    y = spectrum_values()
    path = make_jcamp(tmp_path / "spec.dx", y, first=-0.5, last=10.0, units="PPM")
    spectrum = read_spectrum(path)
    np.testing.assert_allclose(spectrum.ppm, np.linspace(-0.5, 10.0, SI), atol=1e-10)


# --------------------------------------------------------------------------- plain formats


@pytest.mark.parametrize("suffix", [".npz", ".csv", ".h5", ".hdf5"])
def test_plain_round_trip_keeps_axis_and_meta(tmp_path, suffix):
    ppm = np.linspace(12.0, -1.0, 500)
    meta = {"sample": "urine 3", "scans": 64, "sf": SF, "nested": {"a": [1, 2]}}
    source = Spectrum(spectrum_values(500).astype(np.float32), ppm, meta, "", "")
    path = write_spectrum(source, tmp_path / f"spec{suffix}")
    spectrum = read_spectrum(path)
    np.testing.assert_array_equal(spectrum.intensities, source.intensities)
    np.testing.assert_array_equal(spectrum.ppm, ppm)
    assert spectrum.meta == meta

    denoised = spectrum.intensities * 0.25
    destination = output_path_for(spectrum, tmp_path / "out")
    assert destination == tmp_path / "out" / f"spec_denoised{suffix}"
    back = read_spectrum(write_spectrum(spectrum, destination, denoised))
    np.testing.assert_array_equal(back.intensities, denoised)
    np.testing.assert_array_equal(back.ppm, ppm)
    assert back.meta == meta


def test_npy_round_trip(tmp_path):
    values = spectrum_values(300).astype(np.float32)
    np.save(tmp_path / "spec.npy", values)
    spectrum = read_spectrum(tmp_path / "spec.npy")
    back = read_spectrum(write_spectrum(spectrum, output_path_for(spectrum, in_place=True)))
    assert back.source == str(tmp_path / "spec_denoised.npy")
    np.testing.assert_array_equal(back.intensities, values)


NPY_CASES = {
    "float32": np.arange(40, dtype=np.float32) - 7.5,
    "float64": np.linspace(-3, 5, 33),
    "big-endian": (np.arange(17) * 0.5).astype(">f4"),
    "int16": np.arange(-8, 8, dtype=np.int16),
    "complex64 (real part)": (np.arange(9) + 2j).astype(np.complex64),
    "column": np.arange(12, dtype=np.float32).reshape(12, 1),
    "Fortran-ordered row": np.asfortranarray(np.arange(6.0).reshape(1, 6)),
}


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("name", list(NPY_CASES))
def test_npy_reads_as_np_load(tmp_path, name, version):
    """The .npy reader (its header cache included: each file is read twice) against np.load."""
    values = NPY_CASES[name]
    path = tmp_path / "spec.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array(handle, values, version=version)
    expected = np.squeeze(np.real(np.load(path))).astype(np.float32)
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ReaderNote)  # the complex case's note
            spectrum = read_spectrum(path)
        assert spectrum.intensities.dtype == np.float32
        assert spectrum.intensities.flags.writeable
        np.testing.assert_array_equal(spectrum.intensities, expected)


def test_npy_refuses_truncated_object_and_foreign_files(tmp_path):
    values = np.arange(64, dtype=np.float32)
    path = tmp_path / "spec.npy"
    np.save(path, values)
    read_spectrum(path)  # its header is now cached: the size check must not rely on parsing
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(InputError, match="truncated: 252 bytes of data for 64 values"):
        read_spectrum(path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="object arrays"):
        read_spectrum(path)
    path.write_bytes(b"PK\x03\x04 a zip file, not .npy")
    with pytest.raises(InputError, match="not a readable .npy file.*no .npy header"):
        read_spectrum(path)
    path.write_bytes(b"\x93NUMPY\x01\x00")  # cut inside the header
    with pytest.raises(InputError, match="not a readable .npy file"):
        read_spectrum(path)
    np.save(path, values)  # a bracket of the header's shape flipped: numpy's TokenError
    path.write_bytes(path.read_bytes().replace(b"(64,)", b"(64,("))
    with pytest.raises(InputError, match="not a readable .npy file.*TokenError") as error:
        read_spectrum(path)
    assert_names(error, path)
    np.save(path, np.array(["1.0", "2.0"]))  # text, not intensities
    with pytest.raises(InputError, match="<U3 are not intensities"):
        read_spectrum(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_npy_output_bytes_equal_np_save(tmp_path, dtype):
    import io

    values = np.linspace(-1, 1, 50).astype(dtype)
    spectrum = Spectrum(np.zeros(50, np.float32), source=str(tmp_path / "a.npy"), format="npy")
    for length in (50, 50, 49):  # the header is cached per shape
        spectrum.intensities = np.zeros(length, np.float32)
        written = write_spectrum(spectrum, tmp_path / f"out{length}.npy", values[:length])
        expected = io.BytesIO()
        np.save(expected, values[:length].astype(np.float32))
        assert written.read_bytes() == expected.getvalue()


def test_atomic_write_of_several_buffers_survives_short_writes(tmp_path, monkeypatch):
    """os.writev may write less than asked: the rest follows, in order, nothing twice."""
    import os

    from nmrladder.runtime.atomic import write_bytes_atomic

    real_writev = os.writev

    def at_most_7_bytes(fd, buffers):
        first = next(bytes(b) for b in buffers if len(b))
        return real_writev(fd, [first[:7]])

    monkeypatch.setattr(os, "writev", at_most_7_bytes)
    parts = [b"header:", b"", np.arange(5, dtype=np.float32), bytearray(b"tail")]
    write_bytes_atomic(tmp_path / "out.bin", *parts)
    expected = b"".join(bytes(memoryview(p).cast("B")) for p in parts)
    assert (tmp_path / "out.bin").read_bytes() == expected


def test_hdf5_attributes_become_meta(tmp_path):
    path = tmp_path / "external.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("intensities", data=np.arange(10.0))
        handle.create_dataset("ppm", data=np.linspace(10, 0, 10))
        handle.attrs["instrument"] = "AV600"
        handle.attrs["sf"] = 600.13
        handle["intensities"].attrs["scans"] = 16
    spectrum = read_spectrum(path)
    assert spectrum.meta == {"instrument": "AV600", "sf": 600.13, "scans": 16}
    np.testing.assert_array_equal(spectrum.ppm, np.linspace(10, 0, 10))


def test_csv_without_header_still_reads(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("ppm,intensity\n1.0,5\n0.5,6\n")
    spectrum = read_spectrum(path)
    np.testing.assert_array_equal(spectrum.intensities, [5, 6])
    np.testing.assert_array_equal(spectrum.ppm, [1.0, 0.5])


# --------------------------------------------------------------------------- bad input


def _bruker_pdata(tmp_path, **kwargs) -> Path:
    return make_bruker(tmp_path, **kwargs) / "pdata" / "1"


def _truncate(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _bad_missing(tmp_path):
    return tmp_path / "nowhere.npz", tmp_path / "nowhere.npz", "no such file"


def _bad_unknown(tmp_path):
    path = tmp_path / "spec.xyz"
    path.write_text("1,2\n")
    return path, path, "unknown format"


def _bad_plain_folder(tmp_path):
    (tmp_path / "folder").mkdir()
    return tmp_path / "folder", tmp_path / "folder", "not a Bruker"


def _bad_empty(suffix):
    def make(tmp_path):
        path = tmp_path / f"empty{suffix}"
        path.write_bytes(b"")
        return path, path, "empty"

    return make


def _bad_empty_1r(tmp_path):
    pdata = _bruker_pdata(tmp_path)
    (pdata / "1r").write_bytes(b"")
    return pdata, pdata / "1r", "empty"


def _bad_truncated_1r(tmp_path):
    pdata = _bruker_pdata(tmp_path)
    _truncate(pdata / "1r", 4 * SI // 2)
    return pdata.parent.parent, pdata / "1r", "truncated"


def _bad_long_1r(tmp_path):
    pdata = _bruker_pdata(tmp_path)
    (pdata / "1r").write_bytes((pdata / "1r").read_bytes() * 2)
    return pdata, pdata / "1r", "SI=1024"


def _bad_procs_missing(tmp_path):
    pdata = _bruker_pdata(tmp_path)
    (pdata / "procs").unlink()
    return pdata, pdata / "procs", "missing"


def _bad_procs_garbage(tmp_path):
    pdata = _bruker_pdata(tmp_path)
    (pdata / "procs").write_text("this is not a parameter file\n")
    return pdata, pdata / "procs", "lacks SI"


def _bad_acqus_incomplete(tmp_path):
    pdata = _bruker_pdata(tmp_path)
    acqus = pdata.parent.parent / "acqus"
    acqus.write_text("##TITLE= Parameter file\n##$TD= 2048\n##END=\n")
    return pdata, acqus, "lacks SW_h"


def _bad_fid_only(tmp_path):
    """A fid and no processed spectrum: the fid is processed, and a fid of zeros refused."""
    experiment = make_bruker(tmp_path)
    for path in (experiment / "pdata" / "1").iterdir():
        path.unlink()
    (experiment / "fid").write_bytes(bytes(4 * 2 * SI))  # TD = 2 SI int32 values
    return experiment, experiment, "the FID is all zeros"


def _bad_fid_without_pdata(tmp_path):
    experiment = make_bruker(tmp_path)
    shutil.rmtree(experiment / "pdata")
    (experiment / "fid").write_bytes(bytes(1000))
    return experiment, experiment / "fid", "truncated"


def _bad_neither_fid_nor_pdata(tmp_path):
    experiment = make_bruker(tmp_path)
    shutil.rmtree(experiment / "pdata")
    (experiment / "fid").unlink()
    return experiment, experiment, "without a fid"


def _bad_bruker_2d(tmp_path):
    experiment = tmp_path / "hsqc" / "3"
    pdata = experiment / "pdata" / "1"
    pdata.mkdir(parents=True)
    ng.bruker.write_jcamp(procs_dict(), str(pdata / "procs"))
    ng.bruker.write_jcamp(procs_dict() | {"SI": 8, "XDIM": 8}, str(pdata / "proc2s"))
    ng.bruker.write_binary(str(pdata / "2rr"), {}, np.zeros(8 * SI, np.int32), big=False)
    return experiment, pdata, "multidimensional"


def _bad_bruker_nan(tmp_path):
    values = spectrum_values()
    values[10] = np.nan
    pdata = _bruker_pdata(tmp_path, values=values, dtypp=2)
    return pdata, pdata / "1r", "NaN"


def _bad_pipe_truncated(tmp_path):
    path = _truncate(make_pipe(tmp_path / "cut.ft"), 2048 + 4 * 100)
    return path, path, "truncated"


def _bad_pipe_garbage(tmp_path):
    path = tmp_path / "garbage.ft"
    path.write_bytes(bytes(range(256)) * 3)
    return path, path, "NMRPipe"


def _bad_pipe_2d(tmp_path):
    path = make_pipe(tmp_path / "plane.ft2.ft", ndim=2)
    return path, path, "2D"


def _bad_pipe_time_domain(tmp_path):
    path = make_pipe(tmp_path / "raw.fid", time=True)
    return path, path, "time-domain"


def _bad_pipe_nan(tmp_path):
    values = spectrum_values()
    values[3] = np.inf
    path = make_pipe(tmp_path / "inf.ft", values)
    return path, path, "NaN/Inf"


def _bad_jcamp_truncated(tmp_path):
    path = make_jcamp(tmp_path / "cut.jdx", spectrum_values(), first=5000.0, last=-3000.0)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:40]) + "\n")  # the transfer stopped midway
    return path, path, "truncated"


def _bad_jcamp_short(tmp_path):
    path = make_jcamp(tmp_path / "short.jdx", spectrum_values(), first=5000.0, last=-3000.0)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:40] + ["##END="]) + "\n")  # data lines lost
    return path, path, "NPOINTS"


def _bad_jcamp_no_data(tmp_path):
    path = tmp_path / "header.jdx"
    path.write_text("##TITLE= only a header\n##JCAMP-DX= 5.01\n##DATA TYPE= NMR SPECTRUM\n##END=\n")
    return path, path, "no JCAMP-DX spectrum data"


def _bad_hdf5_corrupt(tmp_path):
    path = tmp_path / "broken.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 40)
    return path, path, "HDF5"


def _bad_hdf5_2d(tmp_path):
    path = tmp_path / "matrix.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("intensities", data=np.zeros((4, 16)))
    return path, path, "1D"


def _bad_hdf5_nan(tmp_path):
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("intensities", data=np.array([1.0, np.nan, 2.0]))
    return path, path, "NaN"


def _bad_npy_2d(tmp_path):
    path = tmp_path / "matrix.npy"
    np.save(path, np.zeros((3, 8)))
    return path, path, "1D"


def _bad_npz_nan(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, intensities=np.array([0.0, np.nan]))
    return path, path, "NaN"


def _bad_csv_inf(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("1.0,2.0\n0.5,inf\n")
    return path, path, "NaN/Inf"


def _bad_npy_no_points(tmp_path):
    path = tmp_path / "none.npy"
    np.save(path, np.zeros(0, dtype=np.float32))
    return path, path, "empty"


def _bad_npz_which_array(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros(8), b=np.zeros(8))
    return path, path, "'intensities'"


def _bad_npz_ppm_length(tmp_path):
    path = tmp_path / "axis.npz"
    np.savez(path, intensities=np.zeros(8), ppm=np.linspace(10, 0, 7))
    return path, path, "ppm axis has 7 points, intensities 8"


def _bad_npz_ppm_nan(tmp_path):
    path = tmp_path / "axis_nan.npz"
    np.savez(path, intensities=np.zeros(4), ppm=np.array([3.0, np.nan, 1.0, 0.0]))
    return path, path, "ppm axis has NaN/Inf"


def _bad_npz_meta(tmp_path):
    path = tmp_path / "meta.npz"
    np.savez(path, intensities=np.zeros(4), meta=np.array("{not json"))
    return path, path, "not valid JSON"


def _bad_text(name: str, text: str, problem: str):
    """A maker of a text file ``name`` holding ``text``, refused for ``problem``."""

    def make(tmp_path):
        path = tmp_path / name
        path.write_text(text)
        return path, path, problem

    make.__name__ = f"_bad_{name.replace('.', '_')}"
    return make


def _bad_hdf5_which_dataset(tmp_path):
    import h5py

    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as handle:
        handle["a"], handle["b"] = np.zeros(8), np.zeros(8)
    return path, path, "'intensities' dataset"


BAD_INPUTS = [
    _bad_missing, _bad_unknown, _bad_plain_folder,
    _bad_empty(".npy"), _bad_empty(".npz"), _bad_empty(".csv"), _bad_empty(".h5"),
    _bad_empty(".ft"), _bad_empty(".jdx"), _bad_empty_1r,
    _bad_truncated_1r, _bad_long_1r, _bad_procs_missing, _bad_procs_garbage,
    _bad_acqus_incomplete, _bad_fid_only, _bad_fid_without_pdata, _bad_neither_fid_nor_pdata,
    _bad_bruker_2d, _bad_bruker_nan,
    _bad_pipe_truncated, _bad_pipe_garbage, _bad_pipe_2d, _bad_pipe_time_domain, _bad_pipe_nan,
    _bad_jcamp_truncated, _bad_jcamp_short, _bad_jcamp_no_data,
    _bad_hdf5_corrupt, _bad_hdf5_2d, _bad_hdf5_nan, _bad_npy_2d, _bad_npz_nan, _bad_csv_inf,
    _bad_npy_no_points, _bad_npz_which_array, _bad_npz_ppm_length, _bad_npz_ppm_nan,
    _bad_npz_meta, _bad_hdf5_which_dataset,
    _bad_text("three.csv", "1.0,2.0,3.0\n0.5,1.0,2.0\n", "two columns"),
    _bad_text("axis.csv", "nan,2.0\n0.5,1.0\n", "ppm column has NaN/Inf"),
]  # fmt: skip


@pytest.mark.filterwarnings("ignore::UserWarning")  # reader notes (ReaderNote)
@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda make: make.__name__.removeprefix("_bad_"))
def test_bad_input_names_the_file(tmp_path, make):
    path, named, problem = make(tmp_path)
    with pytest.raises(InputError, match=re.escape(problem)) as error:
        read_spectrum(path)
    assert_names(error, named)


def test_bad_writes(tmp_path):
    ppm = np.linspace(1, 0, 4)
    spectrum = Spectrum(np.ones(4, np.float32), ppm, {}, str(tmp_path / "a.npz"), "npz")
    with pytest.raises(InputError, match="3 intensities"):
        write_spectrum(spectrum, tmp_path / "b.npz", np.ones(3))
    with pytest.raises(InputError, match="NaN"):
        write_spectrum(spectrum, tmp_path / "b.npz", np.array([1, np.nan, 1, 1]))
    no_axis = Spectrum(np.ones(4, np.float32), None, {}, str(tmp_path / "a.npy"), "npy")
    with pytest.raises(InputError, match="no ppm axis"):
        write_spectrum(no_axis, tmp_path / "b.csv")
    with pytest.raises(InputError, match="Bruker source"):
        write_spectrum(spectrum, tmp_path / "experiment" / "pdata" / "2", None)
    with pytest.raises(InputError, match="spectral parameters"):
        write_spectrum(no_axis, tmp_path / "b.ft")
    with pytest.raises(InputError, match="output folder"):
        output_path_for(spectrum)
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_npy_npz_writes_are_atomic_with_ordinary_permissions(tmp_path, monkeypatch, suffix):
    import os

    source = Spectrum(np.arange(64, dtype=np.float32), ppm=np.linspace(10, 0, 64))
    written = write_spectrum(source, tmp_path / "out" / f"a{suffix}", source.intensities * 2)
    np.testing.assert_array_equal(read_spectrum(written).intensities, source.intensities * 2)
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(written).st_mode & 0o777 == 0o666 & ~umask  # as an ordinary new file

    def fail(fd, data):
        raise OSError("disk full")

    # the temporary exists when its write fails (one call for the buffers, or several)
    monkeypatch.setattr(os, "write", fail)
    monkeypatch.setattr(os, "writev", fail)
    with pytest.raises(OSError, match="disk full"):
        write_spectrum(source, written, source.intensities * 3)
    monkeypatch.undo()
    # the old output is untouched and no temporary is left beside it
    np.testing.assert_array_equal(read_spectrum(written).intensities, source.intensities * 2)
    assert [p.name for p in written.parent.iterdir()] == [written.name]


# ------------------------------------------------------------------ JCAMP-DX shift reference


def _topspin_jcamp(tmp_path, *extra, ascending=False) -> Path:
    """x in Hz from the right edge of the spectrum (0 at the low-frequency end), as TopSpin
    exports; the ppm axis must come from the header's shift reference."""
    width = SW * (SI - 1) / SI
    first, last = (0.0, width) if ascending else (width, 0.0)
    return make_jcamp(
        tmp_path / "topspin.dx", spectrum_values(), first=first, last=last, extra=extra
    )


TOPSPIN_PPM = OFFSET - np.arange(SI) * SW / SI / SF  # TopSpin's axis: OFFSET, then SW_p / SI


@pytest.mark.parametrize(
    "extra",
    [
        [f"##.SHIFT REFERENCE= INTERNAL, CDCl3, 1, {OFFSET!r}"],
        [f"##.SHIFT REFERENCE= INTERNAL, TMS, 201, {float(TOPSPIN_PPM[200])!r}", "##$OFFSET= 99"],
        [f"##$OFFSET= {OFFSET!r}"],  # a Bruker export without the shift reference
    ],
    ids=["shift reference", "shift reference wins over $OFFSET", "$OFFSET"],
)
def test_jcamp_axis_counted_from_the_right_edge_is_placed_by_the_header(tmp_path, extra):
    spectrum = read_spectrum(_topspin_jcamp(tmp_path, *extra))
    np.testing.assert_allclose(spectrum.ppm, TOPSPIN_PPM, rtol=0, atol=1e-9)
    assert spectrum.notes == []


def test_jcamp_ascending_axis_puts_offset_at_the_highest_frequency(tmp_path):
    spectrum = read_spectrum(_topspin_jcamp(tmp_path, f"##$OFFSET= {OFFSET!r}", ascending=True))
    np.testing.assert_allclose(spectrum.ppm, TOPSPIN_PPM[::-1], rtol=0, atol=1e-9)


def test_jcamp_shift_reference_not_understood_is_a_note(tmp_path):
    path = _topspin_jcamp(tmp_path, "##.SHIFT REFERENCE= INTERNAL, CDCl3")
    with pytest.warns(ReaderNote):
        spectrum = read_spectrum(path)
    assert len(spectrum.notes) == 1 and "SHIFT REFERENCE" in spectrum.notes[0]
    assert spectrum.notes[0].startswith(f"{path}: ")
    width = SW * (SI - 1) / SI
    np.testing.assert_allclose(spectrum.ppm, np.linspace(width, 0, SI) / SF, atol=1e-9)


def test_jcamp_ppm_x_values_that_disagree_with_the_shift_reference_give_a_note(tmp_path):
    y = spectrum_values()
    extra = ["##.SHIFT REFERENCE= INTERNAL, TMS, 1, 11.0"]
    path = make_jcamp(tmp_path / "ppm.jdx", y, first=10.0, last=-0.5, units="PPM", extra=extra)
    with pytest.warns(ReaderNote, match="differ by 1 ppm"):
        spectrum = read_spectrum(path)
    np.testing.assert_allclose(spectrum.ppm, np.linspace(11.0, 0.5, SI), atol=1e-9)


# --------------------------------------------------------------------------- reader notes


def _complex_file(tmp_path: Path, suffix: str) -> Path:
    values = (np.arange(8) + 1j).astype(np.complex64)
    path = tmp_path / f"complex{suffix}"
    if suffix == ".npy":
        np.save(path, values)
    elif suffix == ".npz":
        np.savez(path, intensities=values)
    else:
        with h5py.File(path, "w") as handle:
            handle["intensities"] = values
    return path


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5"])
def test_complex_array_gives_its_real_part_and_a_one_line_note(tmp_path, suffix):
    path = _complex_file(tmp_path, suffix)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spectrum = read_spectrum(path)
    np.testing.assert_array_equal(spectrum.intensities, np.arange(8, dtype=np.float32))
    assert len(spectrum.notes) == 1
    note = spectrum.notes[0]
    assert note.startswith(f"{path}: complex values; the real part is used") and "\n" not in note
    # the same note reaches Python as a ReaderNote, issued where read_spectrum was called
    assert [(item.category, str(item.message)) for item in caught] == [(ReaderNote, note)]
    assert caught[0].filename == __file__


def test_nmrglue_warnings_become_notes_naming_the_file(tmp_path):
    """A line nmrglue cannot split is a note; an empty value (legal, and in every TopSpin
    export) is not; neither is a UserWarning from inside nmrladder."""
    extra = ["##$RELAX=", "##NO EQUALS SIGN HERE"]
    path = make_jcamp(tmp_path / "odd.jdx", spectrum_values(), first=5e3, last=-3e3, extra=extra)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spectrum = read_spectrum(path)
    assert len(spectrum.notes) == 1, spectrum.notes
    assert spectrum.notes[0].startswith(f"{path}: Bad JCAMP-DX line")
    assert "NO EQUALS SIGN HERE" in spectrum.notes[0] and "\n" not in spectrum.notes[0]
    assert [item.category for item in caught] == [ReaderNote]


# ------------------------------------------------------------------ parameter files that end


def _read_within(path: Path, seconds: int = 20):
    """read_spectrum(path), failing the test if it has not ended after ``seconds`` (nmrglue's
    parser loops in Python code, which the alarm's exception interrupts)."""

    def stop(signum, frame):
        raise TimeoutError(f"reading {path} did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return read_spectrum(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _cut_acqus_inside_a_string(experiment: Path) -> tuple[Path, str]:
    """The issue's case: a real acqus (CRLF) cut off inside its first <...> string."""
    acqus = experiment / "acqus"
    data = acqus.read_bytes()
    acqus.write_bytes(data[: data.index(b"##$AUNM= <") + len(b"##$AUNM= <au")])
    return acqus, "cut off inside the <...> string"


def _cut_procs_between_parameters(experiment: Path) -> tuple[Path, str]:
    procs = experiment / "pdata" / "1" / "procs"
    data = procs.read_bytes()
    procs.write_bytes(data[: data.index(b"##$SI=")])
    return procs, "no closing ##END= line"


def _short_array_in_acqus(experiment: Path) -> tuple[Path, str]:
    acqus = experiment / "acqus"
    data = acqus.read_bytes()
    end = data.index(b"##END=")
    acqus.write_bytes(data[:end] + b"##$CUTARRAY= (0..63)\r\n1 2 3\r\n" + data[end:])
    return acqus, "runs on past the end of the file"


def _unclosed_string_in_procs(experiment: Path) -> tuple[Path, str]:
    procs = experiment / "pdata" / "1" / "procs"
    data = procs.read_bytes()
    at = data.index(b"##$SI=")
    procs.write_bytes(data[:at] + b"##$BROKEN= <no end\r\n" + data[at:])
    return procs, "is not closed before the next parameter"


@pytest.mark.parametrize(
    "corrupt",
    [
        _cut_acqus_inside_a_string,
        _cut_procs_between_parameters,
        _short_array_in_acqus,
        _unclosed_string_in_procs,
    ],
    ids=lambda corrupt: corrupt.__name__.strip("_"),
)
def test_incomplete_parameter_file_ends_in_an_error_naming_it(tmp_path, corrupt):
    experiment = real_bruker(tmp_path)
    named, problem = corrupt(experiment)
    with pytest.raises(InputError, match=re.escape(problem)) as error:
        _read_within(experiment)
    assert_names(error, named)
    assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- procs line endings


def test_new_procno_keeps_the_line_endings_of_the_sources_procs(tmp_path):
    for experiment, newline in (
        (real_bruker(tmp_path / "windows"), b"\r\n"),  # TopSpin 2.1 on Windows
        (make_bruker(tmp_path / "linux"), b"\n"),
    ):
        procs = (experiment / "pdata" / "1" / "procs").read_bytes()
        assert procs.count(b"\n") == procs.count(newline)  # the source is consistent
        source = read_spectrum(experiment)
        out = write_spectrum(source, output_path_for(source, in_place=True))
        for name in ("procs", "proc"):
            written = (out / name).read_bytes()
            assert written.count(b"\n") > 10 and written.count(b"\n") == written.count(newline)
            assert written.count(b"\r") == newline.count(b"\r") * written.count(b"\n")
        back = read_spectrum(out)
        assert back.meta["procs"] == ng.bruker.read_jcamp(str(out / "procs"))
        for key in ("SI", "SF", "SW_p", "OFFSET", "BYTORDP", "DTYPP"):
            assert back.meta["procs"][key] == source.meta["procs"][key]
        np.testing.assert_array_equal(back.ppm, source.ppm)


# --------------------------------------------------------------------------- import direction


READER_MODULES = {
    "io", "formats", "jcamp", "param_files", "spectrum", "fid", "bruker_fid", "vendors",
}  # fmt: skip


def _runtime_imports() -> dict[str, set[str]]:
    """runtime module -> the runtime modules it imports anywhere (function bodies too)."""
    root = Path(formats.__file__).parent
    names = {path.stem for path in root.glob("*.py")}
    graph = {}
    for name in names:
        imported = set()
        for node in ast.walk(ast.parse((root / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "nmrladder.runtime":
                modules = [f"nmrladder.runtime.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            prefix = "nmrladder.runtime."
            imported |= {module.split(".")[2] for module in modules if module.startswith(prefix)}
        graph[name] = imported & names
    return graph


def test_no_import_cycle_through_the_readers():
    """formats imported a private helper of io, which imports formats (lazily) back."""
    graph = _runtime_imports()
    assert "formats" in graph["io"]  # the analysis sees the lazy import

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for name in graph[start] - seen:
            seen.add(name)
            if name == goal or reaches(name, goal, seen):
                return True
        return False

    cycles = sorted(name for name in READER_MODULES if reaches(name, name, set()))
    assert not cycles, f"import cycles through {cycles}"
