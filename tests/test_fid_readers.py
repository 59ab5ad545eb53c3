"""The FID and vendor readers on small real files (tests/data, README.md there): Spinsolve,
Varian/Agilent, a TopSpin JCAMP-DX FID and a Bruker experiment with a fid only. Each is
checked against what does not come from the reader: the vendor's own processed spectrum
(line positions), the parameter files read line by line here (ppm axes), the vendor's
integral ranges and known shifts. At the end, every file of /work/shared/realdata (when
present) either reads or is refused on one line."""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from nmrfiles import (
    jcamp_header_value,
    real_bruker_fid_only,
    real_jcamp,
    real_jcamp_fid,
    real_spinsolve,
    real_varian,
)

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.io import (
    detect_format,
    output_path_for,
    processed_path_for,
    read_spectrum,
    write_spectrum,
)
from nmrladder.runtime.vendors import read_varian_fids

REALDATA = Path("/work/shared/realdata")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # reader notes (ReaderNote)


def lines_at(spectrum, level: float) -> np.ndarray:
    """The ppm of the local maxima above ``level`` of the tallest point."""
    y = spectrum.intensities
    inner = (y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:]) & (y[1:-1] > level * y.max())
    return spectrum.ppm[np.flatnonzero(inner) + 1]


def assert_lines_match(found: np.ndarray, vendor: np.ndarray, tolerance: float) -> None:
    """Every vendor line has a line of ours within ``tolerance`` ppm."""
    for shift in vendor:
        nearest = found[np.argmin(np.abs(found - shift))]
        assert abs(nearest - shift) <= tolerance, (shift, nearest)


def step_of(spectrum) -> float:
    return abs(spectrum.ppm[1] - spectrum.ppm[0])


def text_parameters(path: Path, pattern: str) -> dict[str, str]:
    """``name = value`` (Spinsolve) lines of a parameter file, read here by a regex."""
    found = re.findall(pattern, path.read_text(errors="replace"), re.MULTILINE)
    return {name: value.strip().strip('"') for name, value in found}


def procpar_value(path: Path, name: str) -> float:
    """A Varian procpar value: the line after '<name> ...' holds '1 <value>'."""
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines):
        if line.split(" ")[0] == name and len(line.split()) == 11:
            return float(lines[number + 1].split()[1])
    raise KeyError(name)


def correlation_on_axis(spectrum, vendor) -> float:
    """Pearson correlation of our spectrum, interpolated onto the vendor's ppm points, with
    the vendor's."""
    ours = np.interp(vendor.ppm[::-1], spectrum.ppm[::-1], spectrum.intensities[::-1])[::-1]
    return float(np.corrcoef(ours, vendor.intensities)[0, 1])


# --------------------------------------------------------------------------- Spinsolve


def test_spinsolve_folder_reads_its_processed_spectrum_with_the_stored_axis(tmp_path):
    folder = real_spinsolve(tmp_path)
    assert detect_format(folder) == "spinsolve" == detect_format(folder / "spectrum.1d")
    spectrum = read_spectrum(folder)
    assert spectrum.source == str(folder / "spectrum.1d") and spectrum.format == "spinsolve"
    assert spectrum.notes == [] and not spectrum.meta.get("processed_from_fid")
    # the stored x values (float32 after the 32-byte header) are the axis, ascending
    data = (folder / "spectrum.1d").read_bytes()
    n = int.from_bytes(data[16:20], "little")
    stored = np.frombuffer(data[32 : 32 + 4 * n], "<f4")
    np.testing.assert_allclose(spectrum.ppm, stored, atol=1e-5)
    real = np.frombuffer(data[32 + 4 * n :], "<f4")[::2]
    np.testing.assert_array_equal(spectrum.intensities, real)


