"""Training data (train/data.py): frames, units, batches, determinism, manifests, caches."""

import warnings

import numpy as np
import pytest

from nmrladder.runtime.errors import InputError
from nmrladder.train import data as D
from nmrladder.train.simulate import fourier_shift_real, simulate_ladders

L = 2048
# Drift of each rung (points). Relative to the top rung: 6.4 (roll 6, f = +0.4) and -4.4
# (roll -4, f = -0.4): fractional parts far from 0, so a wrong sign would show.
DRIFT = np.array([7.6, -3.2, 1.2])
AMPLITUDE = np.array([3.0, 0.5, 1.0])  # each rung normalised differently
OFFSET = np.array([0.2, -0.1, 0.05])
SIGMA = np.array([0.02, 0.01, 0.005])  # noise in each rung's own amplitude units, T = 2


def _lorentzians(n: int, rng: np.random.Generator) -> np.ndarray:
    i = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    for centre in rng.uniform(100, n - 100, 12):
        hwhm = rng.uniform(1.0, 3.0)
        out += rng.uniform(0.3, 1.0) / (1 + ((i - centre) / hwhm) ** 2)
    return out


@pytest.fixture(scope="module")
def synthetic():
    """Ladders with a known truth, drift, normalisation and noise per rung."""
    rng = np.random.default_rng(3)
    truths, ladders = [], []
    for _ in range(3):
        truth = _lorentzians(L, rng)
        rungs = [
            AMPLITUDE[k] * (fourier_shift_real(truth, DRIFT[k]) + rng.normal(0, SIGMA[k], L))
            + OFFSET[k]
            for k in range(3)
        ]
        truths.append(truth)
        ladders.append(np.stack(rungs))
    x = np.stack(ladders).astype(np.float32)
    return np.stack(truths), x, D.prepare(x)


def test_integer_roll_and_fractional_shift_match_the_known_drift(synthetic):
    _, _, prep = synthetic
    relative = DRIFT - DRIFT[-1]
    np.testing.assert_array_equal(prep.roll, np.tile(np.rint(relative), (3, 1)))
    np.testing.assert_allclose(prep.frac, np.tile(relative - np.rint(relative), (3, 1)),
                               atol=0.05)


def test_target_is_the_truth_in_the_inputs_frame(synthetic):
    truth, _, prep = synthetic
    sampler = D.BatchSampler(prep, 3, L, seed=0, peak_crop_fraction=0.0)  # whole spectra
    batch = sampler.batch(0, D.RungPlan("all"))
    order = np.argsort(batch.samples)
    n0 = np.rint(DRIFT[0] - DRIFT[-1])
    for b, i in zip(order, range(3), strict=True):
        # rung 0 as acquired, moved by its integer roll only, in rung-0 noise units
        expected = fourier_shift_real(truth[i], DRIFT[0] - n0) * AMPLITUDE[0] / (
            AMPLITUDE[0] * SIGMA[0])
        target = batch.targets[b, 0]
        err = np.sqrt(np.mean((target - expected) ** 2))
        # the other sign of the fractional shift is 0.8 point off
        wrong = D.fractional_shift(prep.s_hat[i], -prep.frac[i, 0])
        err_wrong = np.sqrt(np.mean((wrong - expected) ** 2))
        assert err < 0.6, err  # s_hat's own noise is ~0.3 rung-0 sigmas
        assert err_wrong > 3 * err, (err, err_wrong)
        # the amplitude unit is rung 0's noise as the preprocessing estimates it (a few %)
        assert target.max() == pytest.approx(expected.max(), rel=0.06)


def test_inputs_are_rolled_not_interpolated(synthetic):
    truth, x, prep = synthetic
    for k, noise in enumerate(SIGMA / SIGMA[0]):
        n_k = np.rint(DRIFT[k] - DRIFT[-1])
        clean = fourier_shift_real(truth[0], DRIFT[k] - n_k) / SIGMA[0]
        flat = np.abs(clean) < 0.05 * noise  # away from the lines: (almost) noise only
        residual = (prep.inputs[0, k] - clean)[flat]
        residual = residual - np.median(residual)
        assert flat.sum() > 300
        assert residual.std() == pytest.approx(noise, rel=0.1)
        # white noise stays white: linear interpolation by 0.4 point would correlate
        # neighbours by 0.46
        pairs = flat[1:] & flat[:-1]
        r = (prep.inputs[0, k] - clean) - np.median(residual)
        rho = np.corrcoef(r[1:][pairs], r[:-1][pairs])[0, 1]
        assert abs(rho) < 0.1, (k, rho)


