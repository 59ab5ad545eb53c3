"""`nmrladder denoise` and the batch pipeline: formats round trip, bad inputs, resume."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nmrglue as ng
import numpy as np
import pytest
from nmrfiles import SI, make_bruker

from nmrladder.cli import main
from nmrladder.runtime import BackendUnavailable, Denoiser, InputError, ModelError
from nmrladder.runtime.io import read_spectrum
from nmrladder.runtime.pipeline import (
    STAGES,
    DenoiseJob,
    ScaledInput,
    _Batcher,
    discover_inputs,
    estimated_snr,
    read_ladder,
    read_scaled,
    run_series,
    split_read_time,
)
from nmrladder.train.simulate import simulate_ladders


@pytest.fixture(scope="module")
def spectra():
    return simulate_ladders(6, 3, 4096, 2.0, 8.0, seed=21)


def test_denoise_folder_round_trip(tiny_model_dir, spectra, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", spectra.x[0, 0])
    ppm = np.linspace(11.0, -1.0, spectra.length)
    np.savetxt(inputs / "b.csv", np.c_[ppm, spectra.x[1, 0]], delimiter=",")
    np.savez(inputs / "c.npz", intensities=spectra.x[2, 0], ppm=ppm)
    out = tmp_path / "out"
    assert (
        main(
            [
                "denoise",
                str(inputs),
                "--out",
                str(out),
                "--model",
                str(tiny_model_dir / "model.onnx"),
                "--no-progress",
                "--plot",
            ]
        )
        == 0
    )
    den = Denoiser(tiny_model_dir / "model.onnx")
    expected = den.denoise(spectra.x[:3, 0])
    got_a = np.load(out / "a_denoised.npy")
    np.testing.assert_allclose(got_a, expected[0], rtol=0, atol=1e-5 * np.abs(expected[0]).max())
    got_b = read_spectrum(out / "b_denoised.csv")
    np.testing.assert_allclose(got_b.ppm, ppm)
    np.testing.assert_allclose(
        got_b.intensities, expected[1], rtol=1e-5, atol=1e-5 * np.abs(expected[1]).max()
    )
    np.testing.assert_allclose(read_spectrum(out / "c_denoised.npz").ppm, ppm)
    assert (out / "plots" / "a.npy.png").stat().st_size > 1000
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(e["input"] for e in entries) == sorted(
        str(inputs / n) for n in ("a.npy", "b.csv", "c.npz")
    )


def test_bruker_output_is_a_new_procno(tiny_model_dir, spectra, tmp_path):
    experiment = make_bruker(tmp_path, spectra.x[3, 0, :SI].astype(np.float64) * 1e5)
    out = tmp_path / "out"
    assert (
        main(
            [
                "denoise",
                str(experiment),
                "--out",
                str(out),
                "--model",
                str(tiny_model_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    new_pdata = next(out.rglob("pdata/2"))
    dic, data = ng.bruker.read_pdata(str(new_pdata), scale_data=True)
    source = read_spectrum(experiment)
    expected = Denoiser(tiny_model_dir).denoise(source.intensities)
    assert data.shape == expected.shape
    np.testing.assert_allclose(data, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(read_spectrum(new_pdata).ppm, source.ppm)


def test_bad_inputs_are_named_and_others_still_processed(tiny_model_dir, spectra, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = inputs / "good.npy"
    np.save(good, spectra.x[0, 0])
    np.save(inputs / "nan.npy", np.where(np.arange(4096) == 7, np.nan, spectra.x[1, 0]))
    (inputs / "empty.npy").write_bytes(b"")
    np.save(inputs / "truncated.npy", spectra.x[2, 0])
    raw = (inputs / "truncated.npy").read_bytes()
    (inputs / "truncated.npy").write_bytes(raw[: len(raw) // 2])
    np.save(inputs / "short.npy", spectra.x[3, 0, :100])  # below the model's minimum length
    np.save(inputs / "constant.npy", np.full(4096, 2.5, dtype=np.float32))
    (inputs / "notes.xyz").write_text("not a spectrum")
    paths = [*sorted(inputs.glob("*.npy")), inputs / "notes.xyz"]
    job = DenoiseJob(Denoiser(tiny_model_dir), tmp_path / "out", progress=False)
    summary = job.run(paths)
    by_name = {os.path.basename(r.input): r for r in summary.results}
    assert by_name["good.npy"].status == "ok"
    expected_messages = {
        "nan.npy": "NaN/Inf",
        "empty.npy": "empty",
        "truncated.npy": "truncated|not a readable",
        "short.npy": "outside this model's range",
        "constant.npy": "zero noise|constant",
        "notes.xyz": "unknown format",
    }
    for name, pattern in expected_messages.items():
        result = by_name[name]
        assert result.status == "failed"
        assert name in result.message
        assert any(p in result.message for p in pattern.split("|")), result.message
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["good_denoised.npy", "manifest.jsonl"]  # nothing partial, nothing else
    assert list(summary.stage_seconds) == list(STAGES)
    assert all(seconds > 0 for seconds in summary.stage_seconds.values())


@pytest.mark.parametrize("every", [1, 4])
@pytest.mark.parametrize("smoothing", [1, 9])
def test_estimated_snr_against_the_known_noise(every, smoothing):
    """Baseline level and noise of a spectrum with a known offset, drift, lines and noise:
    the full estimate and the output's (every 4th point, OUTPUT_SNR_EVERY) both find them;
    smoothing makes the noise correlated, as a denoised output's is."""
    rng = np.random.default_rng(5)
    n = 16384
    t = np.arange(n)
    white = rng.standard_normal(n + smoothing - 1)
    noise = np.convolve(white, np.ones(smoothing) / smoothing, mode="valid")
    sigma = 0.02
    noise = noise / np.std(noise) * sigma
    # the tallest line narrow and off the subsample's points: its height is the whole one's
    shapes = [(3001, 6.0, 1.0), (8000, 6.0, 0.5), (12002, 1.5, 2.0)]
    lines = sum(h / (1 + ((t - c) / w) ** 2) for c, w, h in shapes)
    drift = 0.01 * np.sin(t / n * np.pi)  # less than a sigma over the 64-point trend windows
    spectrum = (3.0 + drift + lines + noise).astype(np.float32)
    snr, found_sigma = estimated_snr(spectrum, every)
    assert found_sigma == pytest.approx(sigma, rel=0.06)
    height = float(spectrum.max()) - 3.0
    assert snr == pytest.approx(height / sigma, rel=0.08)


