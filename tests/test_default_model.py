"""The shipped model (runtime/models/default.onnx and its int8 copy default.int8.onnx, which
the CPU backend runs): it loads through Denoiser.default(), describes itself, and denoises
held-out simulated spectra (the simulator's truth is the oracle) at every length and
normalisation the runtime promises; the int8 copy stays within its budget of float32."""

import numpy as np
import pytest

from nmrladder.runtime import Denoiser
from nmrladder.runtime.denoiser import default_model_path

pytest.importorskip("nmrladder.train.simulate")
from nmrladder.train.metrics import error_snr_db  # noqa: E402
from nmrladder.train.simulate import simulate_ladders  # noqa: E402


@pytest.fixture(scope="module")
def denoiser():
    return Denoiser.default(threads=2)


def test_default_model_is_shipped_and_self_describing(denoiser):
    assert default_model_path("ort").name == "default.int8.onnx"
    assert default_model_path("ort-cuda").name == "default.onnx"
    info = denoiser.info
    assert info.extra["precision"] == "int8"
    assert info.input_scaling == "robust_noise_v1"
    assert info.min_length <= 2048 and info.max_length >= 131072
    assert info.model_config["stem_stride"] == 4
    assert info.checkpoint_sha256 and info.training_data


def _gain(denoiser, ladders, normalise=None):
    x = ladders.x[:, 0].astype(np.float64)
    # x * norm_scale + norm_offset = the truth moved by the rung's drift, plus noise
    truth = np.stack([
        (ladders.shifted_truth(i)[0] - ladders.norm_offset[i, 0]) / ladders.norm_scale[i, 0]
        for i in range(len(ladders))
    ])
    if normalise is not None:
        x, truth = normalise(x), normalise(truth, like=ladders.x[:, 0].astype(np.float64))
    y = denoiser.denoise(x.astype(np.float32))
    return np.mean([error_snr_db(y[i], truth[i]) - error_snr_db(x[i], truth[i])
                    for i in range(len(x))])


def test_default_model_denoises_held_out_spectra(denoiser):
    # Seeds far from the training sets' (scripts/simulate_sets.sh: 100-400).
    ladders = simulate_ladders(6, 2, 16384, 2.0, 10.0, 31337)
    assert _gain(denoiser, ladders) > 10.0  # measured: ~16 dB (docs/default-model.md)


@pytest.mark.parametrize("length", [2048, 5000, 65536])
def test_default_model_any_length_and_scale(denoiser, length):
    ladders = simulate_ladders(3, 2, length, 2.0, 10.0, 4242)

    def times_1e6(values, like=None):
        return values * 1e6  # raw-intensity units: the output follows the input's units

    plain, scaled = _gain(denoiser, ladders), _gain(denoiser, ladders, times_1e6)
    assert plain > 6.0
    assert abs(plain - scaled) < 0.05  # the robust scaling makes the units irrelevant


def test_int8_copy_stays_within_its_budget_of_float32(denoiser):
    from nmrladder.runtime.scaling import to_model_input

    float32 = Denoiser(default_model_path("ort-cuda"), threads=2)  # the parity-checked model
    budget = denoiser.info.extra["int8_budget_sigma"]
    ladders = simulate_ladders(4, 2, 16384, 2.0, 5.0, 2718)  # held out: not calibration data
    z, _, _ = to_model_input(ladders.x.reshape(-1, 16384), denoiser.info.length_multiple)
    # both outputs are in the input's noise sigmas
    departure = np.sqrt(np.mean(np.square(denoiser.session.run(z) - float32.session.run(z))))
    assert 1e-4 < departure <= 1.5 * budget  # measured 0.01 (budget 0.02)
