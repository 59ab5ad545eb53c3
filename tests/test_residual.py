"""The residual step (runtime/residual.py): the amplitude re-fit, then y + LB(x - y), in the
API, the batch job and the CLI. Oracles: the least-squares gain of a line against its scaled
copy (analytic), the exponential multiplication of a line's FID (what line broadening is),
the simulator's truth, and the plain denoiser followed by the step."""

import json

import numpy as np
import pytest

from nmrladder.cli import main
from nmrladder.runtime import Denoiser, InputError
from nmrladder.runtime.pipeline import DenoiseJob
from nmrladder.runtime.residual import (
    FALLBACK_POINTS,
    MAX_GAIN,
    RESIDUAL_STEP,
    ResidualBroadening,
    lorentzian_broaden,
    refit_amplitudes,
    restore_residual,
)
from nmrladder.train.evaluate import prepare_items
from nmrladder.train.metrics import error_snr_db
from nmrladder.train.simulate import simulate_ladders

TD, SW_HZ = 4096, 8000.0
LENGTH = 2 * TD  # zero-filled twice: line broadening is then exactly the FID's exponential


def _spectrum(nu_hz, amplitude, r2_hz, lb_hz=0.0):
    """Real spectrum of one damped line (FWHM r2_hz), its FID multiplied by exp(-pi lb t)."""
    t = np.arange(TD) / SW_HZ
    fid = amplitude * np.exp(-2j * np.pi * nu_hz * t - np.pi * (r2_hz + lb_hz) * t)
    fid[0] *= 0.5
    padded = np.zeros(LENGTH, dtype=complex)
    padded[:TD] = fid
    return np.fft.fftshift(np.fft.fft(padded)).real


def test_what_the_network_removed_comes_back_broadened():
    hz_per_point = SW_HZ / LENGTH
    noise = 0.01 * np.random.default_rng(0).normal(size=LENGTH)
    kept = _spectrum(-900.0, 60.0, 8 * hz_per_point)  # a line the network kept: FWHM 8 points
    lost = _spectrum(1500.0, 5.0, 4 * hz_per_point)  # a narrow one it set to zero
    x, y = kept + lost + noise, kept  # the network took out the noise and the narrow line
    # LB = 0.5 x the output's linewidth (8 points) = 4 points: the lost line comes back as
    # its own FID times exp(-pi LB t), i.e. twice as wide, with its area (and the noise, as
    # broadened noise far below the tolerance).
    expected = kept + _spectrum(1500.0, 5.0, 4 * hz_per_point, lb_hz=4 * hz_per_point)
    got = restore_residual(x, y, factor=0.5)
    assert got.dtype == np.float32 and got.shape == x.shape
    # 1 % of the lost line's height: the linewidth is read off 8 sampled points
    np.testing.assert_allclose(got, expected, rtol=0, atol=0.01 * lost.max())
    assert got.sum() == pytest.approx(x.sum(), rel=1e-4)  # nothing added, nothing lost
    # an output that kept everything is left alone
    np.testing.assert_allclose(restore_residual(x, x), x, rtol=0, atol=1e-5 * x.max())


def test_refit_scales_each_line_region_by_its_least_squares_gain():
    n = np.arange(4096.0)
    # Lines of compact support (cos^2 bumps 20 points wide), so that each one lies inside its
    # region whole and the analytic gain holds to rounding.
    lines = [
        np.where(np.abs(n - centre) < 10, 10.0 * np.cos(np.pi * (n - centre) / 20) ** 2, 0.0)
        for centre in (3.0, 800.0, 2000.0, 3200.0, 4093.0)
    ]
    level, sigma = 2.0, 0.5
    x = level + sum(lines)
    # The network shrank the second line to 0.6 and the third to 0.4 of its height (a gain
    # of 2.5, above MAX_GAIN), and overshot the fourth (1.2: a gain below 1 is kept at 1);
    # the first and last lines run into the spectrum's ends.
    shrink = (0.5, 0.6, 0.4, 1.2, 0.8)
    y = level + sum(k * line for k, line in zip(shrink, lines, strict=True))
    got = refit_amplitudes(x[None], y[None], np.array([level]), np.array([sigma]))[0]
    expected = level + sum(
        min(max(1.0 / k, 1.0), MAX_GAIN) * k * line for k, line in zip(shrink, lines, strict=True)
    )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # Away from every line, where the output stays at the baseline level, nothing changes.
    far = np.abs(n - 1400.0) < 100
    np.testing.assert_array_equal(got[far], y[far])