def test_reading_and_scaling_times_are_told_apart():
    item = ScaledInput(0, Path("a.npy"), started=10.0)
    assert split_read_time(item, 12.0) == (2.0, 0.0)  # never read: all of it was reading
    item.read_seconds = 0.5
    assert split_read_time(item, 12.0) == (0.5, 1.5)


def test_cli_exit_code_and_missing_model_or_backend(tiny_model_dir, spectra, tmp_path, capsys):
    np.save(tmp_path / "ok.npy", spectra.x[0, 0])
    np.save(tmp_path / "bad.npy", np.full(4096, np.inf))
    code = main(
        [
            "denoise",
            str(tmp_path / "ok.npy"),
            str(tmp_path / "bad.npy"),
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(tiny_model_dir),
            "--no-progress",
        ]
    )
    assert code == 1
    assert "bad.npy" in capsys.readouterr().err
    with pytest.raises(ModelError, match="no such model"):
        Denoiser(tmp_path / "nope.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    assert (
        main(
            [
                "denoise",
                str(tmp_path / "ok.npy"),
                "--out",
                str(tmp_path / "o2"),
                "--model",
                str(corrupt),
            ]
        )
        == 2
    )
    assert "corrupt.onnx" in capsys.readouterr().err
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="pip install"):
            Denoiser(tiny_model_dir, backend="trt")
    with pytest.raises(InputError, match="backend"):
        Denoiser(tiny_model_dir, backend="cuda-magic")


