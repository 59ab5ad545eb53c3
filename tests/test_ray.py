"""The Ray engine: same outputs and manifest as the local engine, resume after a real kill,
bad inputs reported as data, and a clear error when Ray is missing."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from nmrladder.runtime import Denoiser
from nmrladder.runtime.pipeline import DenoiseJob, discover_inputs
from nmrladder.train.simulate import simulate_ladders

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(
    ray is None, reason="Ray is not installed (pip install 'nmrladder[ray]')"
)
pytestmark = [
    # Ray Data's own DataContext warns about its renamed settings whenever it is copied.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
    # A Ray instance left broken by one test must fail the next, not hang CI.
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs, as a user of the Python API would start it."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _write_inputs(folder, count, length, seed, prefix="s"):
    """Simulated spectra as .npy and .csv; returns their paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    ladders = simulate_ladders(count, 2, length, 2.0, 8.0, seed=seed)
    ppm = np.linspace(11.0, -1.0, length)
    paths = []
    for i in range(count):
        if i % 3 == 2:
            path = folder / f"{prefix}{i:02d}.csv"
            np.savetxt(path, np.c_[ppm, ladders.x[i, 0]], delimiter=",")
        else:
            path = folder / f"{prefix}{i:02d}.npy"
            np.save(path, ladders.x[i, 0])
        paths.append(path)
    return paths


def _outputs(folder):
    """Output file name -> bytes, for every output anywhere under ``folder``."""
    return {
        p.name: p.read_bytes()
        for p in folder.rglob("*_denoised*")
        if p.is_file() and ".tmp-" not in p.name
    }


def _recorded(out):
    entries = []
    for line in (out / "manifest.jsonl").read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by the kill
    return entries


def _temporaries(folder):
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


@needs_ray
@pytest.mark.parametrize(("residual_lb", "strength"), [(None, None), (0.5, None), (None, "auto")])
def test_ray_engine_reproduces_the_local_engine_bit_for_bit(
    residual_lb, strength, tiny_model_dir, local_ray, tmp_path
):
    from nmrladder.runtime.ray_engine import denoise_with_ray

    _write_inputs(tmp_path / "in", 9, 4096, seed=11)
    _write_inputs(tmp_path / "in" / "longer", 3, 5001, seed=12, prefix="l")  # another padding
    # the same file name in two folders: the collision rule names both outputs apart
    _write_inputs(tmp_path / "in" / "a", 1, 4096, seed=13, prefix="same")
    _write_inputs(tmp_path / "in" / "b", 1, 4096, seed=14, prefix="same")
    paths = list(discover_inputs([tmp_path / "in"]))
    model = tiny_model_dir / "model.onnx"

    local_denoiser = Denoiser(model, batch_size=4, residual_lb=residual_lb, strength=strength)
    local = DenoiseJob(local_denoiser, tmp_path / "local", progress=False).run(paths)
    distributed = denoise_with_ray(
        model,
        paths,
        tmp_path / "ray",
        batch_size=3,
        workers=2,
        progress=False,
        residual_lb=residual_lb,
        strength=strength,
    )

    assert [r.status for r in distributed.results] == ["ok"] * len(paths)
    expected, got = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert len(expected) == len(paths) and sorted(got) == sorted(expected)
    assert sum("__same00_denoised.npy" in name for name in got) == 2
    for name, data in expected.items():
        assert got[name] == data, f"{name} differs from the local engine's"
    for mine, theirs in zip(distributed.results, local.results, strict=True):
        assert (mine.input, mine.points, mine.snr_before, mine.snr_after, mine.message) == (
            theirs.input,
            theirs.points,
            theirs.snr_before,
            theirs.snr_after,
            theirs.message,
        )
        # the removal report and the strength setting travel back as the local engine's
        assert (mine.strength, mine.strength_step, mine.removal) == (
            theirs.strength,
            theirs.strength_step,
            theirs.removal,
        )
        assert mine.removal and mine.strength == ("auto" if strength else "")
    assert sorted(e["input"] for e in _recorded(tmp_path / "ray")) == sorted(map(str, paths))
    assert set(distributed.stage_seconds) == {"read", "scale", "infer", "write"}


