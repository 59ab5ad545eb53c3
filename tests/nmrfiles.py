"""NMR files for tests: written by nmrglue with TopSpin-like parameters, and the real ones
of tests/data (README.md there) unpacked into a test's folder."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import nmrglue as ng
import numpy as np

DATA = Path(__file__).parent / "data"
# The real JCAMP-DX spectra of tests/data, by name.
REAL_JCAMP = {
    "13c_estragole": "jcamp_13c_estragole.dx.gz",  # XYDATA
    "19f_trifluoroethoxyaniline": "jcamp_19f_trifluoroethoxyaniline_real_page.dx.gz",  # NTUPLES
}

SI = 1024
SF = 400.13  # MHz, the ppm reference frequency (BF1 + SR; SR = 0 here)
O1 = 1880.611  # Hz, carrier offset from BF1 (4.7 ppm)
SW = 8012.82  # Hz
OFFSET = (O1 + SW / 2) / SF  # ppm of the first point, as TopSpin writes it


def spectrum_values(n: int = SI, seed: int = 0) -> np.ndarray:
    """A few Lorentzians on noise, peak height ~1e6 (TopSpin-like magnitudes)."""
    rng = np.random.default_rng(seed)
    x = np.arange(n)
    lines = sum(h / (1 + ((x - c) / w) ** 2) for c, w, h in [(200, 3, 1e6), (600, 5, 4e5)])
    return lines + rng.normal(scale=300.0, size=n)


def jcamp_header(**extra) -> dict:
    return {"_coreheader": ["##TITLE= Parameter file", "##JCAMPDX= 5.0"], "_comments": []} | extra


def acqus_dict() -> dict:
    return jcamp_header(
        SW_h=SW, SFO1=SF + O1 * 1e-6, BF1=SF, O1=O1, NUC1="1H", AQ_mod=3, TD=2 * SI,
        BYTORDA=0, DTYPA=0, SW=SW / (SF + O1 * 1e-6),
    )  # fmt: skip


def procs_dict(bytordp: int = 0, dtypp: int = 0) -> dict:
    return jcamp_header(
        SF=SF, SW_p=SW, OFFSET=OFFSET, SI=SI, XDIM=SI, BYTORDP=bytordp, NC_proc=-3,
        DTYPP=dtypp, AXNUC="1H", FTSIZE=SI, STSI=0, STSR=0, MC2=0, YMAX_p=0, YMIN_p=0,
    )  # fmt: skip


def make_bruker(
    root: Path, values=None, *, name="sample", expno=10, procno=1, bytordp=0, dtypp=0,
    acqus=True,
) -> Path:  # fmt: skip
    """A TopSpin-like <root>/<name>/<expno> experiment with pdata/<procno>/{1r,procs,proc,title}."""
    experiment = root / name / str(expno)
    experiment.mkdir(parents=True)
    dic = {"acqus": acqus_dict(), "procs": procs_dict(bytordp, dtypp)}
    if acqus:
        ng.bruker.write(str(experiment), dic, np.zeros(2 * SI, complex), write_prog=False)
    values = spectrum_values() if values is None else values
    ng.bruker.write_pdata(
        str(experiment), dic, values, scale_data=True, write_procs=True, pdata_folder=procno,
        big=bytordp == 1, isfloat=dtypp == 2,
    )  # fmt: skip
    (experiment / "pdata" / str(procno) / "title").write_text("made-up sample\n")
    return experiment


def _unpack(name: str, root: Path) -> None:
    with tarfile.open(DATA / name) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(root, filter="data")
        else:  # Python before 3.10.12: the archive is ours
            archive.extractall(root)


def real_bruker(root: Path) -> Path:
    """The real Bruker experiment of tests/data (TopSpin 2.1, 1H, CRLF parameter files)
    unpacked under ``root``; returns the experiment folder root/coffee/99999."""
    _unpack("bruker_1h_coffee_pulsecal.tar.gz", root)
    return root / "coffee" / "99999"


def real_bruker_fid_only(root: Path) -> Path:
    """The real Bruker 1H experiment with a fid and no processed spectrum (acqus, fid,
    pdata/1/procs and the vendor's integral ranges pdata/1/intrng); returns root/dpg/1."""
    _unpack("bruker_1h_dpg_fid_only.tar.gz", root)
    return root / "dpg" / "1"


def real_spinsolve(root: Path) -> Path:
    """The real Spinsolve acquisition (acqu.par, data.1d cut to 2048 points, spectrum.1d cut
    to 2.5-5.0 ppm); returns its folder."""
    _unpack("spinsolve_1h_80mhz_glycine.tar.gz", root)
    return root / "1D_exp_1_20240725-103717"


def real_varian(root: Path) -> Path:
    """The real Varian 31P experiment (fid cut to 4096 complex points, procpar, text);
    returns root/test2.fid."""
    _unpack("varian_31p_3pga_pi_tep.tar.gz", root)
    return root / "test2.fid"


def real_jcamp_fid(root: Path) -> Path:
    """The real TopSpin JCAMP-DX FID of estragole's 13C (cut to 5559 points), as
    root/13c.fid.dx; its processed spectrum is REAL_JCAMP["13c_estragole"]."""
    path = root / "13c.fid.dx"
    path.write_bytes(gzip.decompress((DATA / "jcamp_13c_estragole_fid_cut.dx.gz").read_bytes()))
    return path


def real_jcamp(root: Path, name: str) -> Path:
    """The real JCAMP-DX file ``name`` (a key of REAL_JCAMP) unpacked as root/<name>.dx."""
    path = root / f"{name}.dx"
    path.write_bytes(gzip.decompress((DATA / REAL_JCAMP[name]).read_bytes()))
    return path


def jcamp_header_value(path: Path, label: str) -> str:
    """The text after ``##<label>=`` in a JCAMP-DX file, read line by line (not by nmrglue)."""
    prefix = f"##{label}="
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].split("$$")[0].strip()
    raise KeyError(f"{path} has no {prefix} line")