def test_series_mode(tiny_model_dir, spectra, tmp_path):
    ladder_dir = tmp_path / "ladder"
    ladder_dir.mkdir()
    for k in range(3):
        np.save(ladder_dir / f"rung{k}.npy", spectra.x[4, k])
    summary = run_series(Denoiser(tiny_model_dir), [ladder_dir], tmp_path / "out", progress=False)
    assert summary.results[0].status == "ok", summary.results[0].message
    report = json.loads((tmp_path / "out" / "ladder_series.json").read_text())
    assert abs(report["t_hat"] / spectra.T[4] - 1) < 0.15 and len(report["snr"]) == 3
    fused = np.load(tmp_path / "out" / "ladder_fused.npy")
    direct = Denoiser(tiny_model_dir).denoise_series(spectra.x[4])
    np.testing.assert_allclose(
        fused, direct.fused, rtol=1e-5, atol=1e-6 * np.abs(direct.fused).max()
    )
    # mismatched lengths are named
    bad = tmp_path / "bad_ladder"
    bad.mkdir()
    np.save(bad / "r0.npy", spectra.x[0, 0])
    np.save(bad / "r1.npy", spectra.x[0, 1, :-10])
    with pytest.raises(InputError, match="different lengths"):
        read_ladder(bad)
    failed = run_series(Denoiser(tiny_model_dir), [bad], tmp_path / "out2", progress=False)
    assert failed.results[0].status == "failed" and "bad_ladder" in failed.results[0].message


def test_series_from_arrays_bad_series_named_and_resume(tiny_model_dir, spectra, tmp_path):
    den = Denoiser(tiny_model_dir)
    inputs = tmp_path / "in"
    inputs.mkdir()
    np.save(inputs / "a.npy", spectra.x[1, :3])  # a ladder [R, L] in one array
    np.savez(inputs / "b.npz", intensities=spectra.x[2, :3])
    bad = {
        "flat.npy": "2D array",  # one spectrum, not a ladder
        "other.npz": "'intensities'",
        "one_rung": "at least 2 rung files",
        "notes.txt": "a series is a folder",
    }
    np.save(inputs / "flat.npy", spectra.x[3, 0])
    np.savez(inputs / "other.npz", data=spectra.x[3, :3])
    (inputs / "one_rung").mkdir()
    np.save(inputs / "one_rung" / "r0.npy", spectra.x[3, 0])
    (inputs / "notes.txt").write_text("not a spectrum")
    paths = [inputs / n for n in ("a.npy", "b.npz", *bad)]
    out = tmp_path / "out"
    summary = run_series(den, paths, out, progress=False)
    status = {Path(r.input).name: r for r in summary.results}
    for name, row in (("a.npy", 1), ("b.npz", 2)):
        assert status[name].status == "ok", status[name].message
        fused = np.load(out / f"{Path(name).stem}_fused.npz")["intensities"]
        np.testing.assert_array_equal(fused, den.denoise_series(spectra.x[row, :3]).fused)
    for name, problem in bad.items():
        assert status[name].status == "failed" and name in status[name].message
        assert problem in status[name].message, status[name].message
    # a resume skips the finished ladders and retries the failed ones
    again = run_series(den, paths, out, resume=True, progress=False)
    assert [r.status for r in again.results] == ["skipped"] * 2 + ["failed"] * 4


def test_discovery_skips_outputs_and_keeps_bruker_experiments_whole(spectra, tmp_path):
    np.save(tmp_path / "a.npy", spectra.x[0, 0])
    (tmp_path / "manifest.jsonl").write_text("")
    experiment = make_bruker(tmp_path / "exp", spectra.x[1, 0, :SI].astype(np.float64) * 1e5)
    found = list(discover_inputs([tmp_path]))
    assert tmp_path / "a.npy" in found and experiment in found
    assert not any("pdata" in p.parts for p in found)
    with pytest.raises(InputError, match="no such file"):
        list(discover_inputs([tmp_path / "missing"]))


