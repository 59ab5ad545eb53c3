"""Ablations (train/ablate.py, ablate_cli.py) on a tiny budget."""

import pytest

pytest.importorskip("torch")

from nmrladder.cli import main  # noqa: E402
from nmrladder.runtime.errors import InputError  # noqa: E402
from nmrladder.train import ablate as A  # noqa: E402
from nmrladder.train import config as C  # noqa: E402
from nmrladder.train.config import tomllib  # noqa: E402  (3.10: tomli)
from nmrladder.train.simulate import simulate_ladders  # noqa: E402

TINY = """
[model]
depth = 2
widths = [8, 8]
dilations = [1, 2]
groups = 4
[data]
crop_length = 256
batch_size = 2
[stage_a]
epochs = 0
steps = 6
[stage_b]
epochs = 0
steps = 4
[optim]
warmup_steps = 2
[run]
threads = 1
checkpoint_every = 0
progress = false
"""


def test_variants_change_what_they_name():
    base = C.load_config()
    cfg = {name: C.with_overrides(base, v.overrides) for name, v in A.VARIANTS.items()}
    assert cfg["full"] == base
    assert cfg["no_peak_weight"]["stage_b"]["late_peak_weight"] == 1.0
    assert cfg["no_curv"]["stage_a"]["l2"] == cfg["no_curv"]["stage_b"]["late_l2"] == 0.0
    assert cfg["no_cons_T"]["stage_b"]["l3"] == cfg["no_cons_T"]["stage_b"]["l4"] == 0.0
    assert cfg["top_only"]["data"]["preprocess"]["weights"] == "top"
    assert cfg["no_rescale"]["data"]["rescale"] is False
    recipe = C.load_config(C.CONFIG_DIR / "cpu_recipe.toml")
    assert recipe["stage_a"]["under_weight"] == 3.0
    plain = C.with_overrides(recipe, A.VARIANTS["no_under_weight"].overrides)
    assert plain["stage_a"]["under_weight"] == plain["stage_b"]["under_weight"] == 1.0
    # one budget: 10 steps split 6:4 like the stages, the warm-up scaled alike
    small = C.load_config(overrides=["stage_a.steps=60", "stage_b.steps=40",
                                     "optim.warmup_steps=20"])
    over = A.budget_overrides(small, 10, steps_per_epoch=5, rungs=4)
    resized = C.with_overrides(small, over)
    assert (resized["stage_a"]["steps"], resized["stage_b"]["steps"]) == (6, 4)
    assert resized["optim"]["warmup_steps"] == 2


@pytest.mark.slow
def test_ablate_cli_trains_and_evaluates_every_variant(tmp_path, capsys):
    from nmrladder.train.baselines import BASELINES

    train = tmp_path / "train.h5"
    simulate_ladders(4, 3, 1024, 2.0, 10.0, seed=1).save(train)
    test = tmp_path / "test.h5"
    simulate_ladders(3, 3, 1024, 2.0, 10.0, seed=2).save(test)
    val = tmp_path / "val.h5"
    simulate_ladders(2, 3, 1024, 2.0, 10.0, seed=3).save(val)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "abl"
    args = ["ablate", "--config", str(config), "--data", str(train), "--val", str(val),
            "--test", f"t10={test}", "--out", str(out), "--steps", "5", "--no-progress"]
    assert main(args) == 0
    table = (out / "ablation.md").read_text()
    for name in A.VARIANTS:
        assert f"| {name} " in table
        cfg = tomllib.loads((out / "runs" / name / "config.toml").read_text())
        # the shared budget: every variant trains 5 steps (3 + 2, the stages' 6:4; the
        # variant that sets stage B's length itself has its own split of the same 5)
        split = (cfg["stage_a"]["steps"], cfg["stage_b"]["steps"])
        assert split == ((0, 5) if name == "with_stage_b" else (3, 2)), (name, split)
        assert (out / "runs" / name / "model.safetensors").is_file()
    for method in ("noisy input", *BASELINES):
        assert f"| {method} " in table
    assert "gain dB (P)" in table and "t10" in table
    assert (out / "evaluation" / "report.md").is_file()
    # a second call reuses the finished runs (no training) and rewrites the table
    capsys.readouterr()
    assert main([*args, "--variants", "full,no_curv"]) == 0
    printed = capsys.readouterr().out
    assert "full: reusing the finished run" in printed and "no_curv: reusing" in printed
    assert "| no_rescale " not in (out / "ablation.md").read_text()


def test_unknown_variant_is_refused(tmp_path):
    with pytest.raises(InputError, match="unknown ablation variant"):
        A.run_ablation(C.load_config(), [], {}, tmp_path, variants=["nope"])
