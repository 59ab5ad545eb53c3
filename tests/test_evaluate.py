"""Evaluation protocol, report, model loading and the ``nmrladder evaluate`` verb."""

import json
import math

import numpy as np
import pytest

from nmrladder.runtime import preprocess
from nmrladder.runtime.errors import InputError, ModelError
from nmrladder.runtime.scaling import from_model_output, to_model_input
from nmrladder.train import evaluate, metrics
from nmrladder.train.baselines import SavitzkyGolay
from nmrladder.train.simulate import fourier_shift_real, simulate_ladders

LENGTH = 4096
SIM = {"phase0_deg": 0.0, "phase1_deg": 0.0}


class Zero:
    def denoise(self, x):
        return np.zeros_like(x, dtype=np.float32)


class Identity:
    def denoise(self, x):
        return np.asarray(x, dtype=np.float32)


@pytest.fixture(scope="module")
def ladders():
    return simulate_ladders(8, 3, LENGTH, 2.0, 8.0, seed=31, **SIM)


@pytest.fixture(scope="module")
def items(ladders):
    return evaluate.prepare_items(ladders, "sim")


# --------------------------------------------------------------------------- protocol


def test_truth_in_rung0_frame_leaves_only_the_noise(ladders, items):
    for item in items:
        i = item.index
        noise = item.noisy - item.truth
        assert abs(np.mean(noise)) < 0.1 * item.sigma_true
        assert np.std(noise) == pytest.approx(item.sigma_true, rel=0.1)
        # the lines are the truth minus a smooth baseline and the normalisation offset
        rest = item.truth - item.lines
        assert np.ptp(rest) <= 0.05 / abs(ladders.norm_scale[i, 0])
        # the estimated noise of rung 0 (from the preprocessing) is the simulator's
        assert item.sigma == pytest.approx(item.sigma_true, rel=0.15)


def test_pseudo_truth_and_masks_move_to_rung0_with_the_right_sign(ladders, items):
    batch = preprocess.preprocess_ladders(ladders.x)
    for item in items:
        result = batch[item.index]
        right = metrics.error_snr_db(item.s_hat, item.truth, item.region)
        d = float(result.shifts[0])
        wrong = fourier_shift_real(result.s_hat.astype(np.float64), -d) / result.scales[0]
        wrong = metrics.error_snr_db(wrong + result.offsets[0], item.truth, item.region)
        noisy = metrics.error_snr_db(item.noisy, item.truth, item.region)
        # s_hat (all rungs) is cleaner than rung 0, far cleaner over the whole spectrum ...
        assert right > noisy + 2
        assert (metrics.error_snr_db(item.s_hat, item.truth)
                > metrics.error_snr_db(item.noisy, item.truth) + 8)
        assert right > wrong + 5 or abs(d) < 0.5  # ... once shifted the right way
        # the peak mask, rolled to rung 0, covers the tall lines of rung 0
        tall = item.lines > 0.5 * item.lines.max()
        assert item.peak_mask[tall].mean() > 0.95
        assert not (item.base_mask & tall).any()


def test_peak_regions_leave_out_the_solvent_line(items):
    with_solvent = [it for it in items if np.isfinite(it.solvent_ppm)]
    assert with_solvent and len(with_solvent) < len(items)
    for item in with_solvent:
        at = int(round(item.solvent_index))
        # the solvent is the tallest line, where rung 0 holds it, and left out of P
        assert abs(int(np.argmax(item.lines)) - at) <= 1
        assert not item.region[at - 3:at + 4].any()
        assert item.region.any()  # the solute lines stay
    for item in items:
        if not np.isfinite(item.solvent_ppm):
            expected = metrics.peak_regions(item.lines, item.sigma_true, 1.0, 1)
            np.testing.assert_array_equal(item.region, expected)


def test_all_zero_output_gains_on_the_whole_spectrum_but_loses_on_the_peaks():
    # a sparse spectrum at low SNR: the noise power of all points exceeds the signal's
    lad = simulate_ladders(6, 3, LENGTH, 2.0, 3.0, seed=32, normalisation="max",
                           solvent_probability=0.0, **SIM)
    report = evaluate.evaluate_denoisers({"zero": Zero()}, lad, baselines=False)
    zero = report.summary["test"]["zero"]
    assert zero["gain_db"] > 10.0
    assert zero["gain_db_peaks"] < -1.0
    assert np.all(report.samples["test"]["zero"]["gain_db"] > 0)
    assert np.all(report.samples["test"]["zero"]["gain_db_peaks"] < 0)
    assert zero["false_peaks"] == 0 and np.isnan(zero["precision"])  # nothing detected