def test_spinsolve_fid_is_processed_and_its_lines_are_the_vendors(tmp_path):
    folder = real_spinsolve(tmp_path)
    vendor = read_spectrum(folder / "spectrum.1d")
    spectrum = read_spectrum(folder / "data.1d")
    assert spectrum.meta["processed_from_fid"] and spectrum.format == "spinsolve"
    assert [n for n in spectrum.notes if "processed from the FID" in n] and all(
        n.startswith(str(folder / "data.1d")) and "\n" not in n for n in spectrum.notes
    )
    # DMSO 2.7, glycine 3.5, the residual water 4.88 ppm: within two points of ours
    assert_lines_match(lines_at(spectrum, 0.01), lines_at(vendor, 0.02), 2 * step_of(spectrum))
    # the axis from acqu.par, read here: lowestFrequency (Hz) is the right edge
    acqu = text_parameters(folder / "acqu.par", r"^(\w+)\s*=\s*(.*)$")
    sw, b1 = float(acqu["bandwidth"]) * 1e3, float(acqu["b1Freq"])
    low = float(acqu["lowestFrequency"])
    size = spectrum.ppm.size
    assert spectrum.ppm[0] == pytest.approx((low + sw) / b1, abs=1e-9)
    np.testing.assert_allclose(np.diff(spectrum.ppm), -sw / b1 / size, rtol=1e-9)


def test_spinsolve_outputs_are_npz_named_after_the_acquisition(tmp_path):
    folder = real_spinsolve(tmp_path / "in")
    spectrum = read_spectrum(folder / "data.1d")
    out = tmp_path / "out"
    target = output_path_for(spectrum, out)
    processed = processed_path_for(spectrum, out)
    assert target == out / f"{folder.name}_data_denoised.npz"
    assert processed == out / f"{folder.name}_data_processed.npz"
    assert processed_path_for(read_spectrum(folder), out) is None
    write_spectrum(spectrum, processed)
    back = read_spectrum(write_spectrum(spectrum, target, spectrum.intensities * 0.5))
    np.testing.assert_array_equal(back.ppm, spectrum.ppm)
    np.testing.assert_array_equal(back.intensities, spectrum.intensities * 0.5)
    assert back.meta["processed_from_fid"] is True
    np.testing.assert_array_equal(read_spectrum(processed).intensities, spectrum.intensities)
    with pytest.raises(InputError, match="no Spinsolve writer"):
        write_spectrum(spectrum, out / "copy")


def test_spinsolve_bad_files_are_named_errors(tmp_path):
    folder = real_spinsolve(tmp_path)
    cut = tmp_path / "cut.1d"
    cut.write_bytes((folder / "spectrum.1d").read_bytes()[:5000])
    with pytest.raises(InputError, match=f"{re.escape(str(cut))}: truncated"):
        read_spectrum(cut)
    other = tmp_path / "other.1d"
    other.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="not a Spinsolve"):
        read_spectrum(other)
    (folder / "acqu.par").unlink()
    with pytest.raises(InputError, match="acqu.par: missing"):
        read_spectrum(folder / "data.1d")


# --------------------------------------------------------------------------- Varian


def test_varian_folder_and_its_fid_read_the_same_processed_spectrum(tmp_path):
    folder = real_varian(tmp_path)
    assert detect_format(folder) == "varian" == detect_format(folder / "fid")
    spectrum = read_spectrum(folder)
    np.testing.assert_array_equal(read_spectrum(folder / "fid").intensities, spectrum.intensities)
    assert spectrum.format == "varian" and spectrum.meta["processed_from_fid"]
    assert spectrum.meta["fid_processing"]["lb_hz"] == 1.0  # 31P
    assert spectrum.meta["fid_processing"]["positive_fraction"] > 0.9


def test_varian_ppm_axis_follows_procpars_reference_line(tmp_path):
    """VnmrJ's referencing, read from procpar here: the line rfl Hz from the right edge is at
    rfp Hz, ppm = Hz / reffrq; so point i of N is at (sw (1 - i / N) - rfl + rfp) / reffrq."""
    folder = real_varian(tmp_path)
    spectrum = read_spectrum(folder)
    sw, rfl, rfp, reffrq = (
        procpar_value(folder / "procpar", name) for name in ("sw", "rfl", "rfp", "reffrq")
    )
    size = spectrum.ppm.size
    expected = (sw * (1 - np.arange(size) / size) - rfl + rfp) / reffrq
    np.testing.assert_allclose(spectrum.ppm, expected, atol=0.01 * sw / reffrq / size)


