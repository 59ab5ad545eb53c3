"""Losses of METHOD 5 against independent NumPy computations, gradients, and the L_T direction."""

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nmrladder.runtime.errors import InputError  # noqa: E402
from nmrladder.train.losses import (  # noqa: E402
    DEFAULT_WEIGHTS,
    loss_cons,
    loss_curv,
    loss_deriv,
    loss_rec,
    loss_T,
    total_loss,
)

B, K, L = 3, 4, 50


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _t(a):
    return torch.tensor(a, dtype=torch.float64)


# ---- NumPy references, written point by point / pair by pair on purpose ----


def np_rec(y0, s_hat, peak, pw, bw):
    weight = np.where(peak, pw, bw)
    return np.mean(weight * np.abs(y0 - s_hat))


def np_deriv(y0, s_hat):
    return np.mean(np.abs(np.diff(y0, axis=-1) - np.diff(s_hat, axis=-1)))


def np_curv(y0, base):
    total, count = 0.0, 0
    for b in range(y0.shape[0]):
        for i in range(1, y0.shape[1] - 1):
            if base[b, i]:
                total += abs(y0[b, i + 1] - 2 * y0[b, i] + y0[b, i - 1])
                count += 1
    return total / max(count, 1)


def np_cons(ys):
    pairs = list(itertools.combinations(range(ys.shape[1]), 2))
    return np.mean([np.mean(np.abs(ys[:, i] - ys[:, j])) for i, j in pairs])


def np_lt(res, rungs, T, base, eps):
    rungs = np.broadcast_to(rungs, res.shape[:2])
    T = np.broadcast_to(T, res.shape[:1])
    values = []
    for b in range(res.shape[0]):
        norms = [np.sqrt(np.sum((res[b, k] * base[b]) ** 2)) for k in range(res.shape[1])]
        for i, j in itertools.combinations(range(res.shape[1]), 2):
            ratio = (norms[i] + eps) / (norms[j] + eps)
            alpha = T[b] ** (rungs[b, j] - rungs[b, i])
            values.append(abs(np.log(ratio) - np.log(alpha)))
    return np.mean(values)


# ---- agreement with the references ----


def test_loss_rec_matches_numpy(rng):
    y0, s_hat = rng.normal(size=(2, B, L))
    peak = rng.random((B, L)) < 0.3
    got = loss_rec(_t(y0), _t(s_hat), torch.from_numpy(peak), peak_weight=4.0, base_weight=0.5)
    assert got.item() == pytest.approx(np_rec(y0, s_hat, peak, 4.0, 0.5), rel=1e-12)
    default = loss_rec(_t(y0), _t(s_hat), torch.from_numpy(peak))
    assert default.item() == pytest.approx(np_rec(y0, s_hat, peak, 6.0, 1.0), rel=1e-12)


def test_loss_rec_gives_points_outside_the_peak_mask_the_baseline_weight():
    # One point differs, outside M (as in the erosion gap, neither in M nor in B).
    y0 = torch.zeros(1, 10)
    y0[0, 4] = 1.0
    peak = torch.zeros(1, 10, dtype=torch.bool)
    peak[0, 6:] = True
    assert loss_rec(y0, torch.zeros(1, 10), peak, base_weight=2.0).item() == pytest.approx(0.2)


def test_loss_deriv_matches_numpy(rng):
    y0, s_hat = rng.normal(size=(2, B, L))
    assert loss_deriv(_t(y0), _t(s_hat)).item() == pytest.approx(np_deriv(y0, s_hat), rel=1e-12)


def test_loss_curv_matches_numpy(rng):
    y0 = rng.normal(size=(B, L))
    base = rng.random((B, L)) < 0.6
    got = loss_curv(_t(y0), torch.from_numpy(base))
    assert got.item() == pytest.approx(np_curv(y0, base), rel=1e-12)


def test_loss_cons_matches_numpy(rng):
    ys = rng.normal(size=(B, K, L))
    assert loss_cons(_t(ys)).item() == pytest.approx(np_cons(ys), rel=1e-12)


@pytest.mark.parametrize("per_sample", [False, True])
def test_loss_T_matches_numpy(rng, per_sample):
    res = rng.normal(size=(B, K, L)) * rng.uniform(0.1, 3.0, size=(B, K, 1))
    base = rng.random((B, L)) < 0.7
    if per_sample:
        rungs, T = np.array([[0, 1, 2, 4], [1, 2, 3, 4], [0, 2, 3, 5]]), np.array([1.5, 2.0, 3.0])
    else:
        rungs, T = np.array([0, 1, 3, 4]), 2.0
    got = loss_T(_t(res), torch.from_numpy(rungs), _t(T), torch.from_numpy(base), eps=1e-6)
    assert got.item() == pytest.approx(np_lt(res, rungs, T, base, 1e-6), rel=1e-10)


# ---- zeros, degenerate cases, gradients ----


