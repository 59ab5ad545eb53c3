"""The per-point confidence band (runtime/confidence.py): its arithmetic against a plain NumPy
restatement, its re-noised copies against the measured noise, its independence of the batch,
and its coverage of the simulator's truth with the shipped model (the calibration's claim)."""

import numpy as np
import pytest

from nmrladder.runtime import Denoiser, InputError
from nmrladder.runtime import confidence as conf
from nmrladder.train.evaluate import prepare_items
from nmrladder.train.simulate import simulate_ladders


def test_renoised_copies_carry_the_measured_noise_and_their_own_seed():
    y = np.tile(np.linspace(0.0, 5.0, 20000), (2, 1))
    sigmas = np.array([0.5, 2.0])
    seeds = conf.row_seeds(y.astype(np.float32) + np.array([[0.0], [1.0]], dtype=np.float32))
    copies = conf.renoised(y, sigmas, 3, seeds)
    assert copies.shape == (6, 20000) and copies.dtype == np.float32
    noise = copies.reshape(2, 3, -1) - y[:, None]
    np.testing.assert_allclose(noise.std(axis=-1), sigmas[:, None] * np.ones((1, 3)), rtol=0.03)
    assert abs(np.corrcoef(noise[0, 0], noise[0, 1])[0, 1]) < 0.05  # independent draws
    assert np.array_equal(copies, conf.renoised(y, sigmas, 3, seeds))  # seeded
    assert conf.row_seeds(y[:1]) == conf.row_seeds(y[1:])  # a row's seed is its bytes'
    assert seeds[0] != seeds[1]


def test_the_band_is_the_scaled_root_of_spread_plus_excess():
    rng = np.random.default_rng(0)
    length, k = 512, 3
    y = np.zeros((1, length))
    y[0, 200:210] = 3.0  # a weak core
    y[0, 300:305] = 20.0  # a strong one
    x = y + rng.standard_normal((1, length))
    x[0, 400:403] += 6.0  # something the output removed
    outs = y + 0.3 * rng.standard_normal((k, length))
    scales = (1.5, 2.0, 3.0)
    got = conf.band(x, y, outs, np.zeros(1), np.ones(1), scales=scales)
    # the oracle: the same definition in plain NumPy (edge-repeated moving averages)
    w = conf.SMOOTH_POINTS
    kernel = np.ones(w) / w

    def smooth(v):
        return np.convolve(np.pad(v, w // 2, mode="edge"), kernel, mode="valid")

    removed = x[0] - y[0]
    noise = 1.4826 * np.median(np.abs(removed[::4] - np.median(removed[::4])))
    excess = np.maximum(smooth(removed**2) - noise**2, 0.0)
    spread = smooth(np.mean((outs - y) ** 2, axis=0))
    factor = np.where(y[0] > conf.STRONG_LEVEL, 3.0, np.where(y[0] > conf.CORE_LEVEL, 2.0, 1.5))
    np.testing.assert_allclose(got[0], factor * np.sqrt(spread + excess), rtol=1e-5)
    assert got[0, 401] > 2 * got[0, 100]  # the removed bump widens the band


def test_the_band_does_not_depend_on_the_batch(tiny_model_dir):
    x = simulate_ladders(3, 2, 4096, 2.0, 8.0, seed=11).x[:, 0]
    den = Denoiser(tiny_model_dir / "model.onnx", threads=1, strength="auto")
    y, sigma = den.denoise(x, return_confidence=True)
    assert sigma.shape == x.shape and np.all(sigma >= 0)
    alone_y, alone_sigma = den.denoise(x[1], return_confidence=True)
    np.testing.assert_allclose(alone_y, y[1], rtol=0, atol=1e-4 * np.abs(x).max())
    np.testing.assert_allclose(alone_sigma, sigma[1], rtol=1e-3, atol=1e-4 * np.abs(x).max())
    with pytest.raises(InputError, match="copies"):
        den.denoise(x, return_confidence=True, copies=0)


@pytest.mark.parametrize(("family", "snr"), [("1h", 10.0), ("13c", 20.0)])
def test_the_truth_lies_within_two_sigma_at_90_to_98_percent(family, snr):
    den = Denoiser.default(threads=1, strength="auto")
    items = prepare_items(simulate_ladders(8, 3, 16384, 2.0, snr, 424242, family=family))
    noisy = np.stack([item.noisy for item in items])
    y, sigma, reports = den.denoise(noisy, return_confidence=True, return_report=True)
    assert len(reports) == len(items)
    inside = np.abs(y - np.stack([item.truth for item in items])) <= 2 * sigma
    region = np.stack([item.region for item in items])
    assert 0.90 <= inside[region].mean() <= 0.98
    assert 0.90 <= inside[~region].mean() <= 0.98
