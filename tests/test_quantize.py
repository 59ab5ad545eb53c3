"""int8 copies for CPUs (export/quantize.py): the convolutions chosen are the least sensitive,
the copy stays within its budget of the float32 model (oracles: the torch model and its
float32 ONNX), it says what it is, and bad requests are refused by name."""

import json

import numpy as np
import onnx
import pytest
import torch

from nmrladder.cli import main
from nmrladder.export.onnx_export import export_onnx, read_onnx_info
from nmrladder.export.parity import realistic_inputs, torch_runner
from nmrladder.export.quantize import quantize_int8
from nmrladder.runtime import Denoiser, InputError, ModelError
from nmrladder.runtime.sessions import resolve_artefact
from nmrladder.train.model import ModelConfig, build_model

CONFIG = ModelConfig(depth=3, widths=(8, 16, 32), dilations=(1, 2, 4))
SMALL = dict(spectra=4, length=1024, progress=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(CONFIG).eval()
    path = tmp_path_factory.mktemp("int8") / "model.onnx"
    export_onnx(model, path, max_length=32768, parity=False)
    return model, path


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    """Quantized with a budget that fits about half the convolutions (found from a first
    pass that measures every one)."""
    _, path = exported
    scratch = tmp_path_factory.mktemp("probe")
    everything = quantize_int8(path, scratch / "all.onnx", budget_sigma=1e6, **SMALL)
    ranked = sorted(everything.sensitivity_sigma.values())
    budget = float(np.sqrt(np.sum(np.square(ranked[: len(ranked) // 2])))) * 1.01
    destination = path.with_name("model.int8.onnx")
    report = quantize_int8(path, destination, budget_sigma=budget,
                           check_lengths=(2048,), **SMALL)
    return destination, report, budget


def _rms(a, b) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(a, np.float64) - b))))


def test_least_sensitive_convolutions_are_chosen_within_the_budget(quantized):
    _, report, budget = quantized
    chosen = set(report.quantized)
    rest = set(report.sensitivity_sigma) - chosen
    assert chosen and rest
    assert max(report.sensitivity_sigma[n] for n in chosen) <= min(
        report.sensitivity_sigma[n] for n in rest)
    assert report.rms_sigma <= budget and report.worst_rms_sigma <= budget


def test_graph_quantizes_exactly_the_chosen_convolutions(quantized):
    destination, report, _ = quantized
    graph = onnx.load(str(destination)).graph
    made_by = {out: node for node in graph.node for out in node.output}
    int8 = set()
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            weight_source = made_by.get(node.input[1])
            if weight_source is not None and weight_source.op_type == "DequantizeLinear":
                int8.add(node.name)
    assert int8 == set(report.quantized)


def test_output_stays_near_the_torch_model_on_new_spectra(exported, quantized):
    model, path = exported
    destination, _, budget = quantized
    info = read_onnx_info(path)
    z = realistic_inputs(4, 4096, info.length_multiple, seed=99)  # not calibration data
    expected = torch_runner(model)(z)
    denoiser = Denoiser(destination, threads=1)
    got = denoiser.session.run(z)
    departure = _rms(got, expected)
    assert 1e-6 < departure <= 2 * budget  # int8 really runs, and stays near float32
    float32 = Denoiser(path, threads=1).session.run(z)
    assert _rms(float32, expected) < 1e-5


def test_copy_says_what_it_is_and_report_is_saved(quantized):
    destination, report, budget = quantized
    extra = read_onnx_info(destination).extra
    assert extra["precision"] == "int8"
    assert extra["int8_convolutions"] == report.quantized
    assert extra["int8_budget_sigma"] == pytest.approx(budget)
    saved = json.loads(destination.with_name(destination.name + ".quant.json").read_text())
    assert saved["quantized"] == report.quantized
    assert [c["length"] for c in saved["checks"]] == [2048]


def test_bad_requests_are_refused(exported, quantized, tmp_path):
    _, path = exported
    destination, _, _ = quantized
    with pytest.raises(InputError, match="already quantized"):
        quantize_int8(destination, tmp_path / "again.onnx", **SMALL)
    with pytest.raises(InputError, match="budget_sigma"):
        quantize_int8(path, tmp_path / "zero.onnx", budget_sigma=0.0, **SMALL)
    with pytest.raises(ModelError, match="no convolution fits"):
        quantize_int8(path, tmp_path / "none.onnx", budget_sigma=1e-12, **SMALL)
    assert not (tmp_path / "none.onnx").exists()
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        quantize_int8(tmp_path / "junk.onnx", tmp_path / "out.onnx", **SMALL)


def test_cpu_backend_takes_the_int8_copy_of_an_export_folder(quantized):
    destination, _, _ = quantized
    folder = destination.parent
    assert resolve_artefact(folder, "ort") == destination
    assert resolve_artefact(folder, "ort-cuda") == folder / "model.onnx"


def test_cli_writes_the_copy_beside_the_model(exported, tmp_path):
    _, path = exported
    source = tmp_path / "net.onnx"
    source.write_bytes(path.read_bytes())
    assert main(["quantize", str(source), "--budget", "1e6", "--no-progress"]) == 0
    assert read_onnx_info(tmp_path / "net.int8.onnx").extra["precision"] == "int8"
    assert main(["quantize", str(tmp_path / "missing.onnx")]) == 2


def test_export_writes_the_int8_copy_beside_the_onnx(exported, tmp_path):
    from nmrladder.export.exporter import export_run
    from nmrladder.train.checkpoint import save_weights
    from nmrladder.train.config import dumps

    model, _ = exported
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dumps({"model": CONFIG.to_dict()}))
    save_weights(model, run / "model.safetensors", step=1)
    with pytest.raises(InputError, match="add 'onnx'"):
        export_run(run, tmp_path / "out", formats=("onnx-int8",))
    summary = export_run(run, tmp_path / "out", formats=("onnx", "onnx-int8"),
                         max_length=4096, int8_budget=1e6)
    assert summary.int8 == tmp_path / "out" / "model.int8.onnx"
    assert read_onnx_info(summary.int8).extra["int8_convolutions"] == summary.quantization.quantized
    assert "onnx-int8:" in "\n".join(summary.lines())


def test_export_cli_writes_what_the_torch_model_computes(exported, tmp_path, capsys):
    from nmrladder.train.checkpoint import save_weights
    from nmrladder.train.config import dumps

    model, _ = exported
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text(dumps({"model": CONFIG.to_dict()}))
    save_weights(model, run / "model.safetensors", step=1)
    out = tmp_path / "out"
    argv = ["export", str(run), "--out", str(out), "--formats", "onnx,pt2", "--name", "net",
            "--min-length", "512", "--max-length", "4096"]
    assert main(argv) == 0
    assert "parity" in capsys.readouterr().out.lower()
    info = read_onnx_info(out / "net.onnx")
    assert (info.min_length, info.max_length) == (512, 4096)
    assert ModelConfig.from_dict(info.model_config) == CONFIG
    assert (out / "net.pt2").is_file()
    z = realistic_inputs(3, 1024, info.length_multiple, seed=4)
    expected = torch_runner(model)(z)
    got = Denoiser(out / "net.onnx", threads=1).session.run(z)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    assert main(["export", str(tmp_path / "no-run"), "--out", str(out)]) == 2
    assert "no-run" in capsys.readouterr().err