def test_refit_leaves_an_output_without_lines_alone():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 2048))
    y = 1e-3 * rng.normal(size=(2, 2048))  # under 0.05 input sigmas everywhere: no region
    np.testing.assert_array_equal(refit_amplitudes(x, y, np.zeros(2), np.ones(2)), y)
    # One region over the whole spectrum: one gain for all of it.
    line = 1.5 + np.cos(np.linspace(0, 2 * np.pi, 2048))
    got = refit_amplitudes(line[None], 0.8 * line[None], np.zeros(1), np.ones(1))
    np.testing.assert_allclose(got[0], line, rtol=1e-12)


def test_an_output_without_lines_broadens_by_the_fallback():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 2048))
    y = 1e-3 * rng.normal(size=(2, 2048))  # nothing stands out: no linewidth to read
    expected = y + lorentzian_broaden(x - y, FALLBACK_POINTS)
    np.testing.assert_allclose(restore_residual(x, y, 0.5), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("factor", [0, -1, float("nan"), "wide"])
def test_bad_factors_and_shapes_are_refused(factor):
    with pytest.raises(InputError, match="residual line broadening factor"):
        restore_residual(np.ones(64), np.ones(64), factor)
    with pytest.raises(InputError, match="differ"):
        restore_residual(np.ones(64), np.ones(32))


@pytest.fixture(scope="module")
def default_pair():
    return Denoiser.default(threads=2), Denoiser.default(threads=2, residual_lb=0.5)


def test_shipped_model_gains_in_the_peak_regions_with_it(default_pair):
    plain, restoring = default_pair
    # rung-0 SNR 5, seeds far from training's; the evaluation's truth and peak regions
    items = prepare_items(simulate_ladders(8, 2, 16384, 2.0, 5.0, 27182))
    x = np.stack([item.noisy for item in items])
    truth, region = [item.truth for item in items], [item.region for item in items]
    y, z = plain.denoise(x), restoring.denoise(x)
    np.testing.assert_allclose(z, restore_residual(x, y, 0.5), rtol=0, atol=1e-4 * np.abs(x).max())

    def peak_gain(out):
        return np.mean([error_snr_db(out[i], truth[i], region[i])
                        - error_snr_db(x[i], truth[i], region[i]) for i in range(len(x))])

    # measured at rung-0 SNR 5: about +0.9 dB over the network alone (docs/training.md)
    assert peak_gain(z) > peak_gain(y) + 0.3


def _npy_inputs(folder, seed):
    """Three simulated spectra, saved as s0.npy .. s2.npy in ``folder``: (spectra, paths)."""
    spectra = simulate_ladders(3, 2, 4096, 2.0, 8.0, seed=seed).x[:, 0]
    folder.mkdir()
    for i, spectrum in enumerate(spectra):
        np.save(folder / f"s{i}.npy", spectrum)
    return spectra, sorted(folder.glob("*.npy"))


def test_batch_job_and_cli_write_what_the_api_returns(tiny_model_dir, tmp_path):
    inputs = tmp_path / "in"
    spectra, paths = _npy_inputs(inputs, seed=5)
    den = Denoiser(tiny_model_dir / "model.onnx", batch_size=2, threads=2, residual_lb=0.5)
    expected = den.denoise(spectra)
    summary = DenoiseJob(den, tmp_path / "job", progress=False).run(paths)
    assert [r.status for r in summary.results] == ["ok"] * 3
    argv = ["denoise", str(inputs), "--out", str(tmp_path / "cli"), "--no-progress",
            "--model", str(tiny_model_dir / "model.onnx"), "--residual-lb"]
    assert main(argv) == 0
    for out in ("job", "cli"):
        for i in range(3):
            got = np.load(tmp_path / out / f"s{i}_denoised.npy")
            np.testing.assert_allclose(got, expected[i], rtol=0,
                                       atol=1e-5 * np.abs(expected[i]).max())
    plain = Denoiser(tiny_model_dir / "model.onnx", batch_size=2, threads=2).denoise(spectra)
    assert not np.allclose(plain, expected)  # the option did something
    wrapped = ResidualBroadening(Denoiser(tiny_model_dir / "model.onnx"), 0.5).denoise(spectra)
    np.testing.assert_allclose(wrapped, expected, rtol=0, atol=1e-5 * np.abs(spectra).max())
    with pytest.raises(InputError, match="factor"):
        Denoiser(tiny_model_dir / "model.onnx", residual_lb=0)


def test_cli_factor_is_optional_and_a_path_after_the_flag_is_explained(
    tiny_model_dir, tmp_path, capsys
):
    inputs = tmp_path / "in"
    _npy_inputs(inputs, seed=7)
    model = str(tiny_model_dir / "model.onnx")
    with pytest.raises(SystemExit) as exit_info:
        main(["denoise", "--residual-lb", str(inputs), "--out", str(tmp_path / "o"),
              "--model", model])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert repr(str(inputs)) in message and "after the input paths" in message
    assert not (tmp_path / "o").exists()
    argv = ["denoise", str(inputs), "--out", str(tmp_path / "o"), "--no-progress",
            "--model", model, "--residual-lb", "0.25"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "o" / "manifest.jsonl").open()]
    assert [r["residual_lb"] for r in records] == [0.25] * 3