def test_identity_denoiser_scores_exactly_like_the_input(ladders):
    report = evaluate.evaluate_denoisers({"identity": Identity()}, {"sim": ladders},
                                         baselines=False)
    ident = report.samples["sim"]["identity"]
    noisy = report.samples["sim"][evaluate.INPUT_NAME]
    for key in ("gain_db", "gain_db_peaks", "gain_db_shat", "gain_db_peaks_shat"):
        np.testing.assert_array_equal(ident[key], 0.0)
    for key in evaluate.METRICS:
        np.testing.assert_array_equal(ident[key], noisy[key])
    assert report.summary["sim"]["identity"]["l2"] == pytest.approx(1.0, rel=0.1)
    assert report.methods == [evaluate.INPUT_NAME, "identity"]


def test_report_with_validation_set_baselines_and_files(ladders, tmp_path):
    val = simulate_ladders(4, 3, LENGTH, 2.0, 8.0, seed=33, **SIM)
    other_test = simulate_ladders(4, 3, LENGTH, 2.0, 8.0, seed=34, **SIM)
    report = evaluate.evaluate_denoisers(
        {"identity": Identity()}, {"a": ladders, "b": other_test}, val,
        plot_dir=tmp_path / "plots", n_plots=1,
    )
    # the baselines are tuned on the validation set alone: the same parameters as tuning
    # there directly, whatever the test sets
    direct = SavitzkyGolay.tune(evaluate.prepare_items(val, "v"))
    assert report.baselines["Savitzky-Golay"]["params"] == direct.params()
    alone = evaluate.evaluate_denoisers({}, other_test, val, n_plots=0)
    assert alone.baselines == report.baselines
    assert list(report.summary) == ["a", "b"]
    assert report.methods[:2] == [evaluate.INPUT_NAME, "identity"]
    assert len(report.methods) == 5
    assert report.sample_index["a"].tolist() == list(range(len(ladders)))
    assert not report.notes
    table = report.table()
    assert "Savitzky-Golay" in table and "against the pseudo-truth s_hat" in table
    assert "|" in report.table(markdown=True)
    data = json.loads(report.to_json(), parse_constant=lambda c: pytest.fail(f"JSON {c}"))
    assert set(data["summary"]["b"]) == set(report.methods)
    files = report.save(tmp_path / "out")
    assert sorted(p.name for p in files.values()) == [
        "report.json", "report.md", "samples.csv", "summary.csv"]
    rows = files["samples_csv"].read_text().splitlines()
    assert len(rows) == 1 + 5 * (len(ladders) + len(other_test))
    pngs = sorted(p.name for p in (tmp_path / "plots").rglob("*.png"))
    assert len(pngs) == 2 * 4 * 2  # per test set and method (not the input): full and zoom


def test_without_validation_the_first_set_is_split(ladders):
    report = evaluate.evaluate_denoisers({}, ladders, n_plots=0)
    assert len(report.sample_index["test"]) == len(ladders) - 2
    assert report.sample_index["test"].tolist() == list(range(2, len(ladders)))
    assert "first 2 ladders" in report.notes[0]
    assert report.baselines["line broadening"]["n_val"] == 2


def test_bad_inputs_name_the_problem(ladders, tmp_path):
    with pytest.raises(InputError, match="no such ladder file"):
        evaluate.evaluate_denoisers({}, tmp_path / "missing.h5")
    with pytest.raises(InputError, match="reserved"):
        evaluate.evaluate_denoisers({"noisy input": Identity()}, ladders)

    class Short:
        def denoise(self, x):
            return x[:, :-1]

    with pytest.raises(InputError, match="'short' returned shape"):
        evaluate.evaluate_denoisers({"short": Short()}, ladders, baselines=False)


def test_a_ladder_the_preprocessing_refuses_is_skipped_with_a_note(ladders):
    import copy

    broken = copy.deepcopy(ladders)
    broken.x[2] = 1.0  # constant rungs: no noise to measure
    report = evaluate.evaluate_denoisers({"identity": Identity()}, broken, baselines=False)
    assert report.notes == [
        "test[2] skipped: test[2]: rung 0 is constant (value 1); no noise or signal to use"
    ]
    assert f"{len(ladders) - 1} spectra" in report.table()  # the other ladders are evaluated


# --------------------------------------------------------------------------- torch model


def _tiny_run(path):
    """A run directory as training writes it, with an untrained tiny model."""
    from safetensors.torch import save_file

    from nmrladder.train.model import ModelConfig, build_model

    config = ModelConfig(depth=2, widths=(4, 8), dilations=(1, 2), groups=4, kernel_size=5)
    model = build_model(config)
    path.mkdir(parents=True, exist_ok=True)
    lines = ["[model]"]
    for key, value in config.to_dict().items():
        lines.append(f"{key} = {json.dumps(value)}")
    (path / "config.toml").write_text("\n".join(lines) + "\n")
    save_file(model.state_dict(), str(path / "model.safetensors"))
    return model


