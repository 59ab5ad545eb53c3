"""`nmrladder denoise` where a new user trips: an output folder inside the inputs, Ctrl-C,
inputs of one name in several folders, folders without spectra, bad options, the manifest's
times, series output names, and warnings on the command line."""

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from nmrfiles import SI, make_bruker

from nmrladder.cli import main
from nmrladder.runtime import Denoiser, InputError
from nmrladder.runtime.io import read_spectrum
from nmrladder.runtime.pipeline import DenoiseJob, discover_inputs, run_series


def _spectrum(seed: int, length: int = 2048) -> np.ndarray:
    """Lorentzian lines on a noisy baseline (the network needs no truth here)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    centres, widths, heights = (
        rng.uniform(0, length, 5),
        rng.uniform(2, 8, 5),
        rng.uniform(5, 50, 5),
    )
    lines = sum(
        h / (1 + ((t - c) / w) ** 2) for c, w, h in zip(centres, widths, heights, strict=True)
    )
    return (lines + rng.standard_normal(length)).astype(np.float32)


def _denoise(model, *args) -> int:
    return main(["denoise", *map(str, args), "--model", str(model), "--no-progress"])


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- an output folder inside (or equal to) an input folder ------------------------------------
@pytest.mark.parametrize("where", ["inside", "equal", "in-place"])
def test_outputs_are_never_taken_as_inputs_on_a_rerun(where, tiny_model_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        np.save(inputs / f"s{i}.npy", _spectrum(i))
    experiment = make_bruker(inputs, _spectrum(9, SI).astype(np.float64) * 1e4)
    out = {"inside": inputs / "denoised", "equal": inputs, "in-place": tmp_path / "out"}[where]
    model = tiny_model_dir / "model.onnx"
    in_place = ["--in-place"] if where == "in-place" else []
    for options in ([], [], ["--resume"]):  # a run, a rerun, a resumed rerun
        assert _denoise(model, inputs, "--out", out, *in_place, *options) == 0
        recorded = {e["input"] for e in _manifest(out)}
        assert recorded == {str(inputs / f"s{i}.npy") for i in range(3)} | {str(experiment)}
    assert not list(tmp_path.rglob("*_denoised_denoised*"))
    assert sorted(p.name for p in tmp_path.rglob("*_denoised.npy")) == [
        f"s{i}_denoised.npy" for i in range(3)
    ]
    # The Bruker experiment got a new procno per run that redid it (never one overwritten),
    # and its copy was never read back as an experiment of its own.
    assert len([p for p in tmp_path.rglob("pdata/*") if p.name != "1"]) == 2
    if in_place:
        return  # the outputs beside the inputs are listed in OUT's manifest only
    # Another run's output folder inside the inputs is skipped too, and so are the outputs
    # an input folder's own manifest lists.
    again = inputs / "second"
    assert _denoise(model, inputs, "--out", again) == 0
    assert len(_manifest(again)) == 4


# -- Ctrl-C ------------------------------------------------------------------------------------
def _interrupted_run(model, inputs, out, count):
    """Start `nmrladder denoise` on ``count`` inputs, SIGINT it once its first output is out;
    (process, stderr), or None when it finished before the signal could be sent."""
    for i in range(count):
        np.save(inputs / f"s{i:04d}.npy", _spectrum(i, 16384))
    command = [sys.executable, "-m", "nmrladder", "denoise", str(inputs), "--out", str(out)]
    command += ["--model", str(model), "--no-progress", "--batch-size", "1"]
    # As from a terminal: SIGINT at its default in the child, whatever this test process
    # inherited (an earlier test's library may ignore it, and children inherit an ignore).
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and manifest.stat().st_size > 0:
            break  # the first output is out
        time.sleep(0.01)
    if process.poll() is not None:
        process.communicate()
        return None  # too fast for this machine: the caller retries with more inputs
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process, err.decode()


def test_ctrl_c_exits_130_with_a_resumable_manifest(tiny_model_dir, tmp_path):
    model = tiny_model_dir / "model.onnx"
    for attempt, count in enumerate((160, 640, 2560)):
        inputs, out = tmp_path / f"in{attempt}", tmp_path / f"out{attempt}"
        inputs.mkdir()
        run = _interrupted_run(model, inputs, out, count)
        if run is not None:
            break
    else:
        pytest.fail("every run finished before it could be interrupted")
    process, err = run
    assert process.returncode == 130, err
    line = _one_error_line(err)  # no traceback, no "terminate called" from a native thread
    assert line.startswith("nmrladder denoise: interrupted") and "--resume" in line, err
    entries = _manifest(out)  # every line whole
    assert 1 <= len(entries) < count, "the run was not interrupted mid-way"
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    made = {e["output"]: Path(e["output"]).stat().st_mtime_ns for e in entries}
    assert len(made) == len(entries)

    assert _denoise(model, inputs, "--out", out, "--resume", "--batch-size", "1") == 0
    entries_after = _manifest(out)
    assert len(entries_after) == count
    assert {e["input"] for e in entries_after} == {str(p) for p in inputs.iterdir()}
    for output, mtime in made.items():
        assert Path(output).stat().st_mtime_ns == mtime, f"{output} was made again"
    assert len(list(out.glob("*_denoised.npy"))) == count


# -- inputs of one name in several folders ---------------------------------------------------
def test_inputs_of_one_name_keep_their_own_outputs_and_plots(tiny_model_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    for folder, seed in (("a", 1), ("b", 2)):
        (inputs / folder).mkdir(parents=True)
        np.save(inputs / folder / "x.npy", _spectrum(seed))
    (inputs / "b" / "deeper").mkdir()
    np.savez(inputs / "b" / "deeper" / "x.npz", intensities=_spectrum(3))  # also x_denoised.npz
    jcamp_stand_in = inputs / "a" / "x.npz"  # JCAMP-DX would give x_denoised.npz as well
    np.savez(jcamp_stand_in, intensities=_spectrum(4))
    for dataset, seed in (("one", 5), ("two", 6)):  # Bruker experiments both called 10
        make_bruker(inputs / dataset, _spectrum(seed, SI).astype(np.float64) * 1e4)
    out = tmp_path / "out"
    model = tiny_model_dir / "model.onnx"
    capsys.readouterr()
    assert _denoise(model, inputs, "--out", out, "--plot") == 0
    table = capsys.readouterr().out
    entries = _manifest(out)
    assert len(entries) == 6
    outputs = [e["output"] for e in entries]
    assert len(set(outputs)) == 6, outputs
    den = Denoiser(model)
    for entry in entries:
        source = Path(entry["input"])
        if source.suffix in (".npy", ".npz"):
            expected = den.denoise(read_spectrum(source).intensities)
            got = read_spectrum(entry["output"]).intensities
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
        relative = source.relative_to(inputs)
        assert str(relative) in table, table  # the path below the inputs' common folder
    plots = sorted((out / "plots").glob("*.png"))
    assert len(plots) == 6, plots


def test_series_of_one_name_keep_their_own_outputs(tiny_model_dir, tmp_path):
    den = Denoiser(tiny_model_dir)
    ladders = []
    for folder, seed in (("a", 10), ("b", 20)):
        ladder = tmp_path / folder / "lad"
        ladder.mkdir(parents=True)
        for k in range(3):
            np.save(ladder / f"r{k}.npy", _spectrum(seed + k) * (k + 1))
        ladders.append(ladder)
    out = tmp_path / "out"
    summary = run_series(den, ladders, out, progress=False)
    assert [r.status for r in summary.results] == ["ok", "ok"]
    assert len({r.output for r in summary.results}) == 2
    assert len(list(out.glob("*_series.json"))) == 2
    for result, ladder in zip(summary.results, ladders, strict=True):
        rungs = np.stack([np.load(p) for p in sorted(ladder.glob("*.npy"))])
        np.testing.assert_array_equal(np.load(result.output), den.denoise_series(rungs).fused)


# -- discovery -------------------------------------------------------------------------------
def test_a_folder_without_spectra_is_an_error(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    for hidden in ("__MACOSX", ".git", ".cache/deep"):
        (empty / hidden).mkdir(parents=True)
        np.save(empty / hidden / "x.npy", _spectrum(0))
    np.save(empty / "._x.npy", _spectrum(0))  # macOS resource fork, not a spectrum
    (empty / "notes.txt").write_text("no spectrum here")
    capsys.readouterr()
    assert _denoise(tiny_model_dir, empty, "--out", tmp_path / "out") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(empty) in line and "no spectra" in line, line
    with pytest.raises(InputError, match="no spectra"):
        list(discover_inputs([empty]))
    np.save(empty / "real.npy", _spectrum(1))
    assert list(discover_inputs([empty])) == [empty / "real.npy"]


# -- bad options -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, expected",
    [
        (["--out", "{file}"], "not a folder"),
        (["--out", "{out}", "--backend", "torch"], ".pt2"),
        (["--out", "{out}", "--backend", "torch", "--model", "{onnx}"], ".pt2"),
        (["--out", "{out}", "--threads", "-1"], "--threads"),
        (["--out", "{out}", "--threads", "0"], "--threads"),
        (["--out", "{out}", "--batch-size", "0"], "--batch-size"),
        (["--out", "{out}", "--streams", "-2"], "--streams"),
    ],
)
def test_bad_options_are_one_line_errors(options, expected, tiny_model_dir, tmp_path, capfd):
    source = tmp_path / "x.npy"
    np.save(source, _spectrum(0))
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    names = {"file": a_file, "out": tmp_path / "out", "onnx": tiny_model_dir / "model.onnx"}
    argv = ["denoise", str(source), "--no-progress", *(o.format(**names) for o in options)]
    capfd.readouterr()
    assert main(argv) == 2
    line = _one_error_line(capfd.readouterr().err)
    assert line.startswith("nmrladder denoise: error: ") and expected in line, line
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_is_a_file_is_refused_by_the_library(tiny_model_dir, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    np.save(tmp_path / "x.npy", _spectrum(0))
    den = Denoiser(tiny_model_dir)
    with pytest.raises(InputError, match="a_file"):
        DenoiseJob(den, a_file, progress=False).run([tmp_path / "x.npy"])
    with pytest.raises(InputError, match="a_file"):
        run_series(den, [tmp_path / "x.npy"], a_file, progress=False)


# -- the manifest's times and series output names ------------------------------------------
def test_the_manifest_records_each_outputs_time(tiny_model_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        np.save(inputs / f"s{i}.npy", _spectrum(i))
    ladder = tmp_path / "ladder.npy"
    np.save(ladder, np.stack([_spectrum(7) * k for k in (1, 2, 3)]))
    den = Denoiser(tiny_model_dir)
    started = time.perf_counter()
    DenoiseJob(den, tmp_path / "out", progress=False).run(sorted(inputs.iterdir()))
    run_series(den, [ladder], tmp_path / "series", progress=False)
    wall = time.perf_counter() - started
    for out in (tmp_path / "out", tmp_path / "series"):
        for entry in _manifest(out):
            assert 0.0 < entry["seconds"] < wall, entry


def test_series_outputs_are_named_after_the_ladder(tiny_model_dir, tmp_path):
    den = Denoiser(tiny_model_dir)
    folder = tmp_path / "lad"
    folder.mkdir()
    for k in range(3):
        np.save(folder / f"r{k}.npy", _spectrum(30 + k) * (k + 1))
    array = tmp_path / "arr.npy"
    np.save(array, np.stack([_spectrum(40) * k for k in (1, 2, 3)]))
    out = tmp_path / "out"
    summary = run_series(den, [folder, array], out, plot=True, progress=False)
    assert [r.status for r in summary.results] == ["ok", "ok"]
    names = sorted(p.name for p in out.iterdir() if p.is_file() and p.suffix != ".jsonl")
    assert names == [
        "arr_fused.npz",
        "arr_series.json",
        "lad_fused.npy",
        "lad_series.json",
    ]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["arr.npy.png", "lad.png"]


# -- warnings on the command line -----------------------------------------------------------
def test_reader_warnings_are_one_plain_line(tiny_model_dir, tmp_path, capfd):
    source = tmp_path / "complex.npy"
    x = _spectrum(0)
    np.save(source, x + 1j * _spectrum(1))
    capfd.readouterr()
    assert _denoise(tiny_model_dir, source, "--out", tmp_path / "out") == 0
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "complex" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"warning: {source}: "), err
    assert ".py:" not in err and "Warning" not in err, err


def test_warnings_of_a_verb_are_one_line_and_only_in_the_cli(monkeypatch, capsys):
    from nmrladder.runtime import denoise_cli

    def warns(args):
        warnings.warn("first line\n  second line", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(denoise_cli, "run", warns)
    before = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["denoise", "x.npy", "--out", "o"]) == 0
    assert capsys.readouterr().err == "warning: first line second line\n"
    assert warnings.showwarning is before  # the library's callers keep Python's own
    with pytest.warns(UserWarning, match="outside"):
        warnings.warn("outside the command line", UserWarning, stacklevel=1)