def _outputs(folder):
    return {p.name: np.load(p) for p in folder.glob("*_denoised.npy")}


def test_interrupted_run_resumes_without_loss_or_redo(tiny_model_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    ladders = simulate_ladders(48, 2, 32768, 2.0, 8.0, seed=3)
    for i in range(48):
        np.save(inputs / f"s{i:02d}.npy", ladders.x[i, 0])
    model = str(tiny_model_dir / "model.onnx")
    reference_out = tmp_path / "reference"
    assert (
        main(
            [
                "denoise",
                str(inputs),
                "--out",
                str(reference_out),
                "--model",
                model,
                "--no-progress",
                "--batch-size",
                "1",
            ]
        )
        == 0
    )

    out = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "nmrladder",
        "denoise",
        str(inputs),
        "--out",
        str(out),
        "--model",
        model,
        "--no-progress",
        "--batch-size",
        "1",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = len(manifest.read_text().splitlines())
    assert 5 <= finished_before < 48, "the run was not interrupted mid-way"

    job = DenoiseJob(Denoiser(model, batch_size=1), out, resume=True, progress=False)
    summary = job.run(discover_inputs([inputs]))
    statuses = [r.status for r in summary.results]
    assert statuses.count("skipped") >= finished_before - 1  # a torn last line is redone
    assert statuses.count("ok") + statuses.count("skipped") == 48 and "failed" not in statuses
    got, expected = _outputs(out), _outputs(reference_out)
    assert sorted(got) == sorted(expected)  # every output once, none missing
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values)
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    recorded = [
        json.loads(line)["input"] for line in manifest.read_text().splitlines() if line.strip()
    ]
    assert len(set(recorded)) == 48


def test_outputs_do_not_depend_on_how_spectra_were_batched(tiny_model_dir, tmp_path):
    # On a two-threaded session ONNX Runtime computes a lone row of this model at L = 1024 in
    # another summation order than a row of a batch (ORT 1.32: its last bits differ); the job
    # batches by timing, so without Denoiser.run_batch its outputs changed from run to run.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 1024)).astype(np.float32)
    x[:, 300] += 40.0
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, row in enumerate(x):
        np.save(inputs / f"s{i}.npy", row)
    paths = sorted(inputs.glob("*.npy"))
    outputs = {}
    for batch in (1, 2, 4):
        den = Denoiser(tiny_model_dir, batch_size=batch, threads=2)
        assert not DenoiseJob(den, tmp_path / f"b{batch}", progress=False).run(paths).failed
        outputs[batch] = {p.name: p.read_bytes() for p in (tmp_path / f"b{batch}").glob("*.npy")}
    assert len(outputs[1]) == 5 and outputs[1] == outputs[2] == outputs[4]
    den = Denoiser(tiny_model_dir, batch_size=4, threads=2)
    whole = den.denoise(x)  # one batch of 4, then a lone fifth row
    for i in range(5):
        np.testing.assert_array_equal(np.load(tmp_path / "b1" / f"s{i}_denoised.npy"), whole[i])
    # the oracle for the network part: a single-threaded session does not split rows
    z = np.stack([read_scaled(0, p, den.info).z for p in paths])
    single = Denoiser(tiny_model_dir, batch_size=4, threads=1).session.run(z)
    np.testing.assert_array_equal(den.run_batch(z[4:5]), single[4:5])
    np.testing.assert_array_equal(den.run_batch(z[:4]), single[:4])