def test_unit_is_rung_zero_noise_and_network_scaling_is_robust_scale(synthetic):
    from nmrladder.runtime.preprocess import robust_scale_batch

    _, _, prep = synthetic
    np.testing.assert_allclose(prep.noise[:, 0], 1.0)
    np.testing.assert_allclose(prep.noise[:, 1:], np.tile(SIGMA[1:] / SIGMA[0], (3, 1)),
                               rtol=0.12)
    centers, sigmas = robust_scale_batch(prep.inputs.reshape(-1, L))
    np.testing.assert_allclose(prep.centers.ravel(), centers, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(prep.sigmas.ravel(), sigmas, rtol=1e-6)


def test_fractional_shift_is_band_limited_and_ignores_the_end_jump():
    # Gaussians of >= 3 points are band-limited to ~1e-19 at Nyquist: their shift is analytic
    n = 512
    i = np.arange(n, dtype=np.float64)
    centres, widths = np.array([100.0, 240.3, 400.7]), np.array([3.0, 5.0, 4.0])

    def gaussians(shift):
        return sum(np.exp(-0.5 * ((i - c - shift) / w) ** 2) for c, w in zip(centres, widths,
                                                                                strict=True))

    ramp = 0.01 * i + 2.0  # a jump between the ends, as a rolling baseline makes
    for d in (0.37, -0.25, 3.5):
        got = D.fractional_shift(gaussians(0.0) + ramp, d)
        np.testing.assert_allclose(got, gaussians(d) + 0.01 * (i - d) + 2.0, atol=1e-9)
    both = D.fractional_shift(np.stack([gaussians(0.0)] * 2), np.array([0.3, -0.3]))
    np.testing.assert_allclose(both, np.stack([gaussians(0.3), gaussians(-0.3)]), atol=1e-9)
    # what linear interpolation (the runtime's apply_shift) would do instead: smooth the lines
    from nmrladder.runtime.preprocess import apply_shift

    assert np.abs(apply_shift(gaussians(0.0), 0.5) - gaussians(0.5)).max() > 3e-3


@pytest.fixture(scope="module")
def simulated():
    lad = simulate_ladders(10, 4, 2048, 2.0, 10.0, seed=4)
    return lad, D.prepare(lad, t_source="true")


def test_batch_shapes_rungs_and_crops(simulated):
    lad, prep = simulated
    sampler = D.BatchSampler(prep, 4, 512, seed=1, peak_crop_fraction=0.5)
    for plan, k in ((D.RungPlan("sampled", (1, 2)), (2, 3)), (D.RungPlan("all"), (4,)),
                    (D.RungPlan("sampled", (0, 0)), (1,))):
        for step in range(5):
            b = sampler.batch(step, plan)
            assert b.inputs.shape[:1] == (4,) and b.inputs.shape[2] == 512
            assert b.inputs.shape[1] in k and b.targets.shape == b.inputs.shape
            assert b.peak_mask.shape == (4, 512) and b.peak_mask.dtype == bool
            assert b.centers.shape == b.rungs.shape == b.frac.shape == b.inputs.shape[:2]
            assert np.all(b.rungs[:, 0] == 0)
            assert all(len(set(row)) == len(row) for row in b.rungs.tolist())
            assert np.all((b.starts >= 0) & (b.starts <= 2048 - 512))
            for j in range(4):
                s, start = b.samples[j], b.starts[j]
                for col, rung in enumerate(b.rungs[j]):
                    np.testing.assert_array_equal(
                        b.inputs[j, col], prep.inputs[s, rung, start:start + 512])
                np.testing.assert_array_equal(b.base_mask[j],
                                              prep.base_mask[s, start:start + 512])
            np.testing.assert_allclose(b.T, lad.T[b.samples])


def test_peak_centred_crops_hold_peaks(simulated):
    _, prep = simulated
    sampler = D.BatchSampler(prep, 5, 256, seed=2, peak_crop_fraction=1.0)
    for step in range(6):
        b = sampler.batch(step)
        assert np.all(b.peak_mask.any(axis=1))


def test_batches_are_a_function_of_seed_and_step(simulated):
    _, prep = simulated
    plan = D.RungPlan("sampled", (1, 2))
    a = D.BatchSampler(prep, 3, 256, seed=5)
    b = D.BatchSampler(prep, 3, 256, seed=5)
    later = b.batch(7, plan)  # another call order must not matter
    for step in (0, 7):
        x, y = a.batch(step, plan), (later if step == 7 else b.batch(step, plan))
        for name in ("inputs", "targets", "rungs", "starts", "samples"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
    other = D.BatchSampler(prep, 3, 256, seed=6).batch(0, plan)
    assert not np.array_equal(other.starts, a.batch(0, plan).starts)
    assert not np.array_equal(a.batch(1, plan).starts, a.batch(0, plan).starts)


def test_an_epoch_visits_every_ladder_once(simulated):
    _, prep = simulated
    sampler = D.BatchSampler(prep, 5, 256, seed=0)
    assert sampler.steps_per_epoch == 2
    seen = np.concatenate([sampler.ladder_indices(s) for s in (2, 3)])
    assert sorted(seen.tolist()) == list(range(10))


def test_disk_cache_reads_back_what_memory_holds(simulated, tmp_path):
    lad, prep = simulated
    with D.prepare(lad, t_source="true", out=tmp_path / "cache.h5", chunk=4) as cached:
        assert len(cached) == len(prep) and cached.meta["t_source"] == "true"
        idx = np.array([7, 2, 2, 9])
        got, want = cached.read(idx), prep.read(idx)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_a_ladder_the_preprocessing_refuses_is_left_out(simulated):
    lad, _ = simulated
    x = lad.x[:3].copy()
    x[1] = 0.5  # constant: no noise to measure
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prep = D.prepare(x)
    assert len(prep) == 2 and prep.meta["skipped"][0][0] == 1
    assert any("left out 1 of 3" in str(w.message) for w in caught)


def test_t_source_true_needs_the_true_T(simulated):
    lad, _ = simulated
    with pytest.raises(InputError, match="t_source"):
        D.prepare(lad.x[:2], t_source="true")


# --------------------------------------------------------------------------- manifests


def _write_ladder(folder, name, rungs, length=1024, seed=0):
    rng = np.random.default_rng(seed)
    truth = _lorentzians(length, rng)
    paths = []
    for k in range(rungs):
        path = folder / f"{name}_{k}.npy"
        np.save(path, (truth + rng.normal(0, 0.05 / 2**k, length)).astype(np.float32))
        paths.append(path.name)
    return paths


def _manifest(tmp_path, rows, header="sample,rung,path,T"):
    path = tmp_path / "ladders.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_manifest_reads_ladders(tmp_path):
    rows = []
    for s in range(2):
        for k, name in enumerate(_write_ladder(tmp_path, f"s{s}", 3, seed=s)):
            rows.append(f"s{s},{k},{name},{2.0 if k == 0 else ''}")
    man = D.read_manifest(_manifest(tmp_path, rows[::-1]))  # any row order
    assert man.x.shape == (2, 3, 1024) and man.x.dtype == np.float32
    assert man.samples == ["s1", "s0"]
    np.testing.assert_array_equal(man.T, [2.0, 2.0])
    np.testing.assert_array_equal(man.x[1, 2], np.load(tmp_path / "s0_2.npy"))
    prep = D.prepare(_manifest(tmp_path, rows), t_source="true")
    assert len(prep) == 2 and prep.rungs == 3


MANIFEST_ERRORS = {
    "missing rung": (["a,0,{0},", "a,2,{2},"], r"line 2.*missing rung"),
    "unequal length": (["a,0,{0},", "a,1,short.npy,"], r"line 3: .*500 points"),
    "bad path": (["a,0,{0},", "a,1,nothere.npy,"], r"line 3: .*nothere.npy"),
    "one rung": (["a,0,{0},"], r"at least 2 rungs"),
    "bad rung": (["a,0,{0},", "a,x,{1},"], r"line 3: rung 'x'"),
    "duplicate": (["a,0,{0},", "a,0,{1},"], r"line 3: .*already given"),
    "bad T": (["a,0,{0},0.5", "a,1,{1},"], r"line 2: T must be > 1"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_ERRORS))
def test_manifest_errors_name_the_line(tmp_path, case):
    names = _write_ladder(tmp_path, "a", 3)
    np.save(tmp_path / "short.npy", np.zeros(500, dtype=np.float32))
    rows, pattern = MANIFEST_ERRORS[case]
    with pytest.raises(InputError, match=pattern):
        D.read_manifest(_manifest(tmp_path, [r.format(*names) for r in rows]))


def test_manifest_needs_its_columns(tmp_path):
    with pytest.raises(InputError, match="missing: rung"):
        D.read_manifest(_manifest(tmp_path, ["a,a_0.npy"], header="sample,path"))
    with pytest.raises(InputError, match="not found"):
        D.read_manifest(tmp_path / "none.csv")
