"""The shipped model (runtime/models/default.onnx): it loads through Denoiser.default(),
describes itself, and denoises held-out simulated spectra (the simulator's truth is the
oracle) at every length and normalisation the runtime promises."""

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
    assert default_model_path().is_file()
    info = denoiser.info
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