@pytest.mark.parametrize("file_threads", [1, 3])
def test_streams_give_the_one_stream_outputs(file_threads, tiny_model_dir, spectra, tmp_path):
    # Batches side by side (Denoiser.streams) and several file threads change how the work is
    # scheduled, not a value: every file comes out once, as one stream on every thread makes it.
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(spectra.x.shape[0]):
        for k in range(spectra.x.shape[1]):
            np.save(inputs / f"s{i}_{k}.npy", spectra.x[i, k])
    np.save(inputs / "longer.npy", np.tile(spectra.x[0, 0], 2))  # a second padded length
    paths = sorted(inputs.glob("*.npy"))
    one = Denoiser(tiny_model_dir, batch_size=2, threads=2)
    both = Denoiser(tiny_model_dir, batch_size=2, threads=2, streams=2)
    job = DenoiseJob(both, tmp_path / "out", progress=False, file_threads=file_threads)
    summary = job.run(paths)
    assert [r.status for r in summary.results] == ["ok"] * len(paths)
    for path in paths:
        expected = one.denoise(np.load(path))
        got = np.load(tmp_path / "out" / f"{path.stem}_denoised.npy")
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    recorded = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["input"] for line in recorded) == sorted(map(str, paths))
    x = spectra.x[:, 0]  # six spectra: three batches of two, side by side
    np.testing.assert_allclose(both.denoise(x), one.denoise(x), rtol=0, atol=1e-5 * np.abs(x).max())


def _batch_sizes(batcher: _Batcher, lengths: list[int], failed: tuple[int, ...] = ()):
    """The sizes of the batches ``batcher`` hands out when inputs of ``lengths`` (padded)
    arrive one by one (those at the indices in ``failed`` fail), then the partial rest."""
    sizes = []
    for index, length in enumerate(lengths):
        if index in failed:
            batcher.failed_one()
            continue
        batch = batcher.add(ScaledInput(index, Path(f"s{index}"), z=np.zeros(length)))
        if batch:
            assert len({item.z.size for item in batch}) == 1  # one padded length a batch
            sizes.append(len(batch))
    sizes += [len(group) for group in batcher.take_all()]
    return sizes


def test_batches_start_small_and_shrink_at_the_end_with_several_streams():
    # Worked by hand for 64 inputs, batches of 8, two streams: a batch of 2 for each stream
    # first; batches of 8 while 32 or more inputs are left (60, 52, 44, 36 left); then
    # ceil(left / 4), at least 2: 28 -> 7, 21 -> 6, 15 -> 4, 11 -> 3, 8 -> 2, 6, 4, 2 -> 2.
    sizes = _batch_sizes(_Batcher(8, 2, 64), [16] * 64)
    assert sizes == [2, 2, 8, 8, 8, 8, 7, 6, 4, 3, 2, 2, 2, 2]
    # One stream: full batches only, the rest as one partial batch.
    assert _batch_sizes(_Batcher(8, 1, 20), [16] * 20) == [8, 8, 4]
    # A failed input counts as done: 7 inputs left after the first two batches -> 2, 2, 2, 1.
    assert _batch_sizes(_Batcher(8, 2, 12), [16] * 12, failed=(5,)) == [2, 2, 2, 2, 2, 1]
    # Two padded lengths: each batch holds one; every input is handed out exactly once.
    lengths = [16, 32] * 20
    sizes = _batch_sizes(_Batcher(4, 2, len(lengths)), lengths)
    assert sum(sizes) == len(lengths) and max(sizes) <= 4


@pytest.mark.timeout(120)
def test_inputs_read_ahead_stay_within_queue_size(tiny_model_dir, spectra, tmp_path, monkeypatch):
    # Memory stays flat however many files: at most queue_size inputs are read and not yet
    # written, while a slow network lets the file thread read ahead as far as it may.
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(30):
        np.save(inputs / f"s{i:02d}.npy", spectra.x[i % 6, i % 3])
    den = Denoiser(tiny_model_dir, batch_size=2)
    run = den.session.run
    den.session.run = lambda z: (time.sleep(0.02), run(z))[1]
    counts = {"read": 0, "written": 0, "most": 0}
    read, write = DenoiseJob._read, DenoiseJob._write

    def counted_read(self, *args):
        counts["read"] += 1
        counts["most"] = max(counts["most"], counts["read"] - counts["written"])
        return read(self, *args)

    def counted_write(self, *args):
        counts["written"] += 1
        return write(self, *args)

    monkeypatch.setattr(DenoiseJob, "_read", counted_read)
    monkeypatch.setattr(DenoiseJob, "_write", counted_write)
    summary = DenoiseJob(den, tmp_path / "out", progress=False, queue_size=5).run(
        sorted(inputs.glob("*.npy"))
    )
    assert [r.status for r in summary.results] == ["ok"] * 30
    assert counts["most"] == 5
    with pytest.raises(InputError, match="file_threads must be >= 1"):
        DenoiseJob(den, tmp_path / "out", file_threads=0)


