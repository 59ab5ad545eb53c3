"""The strength dial and ``strength="auto"`` (runtime/strength.py) in the core and the API.

Oracles: the input and the network's output themselves (the dial's end points, bit for bit),
the residual step (runtime/residual.py, tested against the FID's exponential in
test_residual.py) at the points of the path it defines, analytic Lorentzian lines with one cut
out of a fake network's output (the truth is known), and pure noise."""

import numpy as np
import pytest

from nmrladder.runtime import Denoiser, InputError
from nmrladder.runtime.core import Core
from nmrladder.runtime.residual import restore_residual
from nmrladder.runtime.strength import FLAG_SIGMAS, dial, strength_of_factor
from nmrladder.train.simulate import simulate_ladders

LENGTH, MULTIPLE = 4096, 16
#: (position, height in noise sigmas, FWHM points) of the lines the fake network keeps
KEPT = ((600.0, 40.0, 4.0), (1500.0, 25.0, 4.0), (1530.0, 25.0, 4.0), (3300.0, 60.0, 4.0))
CUT = (2500.0, 9.0, 4.0)  # the line it removes


def lorentzian(position: float, height: float, fwhm: float) -> np.ndarray:
    u = (np.arange(LENGTH) - position) / (fwhm / 2)
    return height / (1 + u * u)


def spectra(n: int, seed: int, lines=KEPT, cut=CUT, level=5.0, sigma=0.5):
    """(noisy [n, L], truth [n, L], the truth without the cut line [n, L]); float32 inputs."""
    kept = level + sigma * sum(lorentzian(*line) for line in lines) if lines else level
    kept = np.broadcast_to(kept, (n, LENGTH)).astype(np.float64)
    truth = kept + (sigma * lorentzian(*cut) if cut else 0.0)
    noise = sigma * np.random.default_rng(seed).standard_normal((n, LENGTH))
    return (truth + noise).astype(np.float32), truth, kept


def fake_network(outputs: np.ndarray):
    """A network that answers ``outputs`` [N, L] (input units) whatever it is given: its z
    output is those, scaled like the input (the core maps them back)."""
    state = {}

    def network(z):
        prepared = state["prepared"]
        out = np.zeros_like(z)
        out[:, :LENGTH] = (outputs - prepared.centers[:, None]) / prepared.sigmas[:, None]
        return out

    return network, state


def through(core: Core, x: np.ndarray, outputs: np.ndarray, ppm=None):
    network, state = fake_network(outputs)
    prepared = state["prepared"] = core.prepare(x, threads=1)
    return core.finish_report(prepared, network(prepared.z), ppm)


def test_the_dials_end_points_are_the_input_and_the_network_bit_for_bit(tiny_model_dir):
    x = simulate_ladders(3, 2, LENGTH, 2.0, 8.0, seed=5).x[:, 0]
    plain = Denoiser(tiny_model_dir / "model.onnx", threads=1)
    network = plain.denoise(x)
    assert np.array_equal(plain.with_strength(0.0).denoise(x), x)
    assert np.array_equal(Denoiser(tiny_model_dir / "model.onnx", threads=1,
                                   strength=0).denoise(x), x)
    assert np.array_equal(plain.with_strength(1.0).denoise(x), network)
    assert np.array_equal(plain.with_strength(None).denoise(x), network)
    # one spectrum alone: the same end points
    assert np.array_equal(plain.with_strength(0).denoise(x[1]), x[1])


def test_strength_one_half_is_the_residual_step_and_the_path_follows_it():
    x, _, kept = spectra(2, seed=1)
    core = Core(MULTIPLE)
    y, _ = through(core, x, kept)  # the network's output as the core delivers it
    prepared = core.prepare(x, threads=1)
    scale = (prepared.centers, prepared.sigmas)
    half, _ = through(Core(MULTIPLE, strength=0.5), x, kept)
    assert np.array_equal(half, through(Core(MULTIPLE, residual_lb=0.5), x, kept)[0])
    assert np.array_equal(half, restore_residual(x, y, 0.5, scale))
    atol = 1e-5 * np.abs(x).max()
    for factor in (0.05, 0.25):  # residual_lb F <= 0.5 is strength F / (F + 0.5)
        got, _ = through(Core(MULTIPLE, strength=strength_of_factor(factor)), x, kept)
        np.testing.assert_allclose(got, restore_residual(x, y, factor, scale), rtol=0, atol=atol)
    for strength in (0.6, 0.9):  # above 1/2 the residual step fades out linearly
        factor, fade = dial(strength)
        assert fade == pytest.approx(2 * (1 - strength))
        expected = y + fade * (restore_residual(x, y, factor, scale) - y)
        got, _ = through(Core(MULTIPLE, strength=strength), x, kept)
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol)