def test_load_run_round_trip_and_manual_forward(tmp_path, ladders):
    import torch

    from nmrladder.train.inference import TorchDenoiser, load_denoiser, load_run

    original = _tiny_run(tmp_path / "run")
    model, config = load_run(tmp_path / "run")
    assert config["model"] == original.config.to_dict()
    for key, value in original.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)

    x = ladders.x[:3, 0, :1000]  # not a multiple of 4: padded and cropped
    z, centers, sigmas = to_model_input(x, 4)
    with torch.no_grad():
        manual = from_model_output(original(torch.from_numpy(z)).numpy(), centers, sigmas, 1000)
    model.train()
    denoiser = TorchDenoiser(model, batch_size=2, threads=1)
    out = denoiser.denoise(x)
    assert model.training  # its mode comes back
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, manual, rtol=1e-5, atol=1e-6 * np.abs(manual).max())
    np.testing.assert_allclose(denoiser.denoise(x[1]), out[1], rtol=1e-5, atol=1e-6)
    assert isinstance(load_denoiser(tmp_path / "run"), TorchDenoiser)


def test_bad_runs_give_clear_errors(tmp_path):
    from nmrladder.train.inference import load_denoiser, load_run

    with pytest.raises(ModelError, match="no such run directory"):
        load_run(tmp_path / "nothing")
    run = tmp_path / "run"
    _tiny_run(run)
    (run / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="unreadable safetensors"):
        load_run(run)
    (run / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.safetensors is missing"):
        load_run(run)
    other = tmp_path / "other"
    _tiny_run(other)
    (run / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    config = (run / "config.toml").read_text().replace("widths = [4, 8]", "widths = [8, 8]")
    (run / "config.toml").write_text(config)
    with pytest.raises(ModelError, match="do not match"):
        load_run(run)
    (run / "config.toml").write_text("[model\n")
    with pytest.raises(ModelError, match="not valid TOML"):
        load_run(run)
    (run / "config.toml").write_text("[model]\ndepth_of_field = 3\n")
    with pytest.raises(ModelError, match="bad \\[model\\] table"):
        load_run(run)
    with pytest.raises(ModelError, match="no such ONNX file"):
        load_denoiser(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="not a run directory"):
        load_denoiser(tmp_path / "weights.pt")


def test_onnx_goes_to_the_runtime_denoiser(tmp_path, monkeypatch):
    import nmrladder.runtime
    from nmrladder.train.inference import load_denoiser

    (tmp_path / "model.onnx").write_bytes(b"onnx")
    calls = []

    class FakeDenoiser:
        def __init__(self, path, batch_size, threads):
            calls.append((path, batch_size, threads))

    monkeypatch.setattr(nmrladder.runtime, "Denoiser", FakeDenoiser, raising=False)
    assert isinstance(load_denoiser(tmp_path / "model.onnx", batch_size=4), FakeDenoiser)
    assert calls == [(tmp_path / "model.onnx", 4, None)]


def test_cli_evaluates_a_run(tmp_path, capsys):
    from nmrladder.cli import main

    run = tmp_path / "run"
    _tiny_run(run)
    simulate_ladders(6, 3, 2048, 2.0, 8.0, seed=35, **SIM).save(tmp_path / "t" / "ladders.h5")
    out = tmp_path / "eval"
    status = main(["evaluate", str(run), "--data", f"small={tmp_path / 't'}",
                   "--plots", "1", "--out", str(out), "--residual-lb"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "no --val" in printed and "'small'" in printed and "run" in printed
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    assert "run + residual LB" in (out / "report.md").read_text()
    # the model, the model + residual line broadening and three baselines
    assert len(list((out / "plots").rglob("*.png"))) == 10
    status = main(["evaluate", str(tmp_path / "missing"), "--data", str(tmp_path / "t")])
    assert status == 2
    assert "not a run directory" in capsys.readouterr().err


def test_metric_names_are_documented():
    assert all(isinstance(text, str) and text for text in evaluate.METRICS.values())
    assert math.isclose(evaluate.REGION_FRACTION, 1.0)


def test_limit_takes_the_first_ladders(ladders):
    items = evaluate.prepare_items(ladders, "sim", limit=3)
    assert [item.index for item in items] == [0, 1, 2]
    np.testing.assert_array_equal(items[2].noisy, ladders.x[2, 0])