def test_varian_output_is_npz_beside_the_folder_name(tmp_path):
    folder = real_varian(tmp_path / "in")
    spectrum = read_spectrum(folder)
    assert output_path_for(spectrum, tmp_path) == tmp_path / "test2_denoised.npz"
    assert processed_path_for(spectrum, tmp_path) == tmp_path / "test2_processed.npz"
    with pytest.raises(InputError, match="Varian"):
        write_spectrum(spectrum, tmp_path / "copy")


def test_varian_arrayed_fid_is_refused_as_one_spectrum_and_read_as_rows(tmp_path):
    """Two blocks in one fid (an arrayed experiment): read_spectrum refuses on one line, the
    rows come back whole from read_varian_fids."""
    folder = real_varian(tmp_path)
    data = (folder / "fid").read_bytes()
    head = list(struct.unpack(">6lhhl", data[:32]))
    head[0] = 2
    (folder / "fid").write_bytes(struct.pack(">6lhhl", *head) + data[32:] + data[32:])
    with pytest.raises(InputError, match="arrayed experiment of 2 FIDs") as caught:
        read_spectrum(folder)
    assert "\n" not in str(caught.value)
    fids, params, _ = read_varian_fids(folder)
    assert fids.shape == (2, 4096) and np.array_equal(fids[0], fids[1])
    assert params.nucleus == "31P" and params.sw_hz == procpar_value(folder / "procpar", "sw")


@pytest.mark.parametrize("cut", [100, 1000, -8])
def test_varian_truncated_fid_is_a_named_error(tmp_path, cut):
    folder = real_varian(tmp_path)
    data = (folder / "fid").read_bytes()
    (folder / "fid").write_bytes(data[:cut])
    with pytest.raises(InputError, match=re.escape(str(folder / "fid"))):
        read_spectrum(folder)


# --------------------------------------------------------------------------- JCAMP-DX FID


def test_topspin_jcamp_fid_lines_are_those_of_its_processed_spectrum(tmp_path):
    """13C of estragole: the FID (TopSpin export, digital filter still in it: DSPFVS 10,
    GRPDLY -1, so nmrglue's table) against the spectrum TopSpin processed from it."""
    path = real_jcamp_fid(tmp_path)
    spectrum = read_spectrum(path)
    vendor = read_spectrum(real_jcamp(tmp_path, "13c_estragole"))
    assert spectrum.format == "jcamp" and spectrum.meta["processed_from_fid"]
    assert spectrum.meta["fid_processing"]["digital_filter"] == (8.0, 10, -1.0)
    assert_lines_match(lines_at(spectrum, 0.1), lines_at(vendor, 0.1), 2 * step_of(spectrum))
    # the first point where TopSpin's processed spectrum has it (its .SHIFT REFERENCE gives
    # point 1; the FID's own header refers to another processing's window)
    reference = jcamp_header_value(tmp_path / "13c_estragole.dx", ".SHIFT REFERENCE").split(",")
    assert int(reference[2]) == 1
    assert spectrum.ppm[0] == pytest.approx(float(reference[3]), abs=0.01 * step_of(spectrum))
    # digital filter removed, phased: the shape of TopSpin's spectrum (a filter left in
    # the FID leaves lines the automatic phase cannot make absorptive)
    assert correlation_on_axis(spectrum, vendor) > 0.85
    assert output_path_for(spectrum, tmp_path) == tmp_path / "13c.fid_denoised.npz"


def test_jcamp_fid_bad_inputs_are_named_errors(tmp_path):
    path = real_jcamp_fid(tmp_path)
    text = path.read_text(errors="replace")
    path.write_text(text.replace("##$AQ_mod= 1", "##$AQ_mod= 2"))
    with pytest.raises(InputError, match="not a simultaneous"):
        read_spectrum(path)
    cut = text[: text.index("##PAGE= N=2")] + "##END NTUPLES= NMR FID\n##END=\n"
    path.write_text(cut)
    with pytest.raises(InputError, match="real and imaginary"):
        read_spectrum(path)


# --------------------------------------------------------------------------- Bruker fid only