def test_losses_vanish_for_identical_inputs(rng):
    y = _t(rng.normal(size=(B, L)))
    peak = torch.from_numpy(rng.random((B, L)) < 0.3)
    assert loss_rec(y, y.clone(), peak).item() == 0.0
    assert loss_deriv(y, y + 3.0).item() == pytest.approx(0.0, abs=1e-12)  # offsets too
    assert loss_cons(y.unsqueeze(1).repeat(1, K, 1)).item() == 0.0
    line = _t(np.tile(np.linspace(-2.0, 5.0, L), (B, 1)))
    assert loss_curv(line, torch.ones(B, L, dtype=torch.bool)).item() == pytest.approx(0, abs=1e-12)


def test_degenerate_inputs_give_zero():
    assert loss_cons(torch.randn(B, 1, L)).item() == 0.0
    assert loss_T(torch.randn(B, 1, L), torch.tensor([0]), 2.0, torch.ones(B, L, dtype=bool)) == 0
    assert loss_curv(torch.randn(B, L), torch.zeros(B, L, dtype=torch.bool)).item() == 0.0


def test_gradients_flow_and_are_finite(rng):
    y0 = torch.randn(B, L, requires_grad=True)
    ys = torch.randn(B, K, L, requires_grad=True)
    res = torch.randn(B, K, L, requires_grad=True)
    s_hat = torch.randn(B, L)
    peak = torch.from_numpy(rng.random((B, L)) < 0.3)
    base = ~peak
    terms = {
        "rec": loss_rec(y0, s_hat, peak),
        "deriv": loss_deriv(y0, s_hat),
        "curv": loss_curv(y0, base),
        "cons": loss_cons(ys),
        "T": loss_T(res, torch.arange(K), torch.full((B,), 2.0), base),
    }
    total, _ = total_loss(terms)
    total.backward()
    for grad in (y0.grad, ys.grad, res.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_loss_T_gradient_is_finite_for_a_zero_residual():
    res = torch.zeros(1, 3, L, requires_grad=True)
    loss = loss_T(res, torch.arange(3), 2.0, torch.ones(1, L, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(res.grad).all()


# ---- the direction of L_T ----


def _lorentzians(n, rng):
    x = np.arange(n, dtype=np.float64)
    truth = np.zeros(n)
    for _ in range(6):
        centre, width, height = rng.uniform(0.1 * n, 0.9 * n), rng.uniform(2, 8), rng.uniform(5, 50)
        truth += height * width**2 / ((x - centre) ** 2 + width**2)
    return truth


@pytest.mark.parametrize("T", [1.3, 2.0, 3.0])
def test_perfect_denoiser_has_zero_L_T_only_under_the_stated_convention(T, rng):
    n, n_rungs, sigma0, batch = 4096, 4, 2.0, 2
    truths = np.stack([_lorentzians(n, rng) for _ in range(batch)])
    ks = np.arange(n_rungs)
    noisy = truths[:, None] + sigma0 * T ** -ks[None, :, None] * rng.normal(
        size=(batch, n_rungs, n)
    )
    residuals = noisy - truths[:, None]  # r = xbar - f(xbar) with f(xbar) = the exact truth
    base = truths < 0.01 * truths.max(axis=1, keepdims=True)
    assert base.mean() > 0.3
    args = (_t(residuals), torch.from_numpy(ks), _t(np.full(batch, T)), torch.from_numpy(base))
    assert loss_T(*args).item() < 0.05
    # METHOD 3.3's literal alpha_ij = T**-(j-i) is the same as using 1/T here.
    flipped = loss_T(args[0], args[1], 1.0 / args[2], args[3]).item()
    assert flipped > 0.4 and flipped > 10 * loss_T(*args).item()


# ---- total ----


def test_total_loss_uses_methods_weights_and_overrides():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    terms = {name: torch.tensor(v) for name, v in zip(DEFAULT_WEIGHTS, values, strict=True)}
    assert DEFAULT_WEIGHTS == {"rec": 1.0, "deriv": 0.5, "curv": 0.1, "cons": 0.5, "T": 0.2}
    total, log = total_loss(terms)
    assert total.item() == pytest.approx(1 + 0.5 * 2 + 0.1 * 3 + 0.5 * 4 + 0.2 * 5)
    assert log == pytest.approx({"rec": 1, "deriv": 2, "curv": 3, "cons": 4, "T": 5, "total": 5.3})
    assert all(isinstance(v, float) for v in log.values())
    stage_a, _ = total_loss({"rec": terms["rec"], "curv": terms["curv"]}, {"curv": 1.0})
    assert stage_a.item() == pytest.approx(4.0)


def test_total_loss_rejects_unknown_terms():
    with pytest.raises(InputError, match="L_T"):
        total_loss({"L_T": torch.tensor(1.0)})
    with pytest.raises(InputError, match="lam"):
        total_loss({"rec": torch.tensor(1.0)}, {"lam": 2.0})
