"""The self-check on the command line and in the batch job (docs/self-check.md): --strength,
--strength auto's removal report in the manifest and the table, --confidence's band beside
each output (the API's band for the same input), the resume plan, and the --plot band."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from nmrladder.cli import main
from nmrladder.runtime import Denoiser
from nmrladder.runtime.confidence import DEFAULT_COPIES
from nmrladder.runtime.pipeline import DenoiseJob, FileResult, JobSummary, discover_inputs
from nmrladder.runtime.strength import STRENGTH_STEP
from nmrladder.train.simulate import simulate_ladders

LENGTH = 2048


@pytest.fixture(scope="module")
def spectra() -> np.ndarray:
    """Four simulated 1H spectra of 2048 points (float32, as every reader gives them)."""
    return simulate_ladders(4, 2, LENGTH, 2.0, 10.0, seed=31).x[:, 0].astype(np.float32)


@pytest.fixture(scope="module")
def shipped() -> Denoiser:
    return Denoiser.default()


def _denoise(*args) -> int:
    return main(["denoise", *map(str, args), "--no-progress"])


def _manifest(out: Path) -> dict[str, dict]:
    """The manifest's last entry per input name."""
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    return {Path(e["input"]).name: e for e in entries}


def _write_inputs(folder: Path, spectra: np.ndarray, ppm: np.ndarray) -> list[Path]:
    """The spectra as .npy, .npy, .npz (with a ppm axis) and HDF5 (with one)."""
    folder.mkdir()
    paths = [folder / "a.npy", folder / "b.npy", folder / "c.npz", folder / "d.h5"]
    np.save(paths[0], spectra[0])
    np.save(paths[1], spectra[1])
    np.savez(paths[2], intensities=spectra[2], ppm=ppm)
    with h5py.File(paths[3], "w") as handle:
        handle.create_dataset("intensities", data=spectra[3])
        handle.create_dataset("ppm", data=ppm)
    return paths