def test_bruker_fid_only_axis_is_topspins_and_lines_are_in_the_vendors_ranges(tmp_path):
    """2,3-diphosphoglycerate in D2O (400 MHz, one scan, DSPFVS 12): the axis TopSpin's procs
    gives for SI points; HDO at 4.79 ppm; the compound's lines inside the integral ranges
    the vendor's software stored (pdata/1/intrng)."""
    experiment = real_bruker_fid_only(tmp_path)
    spectrum = read_spectrum(experiment)
    assert spectrum.format == "bruker" and spectrum.meta["processed_from_fid"]
    assert spectrum.meta["fid_processing"]["digital_filter"] == (32.0, 12, 0.0)
    procs = experiment / "pdata" / "1" / "procs"
    offset = float(re.search(r"##\$OFFSET= (\S+)", procs.read_text()).group(1))
    sw_p = float(re.search(r"##\$SW_p= (\S+)", procs.read_text()).group(1))
    sf = float(re.search(r"##\$SF= (\S+)", procs.read_text()).group(1))
    size = spectrum.ppm.size
    assert spectrum.ppm[0] == pytest.approx(offset, abs=0.05 * sw_p / sf / size)
    np.testing.assert_allclose(np.diff(spectrum.ppm), -sw_p / sf / size, rtol=1e-6)
    found = lines_at(spectrum, 0.005)
    hdo = found[np.argmin(np.abs(found - 4.79))]
    assert hdo == pytest.approx(4.79, abs=0.03)
    ranges = [
        tuple(map(float, line.split()))
        for line in (experiment / "pdata" / "1" / "intrng").read_text().splitlines()[1:]
    ]
    compound = found[(found > 3.5) & (found < 4.7)]  # the lines beside HDO
    assert compound.size >= 2
    assert all(any(low <= x <= high for high, low in ranges) for x in compound)
    assert all(any(low <= x <= high for x in compound) for high, low in ranges)
    # digital filter removed: less than two turns of first-order phase left (a group delay
    # of g points left in the FID takes g turns; nmrglue's table gives 72 here) and
    # positive lines
    assert abs(spectrum.meta["fid_processing"]["p1"]) < 720
    assert spectrum.meta["fid_processing"]["positive_fraction"] > 0.95


def test_bruker_fid_file_and_empty_procno_mean_the_experiment(tmp_path):
    experiment = real_bruker_fid_only(tmp_path)
    whole = read_spectrum(experiment)
    assert detect_format(experiment / "fid") == "bruker"
    for path in (experiment / "fid", experiment / "pdata" / "1"):
        np.testing.assert_array_equal(read_spectrum(path).intensities, whole.intensities)


def test_bruker_fid_only_writes_the_processed_fid_and_the_denoised_copy_as_procnos(tmp_path):
    experiment = real_bruker_fid_only(tmp_path / "in")
    spectrum = read_spectrum(experiment)
    out = tmp_path / "out"
    processed, denoised = processed_path_for(spectrum, out), output_path_for(spectrum, out)
    assert processed == out / "dpg" / "1" / "pdata" / "2"
    assert denoised == out / "dpg" / "1" / "pdata" / "3"
    write_spectrum(spectrum, processed)
    write_spectrum(spectrum, denoised, spectrum.intensities * 0.5)
    for target, factor in ((processed, 1.0), (denoised, 0.5)):
        back = read_spectrum(target)
        np.testing.assert_allclose(back.ppm, spectrum.ppm, atol=1e-9)
        expected = spectrum.intensities * factor
        np.testing.assert_allclose(back.intensities, expected, atol=1e-6 * expected.max())
        title = (target / "title").read_text()
        assert "processed from the fid" in title and ("denoised" in title) == (factor != 1.0)
    assert (out / "dpg" / "1" / "acqus").is_file() and not (out / "dpg" / "1" / "fid").exists()
    in_place = output_path_for(spectrum, in_place=True)
    assert in_place == experiment / "pdata" / "3"