@needs_ray
def test_bad_inputs_are_reported_by_name_and_the_others_finish(tiny_model_dir, local_ray, tmp_path):
    from nmrladder.runtime.ray_engine import denoise_with_ray

    good = _write_inputs(tmp_path / "in", 4, 4096, seed=21)
    bad = tmp_path / "in"
    np.save(bad / "nan.npy", np.where(np.arange(4096) == 7, np.nan, 1.0).astype(np.float32))
    (bad / "empty.npy").write_bytes(b"")
    np.save(bad / "short.npy", np.ones(100, dtype=np.float32))
    (bad / "notes.xyz").write_text("not a spectrum")
    paths = [good[0], bad / "nan.npy", good[1], bad / "empty.npy", good[2], bad / "short.npy"]
    paths += [bad / "notes.xyz", good[3]]

    summary = denoise_with_ray(
        tiny_model_dir, paths, tmp_path / "out", batch_size=2, workers=2, progress=False
    )

    by_name = {os.path.basename(r.input): r for r in summary.results}
    assert [r.input for r in summary.results] == [str(p) for p in paths]
    expected = {
        "nan.npy": "NaN/Inf",
        "empty.npy": "empty",
        "short.npy": "outside this model's range",
        "notes.xyz": "unknown format",
    }
    for name, problem in expected.items():
        result = by_name[name]
        assert result.status == "failed" and name in result.message and problem in result.message
    assert all(by_name[p.name].status == "ok" for p in good)
    assert sorted(_outputs(tmp_path / "out")) == sorted(
        f"{p.stem}_denoised{p.suffix}" for p in good
    )
    assert sorted(e["input"] for e in _recorded(tmp_path / "out")) == sorted(map(str, good))


@needs_ray
def test_a_worker_that_keeps_dying_fails_by_name_and_resume_finishes(
    tiny_model_dir, local_ray, tmp_path
):
    from nmrladder.runtime import ray_engine

    class DyingActor(ray_engine.DenoiseActor):  # local: Ray ships it by value to the workers
        def __call__(self, batch):
            if any("crash" in str(p) for p in batch["path"]):
                os._exit(3)  # as a segfault or the OOM killer would end the worker
            return super().__call__(batch)

    paths = _write_inputs(tmp_path / "in", 6, 4096, seed=31)
    paths[2] = paths[2].rename(paths[2].with_name("crash.npy"))
    original = ray_engine.DenoiseActor
    ray_engine.DenoiseActor = DyingActor
    try:
        summary = ray_engine.denoise_with_ray(
            tiny_model_dir, paths, tmp_path / "out", batch_size=2, workers=2, progress=False
        )
    finally:
        ray_engine.DenoiseActor = original
    statuses = {os.path.basename(r.input): r.status for r in summary.results}
    assert statuses["crash.npy"] == "failed"
    # A batch queued on the dying worker may fail with the crashing one (docs/scale-out.md);
    # every failure says why and names its input, and the job itself went on to the end.
    assert len(summary.results) == len(paths)
    for result in summary.failed:
        assert "Ray worker died 3 times" in result.message and result.input in result.message
    ok = {r.input for r in summary.results if r.status == "ok"}

    # The worker healed (the file renamed), --resume does exactly the failed inputs.
    healed = paths[2].rename(paths[2].with_name("healed.csv"))  # s02 is a CSV file
    paths[2] = healed
    again = ray_engine.denoise_with_ray(
        tiny_model_dir, paths, tmp_path / "out", batch_size=2, workers=2, resume=True,
        progress=False,
    )
    got = {os.path.basename(r.input): r.status for r in again.results}
    expected = {p.name: "skipped" if str(p) in ok else "ok" for p in paths}
    assert got == expected, [r.message for r in again.failed]


@needs_ray
def test_interrupted_ray_run_resumes_like_a_local_one(tiny_model_dir, local_ray, tmp_path):
    from nmrladder.runtime.ray_engine import denoise_with_ray

    count = 64
    paths = _write_inputs(tmp_path / "in", count, 32768, seed=3)
    model = tiny_model_dir / "model.onnx"
    reference = tmp_path / "reference"
    DenoiseJob(Denoiser(model, batch_size=8), reference, progress=False).run(paths)

    out = tmp_path / "interrupted"
    command = [
        sys.executable, "-m", "nmrladder", "denoise", str(tmp_path / "in"), "--out", str(out),
        "--model", str(model), "--engine", "ray", "--workers", "2", "--threads", "1",
        "--batch-size", "1", "--no-progress",
    ]  # fmt: skip
    # Its own session: the kill takes the driver and the Ray instance it started together,
    # so nothing of the old run writes while the resumed one runs.
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and process.poll() is None:
            if manifest.exists() and len(manifest.read_text().splitlines()) >= 5:
                break
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = {e["input"]: e["output"] for e in _recorded(out)}
    assert 5 <= len(finished) < count, "the run was not interrupted mid-way"
    before = {path: os.stat(path) for path in finished.values()}
    # what a writer killed mid-file leaves (the kill above may or may not have caught one)
    (out / ".s01_denoised.npy.tmp-killed.npy").write_bytes(b"half")

    summary = denoise_with_ray(model, paths, out, batch_size=8, resume=True, progress=False)

    statuses = {r.input: r.status for r in summary.results}
    assert all(statuses[i] == "skipped" for i in finished)  # finished inputs were not redone
    assert list(statuses.values()).count("ok") == count - len(finished)
    for path, stat in before.items():
        now = os.stat(path)
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), path
    got, expected = _outputs(out), _outputs(reference)
    assert sorted(got) == sorted(expected)  # every output once, none missing
    for name, data in expected.items():
        assert got[name] == data, f"{name} differs from the uninterrupted local run"
    assert not _temporaries(out)
    recorded = [e["input"] for e in _recorded(out)]
    assert sorted(set(recorded)) == sorted(map(str, paths)) and len(recorded) == count
    # one manifest for both engines: the local engine, resumed here, finds nothing to do
    again = DenoiseJob(Denoiser(model), out, resume=True, progress=False).run(paths)
    assert [r.status for r in again.results] == ["skipped"] * count


