"""Training (train/training.py, checkpoint.py, config.py, train_cli.py): schedule, shifts,
overfitting, exact resume, L_T through the data pipeline, the CLI and the RUN layout."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nmrladder.cli import main  # noqa: E402
from nmrladder.runtime.errors import InputError  # noqa: E402
from nmrladder.train import checkpoint as ckpt  # noqa: E402
from nmrladder.train import config as C  # noqa: E402
from nmrladder.train import data as D  # noqa: E402
from nmrladder.train import training as TR  # noqa: E402
from nmrladder.train.config import tomllib  # noqa: E402  (3.10: tomli)
from nmrladder.train.losses import loss_T  # noqa: E402
from nmrladder.train.model import ModelConfig  # noqa: E402
from nmrladder.train.simulate import simulate_ladders  # noqa: E402

TINY = [
    "model.depth=2", "model.widths=[8, 8]", "model.dilations=[1, 2]", "model.groups=4",
    "data.crop_length=256", "data.batch_size=2", "optim.warmup_steps=2",
    "run.progress=false", "run.threads=1", "run.checkpoint_every=0",
    "stage_a.epochs=0", "stage_b.epochs=0",
]


def tiny_config(*overrides):
    return C.load_config(overrides=[*TINY, *overrides])


@pytest.fixture(scope="module")
def ladders():
    return simulate_ladders(4, 3, 1024, 2.0, 10.0, seed=9)


@pytest.fixture(scope="module")
def prepared(ladders):
    return D.prepare(ladders, t_source="true")


# --------------------------------------------------------------------------- config


def test_config_overrides_and_errors(tmp_path):
    cfg = C.load_config(overrides=["optim.lr=1e-3", "data.t_source=true",
                                   "data.preprocess.weights=top", "stage_b.extra_rungs=[2, 3]"])
    assert cfg["optim"]["lr"] == 1e-3 and cfg["data"]["t_source"] == "true"
    assert cfg["data"]["preprocess"]["weights"] == "top"
    assert cfg["stage_b"]["extra_rungs"] == [2, 3]
    assert C.default_config()["stage_a"]["l1"] == 0.5  # METHOD 5.4
    for bad, pattern in (("optim.lrr=1", "unknown key 'optim.lrr'"),
                         ("nosection.x=1", r"unknown section \[nosection\]"),
                         ("optim.lr=fast", "optim.lr must be a float"),
                         ("data.crop_length=1000", r"crop_length=1000 must be .*multiple.*\(16"),
                         ("stage_a.rungs=some", "stage_a.rungs must be one of"),
                         ("data.preprocess.bogus=1", "data.preprocess.bogus"),
                         ("optim", "section.key=value")):
        with pytest.raises(InputError, match=pattern):
            C.load_config(overrides=[bad])
    path = tmp_path / "c.toml"
    path.write_text("[optim]\nlr = 0.002\n[stage_a]\nsteps = 7\n")
    cfg = C.load_config(path, ["stage_a.steps=9"])
    assert cfg["optim"]["lr"] == 0.002 and cfg["stage_a"]["steps"] == 9
    assert tomllib.loads(C.dumps(cfg)) == cfg
    path.write_text("[optim]\nlr = 0.002\nbogus = 1\n")
    with pytest.raises(InputError, match=f"{path.name}.*optim.bogus"):
        C.load_config(path)


# --------------------------------------------------------------------------- schedule


def test_schedule_warmup_cosine_stages_curriculum_and_late_phase():
    cfg = tiny_config("stage_a.steps=10", "stage_b.steps=20", "optim.warmup_steps=4",
                      "optim.lr=1e-3", "optim.min_lr_ratio=0.1", "stage_b.late_fraction=0.25",
                      "stage_b.curriculum_fraction=0.6")
    s = TR.Schedule(cfg, steps_per_epoch=5, rungs=4)
    assert s.total_steps == 30
    assert [s.lr(i) for i in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert s.lr(4) == pytest.approx(1e-3)
    for step in (10, 17, 29):  # the cosine spans steps 4..29
        cosine = 0.5 * (1 + np.cos(np.pi * (step - 4) / 25))
        assert s.lr(step) == pytest.approx(1e-4 + 0.9e-3 * cosine)
    assert s.lr(29) == pytest.approx(1e-4)
    a, b = s.plan(9), s.plan(10)
    assert (a.stage, b.stage) == ("stage_a", "stage_b")
    assert a.weights == {"rec": 1.0, "deriv": 0.5, "curv": 0.1, "cons": 0.5, "T": 0.0}
    assert b.weights["cons"] == 1.0 and b.weights["T"] == 0.5 and b.rungs.mode == "all"
    assert a.pair_min_rung == 0 and a.rungs.mode == "sampled"
    # stage B: 12 curriculum steps in 3 phases of 4: pairs from rung 2, then 1, then 0
    assert [s.plan(10 + i).pair_min_rung for i in (0, 3, 4, 7, 8, 11, 12, 19)] == [
        2, 2, 1, 1, 0, 0, 0, 0]
    # late phase: the last 5 steps of stage B
    assert s.plan(24).peak_weight == 6.0 and s.plan(25).peak_weight == 10.0
    assert s.plan(25).weights["curv"] == 0.05
    assert s.plan(3).epoch == 0 and s.plan(12).epoch == 2
    # nothing uses the other rungs: only rung 0 is fed
    lone = TR.Schedule(tiny_config("stage_a.l3=0", "stage_a.steps=2"), 1, 4).plan(0)
    assert lone.rungs.extra == (0, 0)


def test_shift_linear_matches_the_runtime_apply_shift():
    from nmrladder.runtime.preprocess import apply_shift

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 2, 64))
    d = np.array([[0.3, -0.45], [2.7, -3.2], [0.0, 0.5]])
    got = TR.shift_linear(torch.from_numpy(x), torch.from_numpy(d)).numpy()
    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(got[i, j], apply_shift(x[i, j], d[i, j]), atol=1e-12)
    xt = torch.from_numpy(x).requires_grad_()
    TR.shift_linear(xt, torch.from_numpy(d)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), 1.0)  # interpolation weights sum to 1


@pytest.mark.parametrize("rec_loss", ["l1", "smooth_l1"])
@pytest.mark.parametrize("under_weight", [1.0, 3.0])
@pytest.mark.parametrize("line_top_points", [0.0, 2.0])
def test_reconstruction_matches_numpy(rec_loss, under_weight, line_top_points):
    """L_rec of every option against a NumPy oracle: the peak weight inside M, the Huber/delta
    form of smooth L1, under_weight on the points of M whose |y| falls short of the
    target's (negative lines included), and line_top_points more points at each local
    maximum of the target inside M, 3-30 high, that the output falls short of."""
    rng = np.random.default_rng(4)
    target = rng.normal(0.0, 3.0, size=(3, 200))
    y = target + rng.normal(0.0, 2.0, size=target.shape)
    mask = rng.random(target.shape) < 0.3
    plan = TR.StepPlan(step=0, stage="stage_a", epoch=0, lr=0.0, weights={}, peak_weight=6.0,
                       base_weight=1.0, rec_other=0.0, rungs=None, pair_min_rung=0,
                       rec_loss=rec_loss, huber_delta=2.0, under_weight=under_weight,
                       line_top_points=line_top_points)
    got = TR.reconstruction(torch.from_numpy(y), torch.from_numpy(target),
                            torch.from_numpy(mask), plan).item()

    e = np.abs(y - target)
    per_point = e if rec_loss == "l1" else np.where(e < 2.0, 0.5 * e**2 / 2.0, e - 1.0)
    short = mask & (np.abs(y) < np.abs(target)) & (np.sign(y) == np.sign(target))
    short |= mask & (np.sign(y) != np.sign(target))  # on the other side of zero: short too
    weight = np.where(mask, 6.0, 1.0) * np.where(short, under_weight, 1.0)
    tops = np.zeros_like(mask)
    for b, i in zip(*np.nonzero(mask), strict=True):
        if 0 < i < target.shape[1] - 1 and 3.0 <= target[b, i] <= 30.0:
            tops[b, i] = target[b, i - 1] < target[b, i] >= target[b, i + 1]
    assert tops.sum() > 10  # the case is exercised
    weight = weight + (tops & (y < target)) * line_top_points * 6.0 * under_weight
    assert got == pytest.approx(float((weight * per_point).mean()), rel=1e-12)


# --------------------------------------------------------------------------- L_T end to end


def test_perfect_denoiser_has_zero_L_T_through_the_pipeline():
    """Perfect outputs: each rung's noise-free content, moved through the same frame and
    amplitude chain as the inputs; residuals are then the noise alone, whose norms must
    fall by T per rung: alpha_ij = T**(+(j - i))."""
    lad = simulate_ladders(6, 4, 4096, (1.5, 3.0), 10.0, seed=21, keep_clean=True)
    prep = D.prepare(lad, t_source="true")
    clean = (lad.clean - lad.norm_offset[..., None]) / lad.norm_scale[..., None]
    perfect = D.to_input_frame(clean, prep.offsets, prep.roll, prep.scales, prep.unit)
    sampler = D.BatchSampler(prep, 6, 4096, seed=0, peak_crop_fraction=0.0)
    batch = sampler.batch(0, D.RungPlan("all"))
    outputs = perfect[batch.samples]  # whole spectra: the crop is the spectrum
    residuals = torch.from_numpy(batch.inputs - outputs).double()
    base = torch.from_numpy(batch.base_mask)
    rungs = torch.from_numpy(batch.rungs)
    T = torch.from_numpy(batch.T)
    good = float(loss_T(residuals, rungs, T, base))
    flipped = float(loss_T(residuals, rungs, 1.0 / T, base))
    assert good < 0.06, good
    assert flipped > 1.0, flipped
    # with T_hat (no knowledge of the simulation) it holds as well
    assert float(loss_T(residuals, rungs, torch.from_numpy(prep.t_hat[batch.samples]),
                        base)) < 0.08


# --------------------------------------------------------------------------- training


def test_tiny_model_overfits_a_tiny_set(ladders, tmp_path):
    # two whole ladders, the same batch every step: the network can learn them by heart
    cfg = tiny_config("data.crop_length=1024", "data.batch_size=2", "stage_a.steps=150",
                      "stage_a.l3=0", "optim.lr=3e-3", "optim.warmup_steps=10",
                      "optim.min_lr_ratio=0.01", "model.widths=[16, 32]", "model.groups=4")
    result = TR.train(cfg, D.prepare(ladders.x[:2]), tmp_path / "run")
    log = TR.read_log(tmp_path / "run" / "log.csv")
    first = np.mean([row["total"] for row in log[:5]])
    last = np.mean([row["total"] for row in log[-5:]])
    assert result.steps == 150 and len(log) == 150
    assert last * 10 <= first, (first, last)


def test_resume_equals_an_uninterrupted_run(prepared, tmp_path):
    cfg = tiny_config("stage_a.steps=4", "stage_b.steps=4", "run.checkpoint_every=4")
    TR.train(cfg, prepared, tmp_path / "straight")
    TR.train(cfg, prepared, tmp_path / "split")
    # simulate an interruption after step 4: drop the end of the run, keep checkpoint 4
    split = tmp_path / "split"
    (split / "checkpoints" / "latest").write_text("step_0000004\n")
    (split / "model.safetensors").unlink()
    TR.train(cfg, prepared, split, resume=True)
    a, _ = ckpt.load_weights(tmp_path / "straight" / "model.safetensors")
    b, meta = ckpt.load_weights(split / "model.safetensors")
    assert meta["step"] == "8"
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0, atol=1e-6)
    log_a = TR.read_log(tmp_path / "straight" / "log.csv")
    log_b = TR.read_log(split / "log.csv")
    assert [r["step"] for r in log_b] == list(range(1, 9))
    for ra, rb in zip(log_a, log_b, strict=True):
        for key in ("total", *TR.TERMS, "lr"):
            if ra[key] is None:
                assert rb[key] is None
            else:
                assert rb[key] == pytest.approx(ra[key], abs=1e-6), (ra["step"], key)


def test_cli_writes_the_run_layout(ladders, tmp_path):
    data = tmp_path / "train.h5"
    ladders.save(data)
    config = tmp_path / "tiny.toml"
    config.write_text("[model]\ndepth = 2\nwidths = [8, 8]\ndilations = [1, 2]\ngroups = 4\n"
                      "[data]\ncrop_length = 256\nbatch_size = 2\n[run]\nthreads = 1\n")
    run = tmp_path / "run"
    args = ["train", "--config", str(config), "--data", str(data), "--val", str(data),
            "--out", str(run), "--set", "stage_a.steps=3", "--set", "stage_b.steps=2",
            "--set", "run.checkpoint_every=2", "--set", "optim.warmup_steps=1",
            "--no-progress"]
    assert main(args) == 0
    resolved = tomllib.loads((run / "config.toml").read_text())
    assert resolved["model"] == ModelConfig(depth=2, widths=(8, 8), dilations=(1, 2),
                                            groups=4).to_dict()
    assert resolved["stage_a"]["steps"] == 3 and resolved["optim"]["lr"] == 3e-4
    weights, meta = ckpt.load_weights(run / "model.safetensors")
    assert meta == {"step": "5", "nmrladder_version": __import__("nmrladder").__version__}
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == "step_0000005"
    for name in ("model.safetensors", "optimizer.pt", "state.json"):
        assert (run / "checkpoints" / latest / name).is_file()
    assert json.loads((run / "checkpoints" / latest / "state.json").read_text())["step"] == 5
    saved = torch.load(run / "checkpoints" / latest / "optimizer.pt", weights_only=True)
    assert "state" in saved["optimizer"]
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_0000002", "step_0000004", "step_0000005"]
    log = TR.read_log(run / "log.csv")
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    assert [r["stage"] for r in log] == ["stage_a"] * 3 + ["stage_b"] * 2
    assert all(r["rec"] is not None and r["lr"] > 0 for r in log)
    assert log[-1]["T"] is not None and log[0]["T"] is None  # L_T only in stage B
    assert len(TR.read_log(run / "val.csv")) == 1
    # the evaluation's loader reads the run (train/inference.py's contract)
    inference = pytest.importorskip("nmrladder.train.inference")
    model, cfg = inference.load_run(run)
    y = inference.TorchDenoiser(model).denoise(ladders.x[:2, 0])
    assert y.shape == (2, 1024) and np.all(np.isfinite(y))
    # a second run into the same folder is refused; --resume of a finished run does nothing
    assert main(args) == 2
    assert main([*args, "--resume"]) == 0
    assert len(TR.read_log(run / "log.csv")) == 5


def test_cli_rejects_unknown_keys(ladders, tmp_path, capsys):
    data = tmp_path / "train.h5"
    ladders.save(data)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--set", "optim.learning_rate=1"])
    assert code == 2
    assert "unknown key 'optim.learning_rate'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_export_hook_writes_an_onnx_equal_to_the_trained_model(ladders, tmp_path):
    pytest.importorskip("onnxruntime")
    data = tmp_path / "train.h5"
    ladders.save(data)
    run, models = tmp_path / "run", tmp_path / "models"
    sets = [arg for value in [*TINY, "stage_a.steps=2", "stage_b.steps=1"]
            for arg in ("--set", value)]
    assert main(["train", "--data", str(data), "--out", str(run), "--export", str(models),
                 "--export-name", "tiny", *sets]) == 0
    from nmrladder.runtime import Denoiser
    from nmrladder.train.inference import TorchDenoiser, load_run

    x = ladders.x[:3, 0]
    expected = TorchDenoiser(load_run(run)[0]).denoise(x)
    got = Denoiser(models / "tiny.onnx").denoise(x)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