@pytest.mark.timeout(60)  # a stall is this test failing on its timeout
def test_many_lengths_with_little_room_do_not_stall(tiny_model_dir, spectra, tmp_path):
    # Inputs of many padded lengths wait in part-filled batches; with only a few inputs allowed
    # in flight, the file thread waits for outputs that only a flush of those batches gives.
    den = Denoiser(tiny_model_dir, batch_size=4)
    run = den.session.run
    den.session.run = lambda z: (time.sleep(0.01), run(z))[1]  # the file thread runs ahead
    multiple = den.info.length_multiple
    paths = []
    for i in range(24):
        path = tmp_path / f"s{i:02d}.npy"
        np.save(path, spectra.x[i % 6, 0][: 4096 - multiple * (i % 6)])  # six padded lengths
        paths.append(path)
    summary = DenoiseJob(den, tmp_path / "out", progress=False, queue_size=4).run(paths)
    assert [r.status for r in summary.results] == ["ok"] * 24


@pytest.mark.timeout(120)
def test_a_failing_stream_stops_the_job_with_its_error(tiny_model_dir, spectra, tmp_path):
    # An unexpected error in one stream is raised by run(), and nothing waits forever.
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(40):
        np.save(inputs / f"s{i:02d}.npy", spectra.x[i % 6, i % 3])
    den = Denoiser(tiny_model_dir, batch_size=2, threads=2, streams=2)
    calls, run = [], den.session.run

    def flaky(z):
        calls.append(len(z))
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return run(z)

    den.session.run = flaky
    with pytest.raises(RuntimeError, match="device lost"):
        DenoiseJob(den, tmp_path / "out", progress=False).run(sorted(inputs.glob("*.npy")))
    den.session.run = run  # what was finished is kept; resume does the rest
    summary = DenoiseJob(den, tmp_path / "out", resume=True, progress=False).run(
        sorted(inputs.glob("*.npy"))
    )
    assert sum(r.status in ("ok", "skipped") for r in summary.results) == 40


@pytest.mark.timeout(120)  # the failure this guards against is a job that never returns
@pytest.mark.parametrize("stage", ["_read", "_write"])
def test_a_failing_reader_or_writer_stops_the_job_with_its_error(
    stage, tiny_model_dir, spectra, tmp_path, monkeypatch
):
    # More files than the queues hold: a stage that died silently would leave the others
    # waiting on a full or empty queue forever.
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(30):
        np.save(inputs / f"s{i:02d}.npy", spectra.x[i % 6, i % 3])
    original, calls = getattr(DenoiseJob, stage), []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError(f"bug in {stage}")
        return original(self, *args)

    monkeypatch.setattr(DenoiseJob, stage, failing)
    job = DenoiseJob(Denoiser(tiny_model_dir, batch_size=2), tmp_path / "out", progress=False)
    with pytest.raises(RuntimeError, match=f"bug in {stage}"):
        job.run(sorted(inputs.glob("*.npy")))
    assert not any(t.name.startswith("nmrladder-") for t in threading.enumerate())