def test_bruker_fid_bad_inputs_are_named_errors(tmp_path):
    experiment = real_bruker_fid_only(tmp_path)
    fid = experiment / "fid"
    fid.write_bytes(fid.read_bytes()[:4000])
    with pytest.raises(InputError, match=f"{re.escape(str(fid))}: truncated"):
        read_spectrum(experiment)
    acqus = experiment / "acqus"
    acqus.write_text(acqus.read_text().replace("##$AQ_mod= 3", "##$AQ_mod= 2"))
    with pytest.raises(InputError, match="AQ_mod 2"):
        read_spectrum(experiment)


# --------------------------------------------------------------------------- realdata


def walk(root: Path):
    for folder, names, files in os.walk(root):
        names.sort()
        for name in [*names, *sorted(files)]:
            yield Path(folder) / name


@pytest.mark.skipif(not REALDATA.is_dir(), reason="needs /work/shared/realdata")
def test_every_realdata_file_reads_or_is_refused_on_one_line():
    """Every file and folder of the real-data collection goes through read_spectrum: a read
    (intensities and notes checked), or an InputError on one line naming the path. The
    Spinsolve, Varian (single), Bruker and JCAMP-DX sets read."""
    read, refused, failures = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in walk(REALDATA):
            try:
                spectrum = read_spectrum(path)
            except InputError as err:
                message = str(err)
                named = Path(message.split(": ")[0])
                related = named == path or named in path.parents or path in named.parents
                if "\n" in message or not related:
                    failures.append(f"{path}: refusal not one line naming it: {message!r}")
                refused.append(path)
                continue
            except Exception as err:  # a reader bug: not a named refusal
                failures.append(f"{path}: {type(err).__name__}: {err}")
                continue
            if spectrum.ppm is None or not np.all(np.isfinite(spectrum.intensities)):
                failures.append(f"{path}: read without a ppm axis or with non-finite values")
            if any("\n" in note for note in spectrum.notes):
                failures.append(f"{path}: a note on several lines: {spectrum.notes}")
            read.append(path)
    assert not failures, "\n".join(failures)
    names = {str(p.relative_to(REALDATA)) for p in read}
    spinsolve = [p for p in read if "spinsolve" in str(p) and p.suffix in ("", ".1d", ".dx")]
    assert len(spinsolve) == 12  # 3 folders, each folder and its three data files
    assert "31p_single_1000scans_varian_nmrpy/test2.fid" in names
    assert "1h_400mhz_dpg_bruker_nmrpy/1" in names  # fid only
    every_dx = [p for p in walk(REALDATA) if p.suffix == ".dx"]
    assert sum(p.suffix == ".dx" for p in read) == len(every_dx)
    arrayed = REALDATA / "31p_array_pgi_reaction_varian_nmrpy" / "test1.fid"
    assert arrayed in refused


@pytest.mark.skipif(not REALDATA.is_dir(), reason="needs /work/shared/realdata")
def test_realdata_two_readers_one_signal_and_the_vendors_axes():
    """Spinsolve's data.1d and nmr_fid.dx hold the same FID: two readers, one spectrum. The
    stored spectrum.1d axis is nmrglue's axis from acqu.par (reversed; Spinsolve's points
    sit one point from nmrglue's DFT convention)."""
    import nmrglue as ng

    folder = REALDATA / "1h_benchtop_80mhz_spinsolve_nmrpy" / "1D_exp_1_20240725-103717"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binary = read_spectrum(folder / "data.1d")
        jcamp = read_spectrum(folder / "nmr_fid.dx")
        stored = read_spectrum(folder / "spectrum.1d")
        dic, data = ng.spinsolve.read(str(folder), specfile="spectrum.1d")
    top = binary.intensities.max()
    np.testing.assert_allclose(jcamp.intensities, binary.intensities, atol=1e-4 * top)
    # ppm = Hz / $SF (JCAMP-DX) or Hz / b1Freq (nmrglue's acqu.par axis): 5e-6 apart
    np.testing.assert_allclose(jcamp.ppm, binary.ppm, atol=0.2 * step_of(binary))
    nmrglue_axis = ng.spinsolve.make_uc(dic, data).ppm_scale()[::-1]
    assert np.max(np.abs(nmrglue_axis - stored.ppm)) <= 1.01 * step_of(stored)
