"""Provenance of a trained model: RUN/provenance.json and the artefact's metadata."""

import json
import subprocess
from pathlib import Path

import pytest

from nmrladder.export.onnx_export import read_onnx_info
from nmrladder.export.quantize import quantize_int8
from nmrladder.train.model import ModelConfig, build_model
from nmrladder.train.provenance import git_state, read_provenance, record_run
from nmrladder.train.simulate import simulate_to_file

CONFIG = ModelConfig(depth=3, widths=(8, 16, 32), dilations=(1, 2, 4))
REPO = Path(__file__).resolve().parents[1]


def git(*args):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    simulate_to_file(folder / "ladders.h5", 3, 2, 512, (1.5, 2.5), 7.0, 17, progress=False,
                     family="31p")
    return folder


def test_git_state_is_the_checkout_s():
    state = git_state(REPO)
    if not git("rev-parse", "HEAD"):
        pytest.skip("not a git checkout")
    assert state["commit"] == git("rev-parse", "HEAD")
    assert state["dirty"] == bool(git("status", "--porcelain", "--untracked-files=no"))


def test_record_names_the_data_recipe_and_keeps_it_on_resume(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    record_run(run, [data], data, argv=["train", "--data", str(data)])
    first = read_provenance(run)
    recipe = first["data"][0]
    assert (recipe["seed"], recipe["snr"], recipe["samples"], recipe["rungs"]) == (17, 7.0, 3, 2)
    assert recipe["T"] == [1.5, 2.5] and recipe["options"]["family"] == "31p"
    assert first["command"] == f"nmrladder train --data {data}"
    record_run(run, [data], None, argv=["train", "--resume"])
    again = read_provenance(run)
    assert again["data"] == first["data"]
    assert again["resumed"][0]["command"] == "nmrladder train --resume"


def test_an_export_carries_the_provenance_and_the_config(data, tmp_path):
    from nmrladder.export.exporter import export_run
    from nmrladder.train.checkpoint import save_weights
    from nmrladder.train.config import dumps

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dumps({"model": CONFIG.to_dict()}))
    save_weights(build_model(CONFIG).eval(), run / "model.safetensors", step=1)
    record_run(run, [data], None, argv=["train"])
    summary = export_run(run, tmp_path / "out", formats=("onnx",), max_length=4096,
                         parity=False)
    int8 = tmp_path / "out" / "model.int8.onnx"
    quantize_int8(summary.onnx, int8, budget_sigma=1e6, spectra=4, length=1024, progress=False)
    for path in (summary.onnx, int8):
        provenance = read_onnx_info(path).extra["provenance"]
        assert provenance["data"] == json.loads((run / "provenance.json").read_text())["data"]
        assert provenance["config"]["model"]["widths"] == list(CONFIG.widths)