def test_strength_zero_gives_every_input_back_bit_for_bit(spectra, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, row in enumerate(spectra):
        np.save(inputs / f"s{i}.npy", row)
    out = tmp_path / "out"
    assert _denoise(inputs, "--out", out, "--strength", "0") == 0
    entries = _manifest(out)
    for i, row in enumerate(spectra):
        got = np.load(out / f"s{i}_denoised.npy")
        assert got.dtype == row.dtype and got.tobytes() == row.tobytes()
        entry = entries[f"s{i}.npy"]
        assert (entry["strength"], entry["strength_step"]) == ("0.0", STRENGTH_STEP)
        assert entry["removal"]["strength"] == 0.0
        assert entry["confidence"] == "" and entry["confidence_copies"] == 0


def test_auto_reports_what_was_removed_in_the_manifest_and_the_table(
    spectra, shipped, tmp_path, monkeypatch, capsys
):
    # A line the network's output lost must be flagged where it was; pure noise must not be.
    # The network is wrapped so that its output lacks a known line (in its input's units,
    # noise sigmas: runtime/scaling.py) at CUT, in the inputs that hold that line.
    cut, height, width = 1300, 14.0, 3.0
    t = np.arange(LENGTH)
    line = (height / (1.0 + ((t - cut) / width) ** 2)).astype(np.float32)
    run_batch = Denoiser.run_batch

    def losing_a_line(self, z):
        out = run_batch(self, z).copy()
        holding = z[:, cut] > height / 2
        out[holding, :LENGTH] -= line
        return out

    monkeypatch.setattr(Denoiser, "run_batch", losing_a_line)
    noise = np.random.default_rng(5).standard_normal(LENGTH).astype(np.float32)
    ppm = np.linspace(11.0, -1.0, LENGTH)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        sigma = 1.4826 * np.median(np.abs(np.diff(spectra[i]))) / np.sqrt(2.0)
        np.savez(inputs / f"cut{i}.npz", intensities=spectra[i] + sigma * line, ppm=ppm)
    np.save(inputs / "noise.npy", noise)
    out = tmp_path / "out"
    assert _denoise(inputs, "--out", out, "--strength", "auto") == 0
    table = capsys.readouterr().out
    entries = _manifest(out)

    # The manifest holds the core's own reports for these inputs (the API's oracle).
    # (two rows: a lone row would skip run_batch, and with it the lost line)
    names = ("cut0.npz", "cut1.npz")
    x = np.stack([np.load(inputs / name)["intensities"] for name in names])
    y, reports = shipped.with_strength("auto").denoise(x, return_report=True, ppm=ppm)
    for i, name in enumerate(names):
        assert entries[name]["removal"] == reports[i].as_dict()
        assert entries[name]["strength"] == "auto"
        assert entries[name]["removal"]["flagged"]
        assert abs(entries[name]["removal"]["structure_index"] - cut) <= 2
        assert entries[name]["removal"]["structure_ppm"] == pytest.approx(ppm[cut], abs=0.02)
        with np.load(out / name.replace(".", "_denoised.")) as archive:
            np.testing.assert_array_equal(archive["intensities"], y[i])
    assert not entries["noise.npy"]["removal"]["flagged"]
    assert entries["noise.npy"]["removal"]["structure_ppm"] is None

    header = table.splitlines()[0].split()
    assert header[7:12] == ["strength", "removed", "\N{GREEK SMALL LETTER SIGMA}", "ppm",
                            "warning"]
    rows = {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}
    for name in ("cut0.npz", "cut1.npz"):
        removal = entries[name]["removal"]
        cells = rows[name].split()
        assert cells[5:8] == ["auto", f"{removal['strength']:.2f}",
                              f"{removal['structure_sigma']:.1f}"]
        assert cells[8] == f"{removal['structure_ppm']:.3f}"
        assert "FLAG" in rows[name]
    assert "FLAG" not in rows["noise.npy"]
    assert "; 2 flagged" in table.splitlines()[-1]


def test_the_table_marks_flagged_outputs_and_leaves_failures_blank():
    flagged = FileResult("a.npy", "out/a.npy", strength="0.3",
                         removal={"strength": 0.3, "structure_sigma": 7.25, "structure_ppm": 4.5,
                                  "flagged": True})
    failed = FileResult("b.npy", status="failed", message="b.npy: the file is empty")
    lines = JobSummary(results=[flagged, failed]).table().splitlines()
    assert lines[2].split()[5:] == ["0.30", "7.2", "4.500", "FLAG"]
    assert lines[3].split()[5:8] == ["-", "-", "-"] and "FLAG" not in lines[3]


def test_confidence_is_the_apis_band_beside_every_output(spectra, shipped, tmp_path):
    ppm = np.linspace(11.0, -1.0, LENGTH)
    paths = _write_inputs(tmp_path / "in", spectra, ppm)
    out = tmp_path / "out"
    assert _denoise(tmp_path / "in", "--out", out, "--strength", "auto", "--confidence") == 0
    y, sigma = shipped.with_strength("auto").denoise(
        spectra, return_confidence=True, copies=DEFAULT_COPIES
    )
    assert np.all(sigma > 0)
    np.testing.assert_array_equal(np.load(out / "a_denoised.npy"), y[0])
    np.testing.assert_array_equal(np.load(out / "a_denoised_confidence.npy"), sigma[0])
    np.testing.assert_array_equal(np.load(out / "b_denoised_confidence.npy"), sigma[1])
    with np.load(out / "c_denoised.npz") as archive:
        np.testing.assert_array_equal(archive["intensities"], y[2])
        np.testing.assert_array_equal(archive["confidence"], sigma[2])
        np.testing.assert_array_equal(archive["ppm"], ppm)
    with h5py.File(out / "d_denoised.h5", "r") as handle:
        np.testing.assert_array_equal(handle["intensities"][()], y[3])
        np.testing.assert_array_equal(handle["confidence"][()], sigma[3])
    entries = _manifest(out)
    assert entries["a.npy"]["confidence"] == str(out / "a_denoised_confidence.npy")
    assert entries["c.npz"]["confidence"] == str(out / "c_denoised.npz")
    assert {e["confidence_copies"] for e in entries.values()} == {DEFAULT_COPIES}
    assert not list(out.glob(".*"))  # no temporary left

    # Another K, another band, the API's again; several streams and file threads batch the
    # copies with the inputs in another order, not to another value.
    den = Denoiser.default(batch_size=2, threads=2, streams=2, strength=0.4)
    summary = DenoiseJob(den, tmp_path / "k3", progress=False, file_threads=2,
                         confidence=3).run(paths)
    assert [r.status for r in summary.results] == ["ok"] * 4
    assert summary.stage_seconds["infer"] > 0
    _, sigma3 = shipped.with_strength(0.4).denoise(spectra, return_confidence=True, copies=3)
    np.testing.assert_array_equal(np.load(tmp_path / "k3" / "b_denoised_confidence.npy"),
                                  sigma3[1])
    with np.load(tmp_path / "k3" / "c_denoised.npz") as archive:
        np.testing.assert_array_equal(archive["confidence"], sigma3[2])
    assert not np.array_equal(sigma3[1], sigma[1])


def test_sidecars_are_never_read_back_as_inputs(spectra, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        np.save(inputs / f"s{i}.npy", spectra[i])
    assert _denoise(inputs, "--out", inputs, "--in-place", "--confidence", "1") == 0
    assert (inputs / "s0_denoised_confidence.npy").is_file()
    assert sorted(p.name for p in discover_inputs([inputs], inputs)) == ["s0.npy", "s1.npy"]


def test_options_that_cannot_work_are_one_line_errors(spectra, tmp_path, capsys):
    np.save(tmp_path / "a.npy", spectra[0])
    command = [tmp_path / "a.npy", "--out", tmp_path / "out"]
    assert _denoise(*command, "--strength", "0.3", "--residual-lb", "0.5") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--strength 0.3" in err[0] and "--residual-lb 0.5" in err[0]
    assert "--residual-lb 0.5 is --strength 0.5" in err[0]
    for extra in (["--series"], ["--engine", "ray"]):
        assert _denoise(*command, "--confidence", *extra) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "--confidence" in err[0]
    for bad in (["--strength", "1.5"], ["--strength", "strong"], ["--confidence", "0"]):
        with pytest.raises(SystemExit) as stop:
            _denoise(*command, *bad)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert bad[0] in err and bad[1] in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_a_rerun_with_another_strength_redoes_the_file(spectra, shipped, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", spectra[0])
    out = tmp_path / "out"

    def rerun(*options) -> tuple[int, np.ndarray]:
        """(manifest lines after a resumed run with ``options``: one more when redone, the
        output)."""
        assert _denoise(inputs, "--out", out, "--resume", *options) == 0
        lines = (out / "manifest.jsonl").read_text().splitlines()
        return len(lines), np.load(out / "a_denoised.npy")

    # (the API's oracle on two rows: the job runs one spectrum as a batch row, not alone)
    assert _denoise(inputs, "--out", out, "--strength", "0") == 0
    count, y = rerun("--strength", "0")  # done: skipped
    assert count == 1 and y.tobytes() == spectra[0].tobytes()
    count, y = rerun("--strength", "1")
    assert count == 2
    np.testing.assert_array_equal(y, shipped.with_strength(1.0).denoise(spectra[:2])[0])
    count, y = rerun()  # no strength: the network's output again, made another way
    assert count == 3
    count, y = rerun("--strength", "0.5")
    assert count == 4
    np.testing.assert_array_equal(y, shipped.with_residual(0.5).denoise(spectra[:2])[0])
    assert rerun("--strength", "0.5")[0] == 4
    assert rerun("--strength", "0.5", "--confidence")[0] == 5  # no band yet: redone
    assert (out / "a_denoised_confidence.npy").is_file()
    assert rerun("--strength", "0.5")[0] == 5  # the band is extra: still done
    assert rerun("--strength", "0.5", "--confidence", "3")[0] == 6  # another K
    assert rerun("--strength", "auto", "--confidence", "3")[0] == 7
    assert _manifest(out)["a.npy"]["strength"] == "auto"
    (out / "a_denoised_confidence.npy").unlink()  # a band gone is a band to make again
    assert rerun("--strength", "auto", "--confidence", "3")[0] == 8
    # Written without a band, an output loses the sidecar an earlier run left beside it.
    assert rerun("--strength", "0.2")[0] == 9
    assert not (out / "a_denoised_confidence.npy").exists()


def test_plot_draws_the_band_and_marks_a_flag(spectra, tmp_path, monkeypatch):
    import matplotlib.collections

    import nmrladder.runtime.plots as plots

    figures = []
    finish = plots._finish

    def kept(fig, *args):
        figures.append([(ax, list(ax.collections), list(ax.lines)) for ax in fig.axes])
        return finish(fig, *args)

    monkeypatch.setattr(plots, "_finish", kept)
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", spectra[0])
    out = tmp_path / "out"
    assert _denoise(inputs, "--out", out, "--plot", "--confidence", "--strength", "auto") == 0
    assert (out / "plots" / "a.npy.png").stat().st_size > 10_000
    (ax, collections, lines), _ = figures[0]
    y = np.load(out / "a_denoised.npy")
    sigma = np.load(out / "a_denoised_confidence.npy")
    bands = [c for c in collections if isinstance(c, matplotlib.collections.PolyCollection)]
    assert len(bands) == 1
    bounds = bands[0].get_paths()[0].vertices[:, 1]
    assert bounds.min() == pytest.approx(float(np.min(y - 2 * sigma)), rel=1e-5)
    assert bounds.max() == pytest.approx(float(np.max(y + 2 * sigma)), rel=1e-5)

    # plot_denoised's flag: a vertical line at the structure's ppm on both panels.
    figures.clear()
    ppm = np.linspace(11.0, -1.0, LENGTH)
    plots.plot_denoised(spectra[0], y, tmp_path / "f.png", ppm=ppm, band=sigma,
                        flag=(700, "FLAG: removed a line-shaped structure"))
    marks = [[line for line in panel[2] if line.get_xdata()[0] == ppm[700]]
             for panel in figures[0]]
    assert [len(m) for m in marks] == [1, 1]
    assert marks[0][0].get_label().startswith("FLAG")


def test_series_records_the_strength_and_redoes_on_another(tmp_path):
    ladder = simulate_ladders(1, 3, LENGTH, 2.0, 10.0, seed=41).x[0].astype(np.float32)
    np.save(tmp_path / "lad.npy", ladder)
    out = tmp_path / "out"
    assert _denoise(tmp_path / "lad.npy", "--series", "--out", out, "--strength", "0.3") == 0
    expected = Denoiser.default(strength=0.3, streams=1).denoise_series(ladder).fused
    with np.load(out / "lad_fused.npz") as archive:
        np.testing.assert_array_equal(archive["intensities"], expected)
    assert json.loads((out / "lad_series.json").read_text())["strength"] == "0.3"
    assert _manifest(out)["lad.npy"]["strength"] == "0.3"
    assert _denoise(tmp_path / "lad.npy", "--series", "--out", out, "--strength", "0.3",
                    "--resume") == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 1  # done: skipped
    assert _denoise(tmp_path / "lad.npy", "--series", "--out", out, "--strength", "auto",
                    "--resume") == 0
    assert _manifest(out)["lad.npy"]["strength"] == "auto"
    assert json.loads((out / "lad_series.json").read_text())["strength"] == "auto"


@pytest.mark.timeout(120)  # a stall (copies queued after the streams' end marks) fails here
def test_copies_with_little_room_and_a_failing_batch_do_not_stall(spectra, shipped, tmp_path):
    # Many inputs of two padded lengths, few in flight, several streams and file threads: the
    # copies join the inputs' batches and every output is written once, with the API's band.
    from nmrladder.runtime.errors import NmrLadderError

    multiple = shipped.info.length_multiple
    rows = [spectra[i % 4][: LENGTH - multiple * (i % 2)] for i in range(16)]
    paths = []
    for i, row in enumerate(rows):
        paths.append(tmp_path / f"s{i:02d}.npy")
        np.save(paths[-1], row)
    den = Denoiser.default(batch_size=3, threads=2, streams=2, strength="auto")
    job = DenoiseJob(den, tmp_path / "out", progress=False, file_threads=2, queue_size=4,
                     confidence=2)
    summary = job.run(paths)
    assert [r.status for r in summary.results] == ["ok"] * 16
    for length in (LENGTH, LENGTH - multiple):
        picked = [i for i, row in enumerate(rows) if row.size == length][:2]
        _, sigma = shipped.with_strength("auto").denoise(np.stack([rows[i] for i in picked]),
                                                         return_confidence=True)
        for i, band in zip(picked, sigma, strict=True):
            got = np.load(tmp_path / "out" / f"s{i:02d}_denoised_confidence.npy")
            np.testing.assert_array_equal(got, band)

    # A batch the network refuses (the project's error) fails its rows' inputs, by the
    # error, whether it held inputs or copies; the others finish.
    calls, run = [], den.session.run

    def refusing(z):
        calls.append(len(z))
        if len(calls) == 4:
            raise NmrLadderError("the device refused this batch")
        return run(z)

    den.session.run = refusing
    summary = DenoiseJob(den, tmp_path / "again", progress=False, confidence=2).run(paths)
    failed = summary.failed
    assert 1 <= len(failed) <= 3 and len(summary.results) == 16
    assert all("the device refused this batch" in r.message for r in failed)
    assert sum(r.status == "ok" for r in summary.results) == 16 - len(failed)