def test_an_unexpected_parser_error_fails_only_its_file(
    tiny_model_dir, spectra, tmp_path, monkeypatch
):
    import nmrladder.runtime.io as io_module

    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", spectra.x[0, 0])
    read = io_module.read_spectrum

    def parser_with_a_bug(path):
        if Path(path).name == "b.npy":
            raise KeyError("FTSIZE")  # as a parser may raise on a malformed file
        return read(path)

    monkeypatch.setattr(io_module, "read_spectrum", parser_with_a_bug)
    summary = DenoiseJob(Denoiser(tiny_model_dir), tmp_path / "out", progress=False).run(
        [tmp_path / f"{name}.npy" for name in ("a", "b", "c")]
    )
    assert [r.status for r in summary.results] == ["ok", "failed", "ok"]
    assert str(tmp_path / "b.npy") in summary.results[1].message
    assert "KeyError" in summary.results[1].message


def test_streams_are_checked(tiny_model_dir, spectra, tmp_path, capsys):
    with pytest.raises(InputError, match="streams must be >= 1"):
        Denoiser(tiny_model_dir, streams=0)
    with pytest.raises(InputError, match="only the CPU backend 'ort'"):
        Denoiser(tiny_model_dir, backend="torch", streams=2)
    np.save(tmp_path / "a.npy", spectra.x[0, 0])
    command = ["denoise", str(tmp_path / "a.npy"), "--out", str(tmp_path / "o"), "--series"]
    assert main([*command, "--streams", "2", "--model", str(tiny_model_dir)]) == 2
    assert "--streams" in capsys.readouterr().err
    command[-1] = "--engine=ray"  # refused before any Ray instance starts
    assert main([*command, "--streams", "2", "--model", str(tiny_model_dir)]) == 2
    assert "--streams" in capsys.readouterr().err
    assert main([*command, "--file-threads", "2", "--model", str(tiny_model_dir)]) == 2
    assert "--file-threads" in capsys.readouterr().err
    command[-1] = "--no-progress"
    assert main([*command, "--file-threads", "0", "--model", str(tiny_model_dir)]) == 2
    assert "--file-threads 0: give a whole number of at least 1" in capsys.readouterr().err
    with pytest.raises(InputError, match="file_threads must be >= 1"):
        DenoiseJob(Denoiser(tiny_model_dir), tmp_path / "o", file_threads=0)


def test_resume_redoes_outputs_another_model_made(tiny_model_dir, spectra, tmp_path):
    import hashlib
    import shutil

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        np.save(inputs / f"s{i}.npy", spectra.x[i, 0])
    paths = sorted(inputs.glob("*.npy"))
    den = Denoiser(tiny_model_dir / "model.onnx")
    digest = hashlib.sha256((tiny_model_dir / "model.onnx").read_bytes()).hexdigest()
    assert den.fingerprint == f"model.onnx {digest[:16]}"
    shutil.copy(tiny_model_dir / "model.onnx", tmp_path / "copy.onnx")
    assert Denoiser(tmp_path / "copy.onnx").fingerprint == f"copy.onnx {digest[:16]}"

    out = tmp_path / "out"
    first = DenoiseJob(den, out, progress=False).run(paths)
    assert {r.model for r in first.results} == {den.fingerprint}
    other = Denoiser(tiny_model_dir / "model.onnx")
    other.fingerprint = "retrained.onnx 0123456789abcdef"  # as if another artefact
    redone = DenoiseJob(other, out, resume=True, progress=False).run(paths)
    assert [(r.status, r.model) for r in redone.results] == [("ok", other.fingerprint)] * 3
    again = DenoiseJob(other, out, resume=True, progress=False).run(paths)
    assert [r.status for r in again.results] == ["skipped"] * 3

    # A manifest written before the model was recorded: its outputs count as done.
    manifest = out / "manifest.jsonl"
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(
        json.dumps({k: v for k, v in e.items() if k != "model"}) + "\n" for e in entries
    ))
    older = DenoiseJob(den, out, resume=True, progress=False).run(paths)
    assert [r.status for r in older.results] == ["skipped"] * 3