def test_resume_redoes_outputs_made_with_another_setting(tiny_model_dir, tmp_path):
    spectra, paths = _npy_inputs(tmp_path / "in", seed=6)
    model = tiny_model_dir / "model.onnx"
    restoring, plain = Denoiser(model, residual_lb=0.5), Denoiser(model)
    out = tmp_path / "out"
    first = DenoiseJob(restoring, out, progress=False).run(paths)
    assert [r.residual_lb for r in first.results] == [0.5] * 3
    again = DenoiseJob(restoring, out, resume=True, progress=False).run(paths)
    assert [r.status for r in again.results] == ["skipped"] * 3  # same setting: done
    # Another setting: every output is redone, so the folder never mixes the two.
    switched = DenoiseJob(plain, out, resume=True, progress=False).run(paths)
    assert [(r.status, r.residual_lb) for r in switched.results] == [("ok", 0.0)] * 3
    expected = plain.denoise(spectra)
    for i in range(3):
        got = np.load(out / f"s{i}_denoised.npy")
        np.testing.assert_allclose(got, expected[i], rtol=0, atol=1e-5 * np.abs(expected[i]).max())


def test_resume_redoes_outputs_an_earlier_version_of_the_step_made(tiny_model_dir, tmp_path):
    spectra, paths = _npy_inputs(tmp_path / "in", seed=8)
    restoring = Denoiser(tiny_model_dir / "model.onnx", residual_lb=0.5)
    out = tmp_path / "out"
    first = DenoiseJob(restoring, out, progress=False).run(paths)
    assert [r.residual_step for r in first.results] == [RESIDUAL_STEP] * 3
    # The manifest as the step before the re-fit wrote it: the same factor, no version.
    manifest = out / "manifest.jsonl"
    entries = [json.loads(line) for line in manifest.open()]
    (older,) = [entry for entry in entries if entry["input"] == str(paths[0])]
    del older["residual_step"]
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    again = DenoiseJob(restoring, out, resume=True, progress=False).run(paths)
    redone = {r.input: (r.status, r.residual_step) for r in again.results}
    assert redone == {
        str(path): ("ok" if path == paths[0] else "skipped", RESIDUAL_STEP) for path in paths
    }