def test_missing_ray_is_backend_unavailable_with_the_install_hint(tmp_path):
    np.save(tmp_path / "x.npy", np.ones(4096, dtype=np.float32))
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["ray"] = None  # `import ray` now fails as if Ray were not installed
        import nmrladder.runtime
        from nmrladder.cli import main
        from nmrladder.runtime import BackendUnavailable
        from nmrladder.runtime.ray_engine import denoise_with_ray

        try:
            denoise_with_ray(None, [], {str(tmp_path / "out")!r})
        except BackendUnavailable as err:
            print("backend:", err.backend, "| hint:", err.install_hint)
        code = main(["denoise", {str(tmp_path / "x.npy")!r}, "--out", {str(tmp_path)!r},
                     "--engine", "ray", "--no-progress"])
        print("exit code:", code)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "backend: ray | hint: pip install 'nmrladder[ray]'" in done.stdout
    assert "exit code: 2" in done.stdout
    assert "pip install 'nmrladder[ray]'" in done.stderr


def test_the_runtime_imports_neither_ray_nor_torch():
    script = (
        "import sys, nmrladder.runtime, nmrladder.runtime.pipeline, nmrladder.runtime.ray_engine, "
        "nmrladder.runtime.denoise_cli; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@needs_ray
def test_a_bad_model_fails_before_any_work(tmp_path):
    from nmrladder.runtime import ModelError
    from nmrladder.runtime.ray_engine import denoise_with_ray

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="corrupt.onnx"):
        denoise_with_ray(corrupt, [tmp_path / "x.npy"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@needs_ray
def test_the_cli_runs_on_ray_and_writes_what_the_local_cli_writes(
    tiny_model_dir, local_ray, tmp_path, capsys
):
    from nmrladder.cli import main

    _write_inputs(tmp_path / "in", 5, 2048, seed=21)
    model = str(tiny_model_dir / "model.onnx")
    common = [str(tmp_path / "in"), "--model", model, "--no-progress", "--batch-size", "2"]
    assert main(["denoise", *common, "--out", str(tmp_path / "local"), "--residual-lb"]) == 0
    ray_args = ["--engine", "ray", "--workers", "2", "--residual-lb", "0.5"]
    assert main(["denoise", *common, "--out", str(tmp_path / "ray"), *ray_args]) == 0
    expected, got = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert len(expected) == 5 and got == expected
    assert [e["residual_lb"] for e in _recorded(tmp_path / "ray")] == [0.5] * 5
    capsys.readouterr()
    # the strength dial likewise; the confidence band is the local engine's alone
    ray_args[-2:] = ["--strength", "0.3"]
    assert main(["denoise", *common, "--out", str(tmp_path / "local3"), "--strength", "0.3"]) == 0
    assert main(["denoise", *common, "--out", str(tmp_path / "ray3"), *ray_args]) == 0
    assert _outputs(tmp_path / "ray3") == _outputs(tmp_path / "local3")
    assert [e["strength"] for e in _recorded(tmp_path / "ray3")] == ["0.3"] * 5
    capsys.readouterr()
    assert main(["denoise", *common, "--out", str(tmp_path / "x"), *ray_args,
                 "--confidence"]) == 2
    assert "--confidence" in capsys.readouterr().err
    # options of one engine given to the other are refused by name, before any work
    assert main(["denoise", *common, "--out", str(tmp_path / "x"), "--workers", "2"]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert main(["denoise", *common, "--out", str(tmp_path / "x"), "--series",
                 "--engine", "ray"]) == 2
    assert "--series" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
