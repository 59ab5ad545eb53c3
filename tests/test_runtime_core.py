"""The spectrum-to-spectrum core (runtime/core.py) behind every path, and series mode's
resume and failure policy, which are the batch job's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmrladder.cli import main
from nmrladder.runtime import Denoiser, preprocess
from nmrladder.runtime.core import Core
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.pipeline import DenoiseJob, run_series
from nmrladder.runtime.residual import ResidualBroadening, restore_residual
from nmrladder.runtime.scaling import from_model_output
from nmrladder.train.simulate import simulate_ladders


@pytest.fixture(scope="module")
def spectra():
    return simulate_ladders(4, 3, 4096, 2.0, 8.0, seed=41)


def test_the_core_is_scale_network_unscale_residual(tiny_model_dir, spectra):
    den = Denoiser(tiny_model_dir / "model.onnx", threads=1)
    x = spectra.x[:3, 0]
    # the oracle: the NumPy reference's robust scaling, the session, the scaling undone
    centers, sigmas = preprocess.reference.robust_scale_batch(x.astype(np.float64))
    z = ((x - centers[:, None]) / sigmas[:, None]).astype(np.float32)
    z = np.pad(z, ((0, 0), (0, (-x.shape[1]) % den.info.length_multiple)))
    plain = from_model_output(den.session.run(z), centers, sigmas, x.shape[1])
    scale = np.abs(plain).max()
    np.testing.assert_allclose(den.denoise(x), plain, rtol=0, atol=1e-4 * scale)
    restored = restore_residual(x, plain, 0.5, (centers, sigmas))
    np.testing.assert_allclose(
        den.with_residual(0.5).denoise(x), restored, rtol=0, atol=1e-4 * scale
    )
    with pytest.raises(InputError, match="factor"):
        Core(16, residual_lb=-1.0)


def test_the_evaluations_residual_row_is_what_the_runtime_delivers(tiny_model_dir, spectra):
    x = spectra.x[:3, 0]
    den = Denoiser(tiny_model_dir / "model.onnx", threads=1)
    delivered = Denoiser(tiny_model_dir / "model.onnx", threads=1, residual_lb=0.5).denoise(x)
    assert np.array_equal(ResidualBroadening(den, 0.5).denoise(x), delivered)
    assert den.residual_lb is None  # the wrapped denoiser is left as it was
    assert np.array_equal(den.with_residual(0.5).denoise(x), delivered)


def test_the_torch_denoiser_runs_the_same_core(spectra):
    torch = pytest.importorskip("torch")
    from nmrladder.train.inference import TorchDenoiser
    from nmrladder.train.model import ModelConfig, build_model

    torch.manual_seed(1)
    model = build_model(ModelConfig(depth=3, widths=(8, 16, 16), dilations=(1, 2, 4)))
    x = spectra.x[:3, 0]
    plain = TorchDenoiser(model, threads=1).denoise(x)
    restoring = TorchDenoiser(model, threads=1, residual_lb=0.5)
    assert restoring.residual_lb == 0.5
    got = restoring.denoise(x)
    # the oracle measures the input's scale itself, in float64: the same to rounding
    expected = restore_residual(x, plain, 0.5)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(x).max())
    assert np.array_equal(ResidualBroadening(TorchDenoiser(model, threads=1), 0.5).denoise(x), got)


def _ladder_folders(root: Path, spectra, count: int) -> list[Path]:
    folders = []
    for i in range(count):
        folder = root / f"ladder{i}"
        folder.mkdir(parents=True)
        for k in range(3):
            np.save(folder / f"rung{k}.npy", spectra.x[i, k])
        folders.append(folder)
    return folders


def test_series_resume_is_the_batch_jobs_plan(tiny_model_dir, spectra, tmp_path):
    den = Denoiser(tiny_model_dir)
    folders = _ladder_folders(tmp_path / "in", spectra, 2)
    out = tmp_path / "out"
    first = run_series(den, folders, out, progress=False)
    assert [r.status for r in first.results] == ["ok", "ok"]
    again = run_series(den, folders, out, resume=True, progress=False)
    for before, after in zip(first.results, again.results, strict=True):
        assert after.status == "skipped" and after.message == "already done"
        # the manifest's figures come back, as in the batch job's resume
        assert (after.points, after.snr_before, after.model) == (
            before.points, before.snr_before, den.fingerprint)
    # another residual setting: redone, as the batch job redoes it
    redone = run_series(den.with_residual(0.5), folders, out, resume=True, progress=False)
    assert [(r.status, r.residual_lb) for r in redone.results] == [("ok", 0.5)] * 2
    # the plan is the batch job's: its resume reads the same manifest the same way
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["input"] for r in records} == {str(f) for f in folders}
    job = DenoiseJob(den.with_residual(0.5), out, resume=True, progress=False).run(folders)
    assert [r.status for r in job.results] == ["skipped"] * 2


def test_series_failure_policy_is_the_batch_jobs(tiny_model_dir, spectra, tmp_path, monkeypatch):
    import nmrladder.runtime.io as io_module

    den = Denoiser(tiny_model_dir)
    folders = _ladder_folders(tmp_path / "in", spectra, 3)
    read = io_module.read_spectrum

    def parser_with_a_bug(path):
        if Path(path).parent.name == "ladder1":
            raise KeyError("FTSIZE")  # as a parser may raise on a malformed file
        return read(path)

    monkeypatch.setattr(io_module, "read_spectrum", parser_with_a_bug)
    summary = run_series(den, folders, tmp_path / "out", progress=False)
    assert [r.status for r in summary.results] == ["ok", "failed", "ok"]
    assert str(folders[1]) in summary.results[1].message
    assert "KeyError" in summary.results[1].message
    monkeypatch.undo()
    # an error of the network itself stops the job, as a failed inference stops the batch job
    den.session.run = lambda z: (_ for _ in ()).throw(RuntimeError("device lost"))
    with pytest.raises(RuntimeError, match="device lost"):
        run_series(den, folders, tmp_path / "out2", progress=False)


def test_fallbacks_reach_the_summary_and_the_command_line(
    tiny_model_dir, spectra, tmp_path, capsys
):
    den = Denoiser(tiny_model_dir)
    folders = _ladder_folders(tmp_path / "in", spectra, 1)
    assert run_series(den, folders, tmp_path / "a", progress=False).fallbacks == {}
    with preprocess.use_reference():  # series mode runs in the caller's thread
        summary = run_series(den, folders, tmp_path / "b", progress=False)
        assert summary.fallbacks["preprocess_ladder: use_reference()"] == 1
        argv = ["denoise", str(folders[0]), "--series", "--out", str(tmp_path / "c"),
                "--no-progress", "--model", str(tiny_model_dir)]
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert "preprocessing ran on the NumPy reference" in err and "use_reference()" in err