def test_the_path_is_continuous():
    x, _, kept = spectra(1, seed=2)
    atol = 1e-3 * float(np.abs(x).max())

    def at(strength):
        return through(Core(MULTIPLE, strength=strength), x, kept)[0]

    for point in (0.0, 0.5, 1.0):
        near = min(max(point + (1e-6 if point < 1 else -1e-6), 0.0), 1.0)
        np.testing.assert_allclose(at(near), at(point), rtol=0, atol=atol)


def test_a_line_cut_out_of_the_output_is_flagged_and_given_back():
    x, truth, kept = spectra(3, seed=3)
    ppm = 10.0 - np.arange(LENGTH) * (10.0 / LENGTH)
    region = lorentzian(*CUT) > 1.0  # the cut line above the noise sigma
    # the network's output as delivered: flagged, the cut line found where it was
    network_out, network_reports = through(Core(MULTIPLE), x, kept, ppm)
    auto_out, reports = through(Core(MULTIPLE, strength="auto"), x, kept, ppm)
    for row, (plain, report) in enumerate(zip(network_reports, reports, strict=True)):
        for found in (plain, report):
            assert found.flagged and found.structure_sigma >= FLAG_SIGMAS
            assert abs(found.structure_index - CUT[0]) <= 2
            assert found.structure_ppm == ppm[found.structure_index]
            assert found.structure_height > 0  # a line removed, not one invented
        # auto gives it back: the line's region errs far less than the network's output ...
        lost = np.sum((network_out[row] - truth[row])[region] ** 2)
        kept_error = np.sum((auto_out[row] - truth[row])[region] ** 2)
        assert kept_error < 0.25 * lost
        assert report.strength < 0.5 and report.regions_restored >= 1
        assert report.remaining_sigma < FLAG_SIGMAS < plain.remaining_sigma
        # ... and leaves the lines the network kept at the residual step's strength
        assert report.strength_mean > 0.45


def test_pure_noise_gives_a_flat_output_and_no_flag():
    x, truth, _ = spectra(4, seed=4, lines=(), cut=None)
    out, reports = through(Core(MULTIPLE, strength="auto"), x, truth)  # a perfect network
    np.testing.assert_allclose(out, truth, rtol=0, atol=1e-5)
    assert not any(report.flagged for report in reports)
    assert all(report.strength == 1.0 for report in reports)


def test_pure_noise_through_the_shipped_model_stays_flat():
    den = Denoiser.default(threads=1, strength="auto")
    sigma = 3.0
    x = (100.0 + sigma * np.random.default_rng(6).standard_normal((4, 16384))).astype(np.float32)
    y, reports = den.denoise(x, return_report=True)
    assert np.all(np.std(y, axis=1) < 0.2 * sigma)  # the noise is gone, nothing came back
    assert not any(report.flagged for report in reports)


def test_auto_does_not_depend_on_the_batch():
    x, _, kept = spectra(3, seed=7)
    core = Core(MULTIPLE, strength="auto")
    together, reports = through(core, x, kept)
    for row in range(3):
        alone, (report,) = through(core, x[row : row + 1], kept[row : row + 1])
        np.testing.assert_allclose(alone[0], together[row], rtol=0, atol=1e-6 * np.abs(x).max())
        assert report.strength == reports[row].strength


@pytest.mark.parametrize("strength", [1.5, -0.1, "fast", float("nan"), True, [0.5]])
def test_bad_strengths_are_refused(strength):
    with pytest.raises(InputError, match="strength"):
        Core(MULTIPLE, strength=strength)


def test_strength_and_residual_lb_are_one_or_the_other(tiny_model_dir):
    with pytest.raises(InputError, match="give one"):
        Core(MULTIPLE, residual_lb=0.5, strength=0.3)
    with pytest.raises(InputError, match="give one"):
        Denoiser(tiny_model_dir / "model.onnx", residual_lb=0.5, strength="auto")
    den = Denoiser(tiny_model_dir / "model.onnx", strength="auto")
    assert den.with_residual(0.5).strength is None and den.with_residual(0.5).residual_lb == 0.5
    assert den.with_strength("0.25").strength == 0.25 and den.strength == "auto"
