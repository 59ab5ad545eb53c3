"""Training losses of METHOD section 5 (with 3.2 and 3.3); see docs/model.md.

Shapes: spectra are [B, L] float tensors in the common amplitude frame of a ladder (after the
re-scaling of METHOD 2.2), so every loss is in the units of that frame (L1 terms) or
dimensionless (L_T). Masks are bool [B, L]: peak_mask is M, base_mask is B of METHOD 2.3 (M's
complement eroded, so a few points at the foot of each peak are in neither).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nmrladder.runtime.errors import InputError

#: METHOD 5.4's initial weights; "rec" is the unweighted anchor term.
DEFAULT_WEIGHTS: dict[str, float] = {
    "rec": 1.0,
    "deriv": 0.5,
    "curv": 0.1,
    "cons": 0.5,
    "T": 0.2,
}


def diff1(y: torch.Tensor) -> torch.Tensor:
    """First difference along the last axis: y[..., i+1] - y[..., i], length L-1."""
    return y[..., 1:] - y[..., :-1]


def diff2(y: torch.Tensor) -> torch.Tensor:
    """Discrete Laplacian along the last axis: y[i+1] - 2 y[i] + y[i-1] at i = 1..L-2."""
    return y[..., 2:] - 2 * y[..., 1:-1] + y[..., :-2]


def rec_weight(
    y0: torch.Tensor,
    s_hat: torch.Tensor,
    peak_mask: torch.Tensor,
    peak_weight: float = 6.0,
    base_weight: float = 1.0,
    under_weight: float = 1.0,
) -> torch.Tensor:
    """Per-point weight of L_rec [B, L]: peak_weight inside M, base_weight elsewhere, and
    inside M x under_weight where y0 falls short of s_hat (``(s_hat - y0) sign(s_hat) > 0``:
    between zero and the line, or beyond zero), which counters the shrinking of weak lines."""
    weight = torch.where(peak_mask, peak_weight, base_weight).to(y0.dtype)
    if under_weight != 1.0:
        short = peak_mask & ((s_hat - y0) * torch.sign(s_hat) > 0)
        weight = torch.where(short, weight * under_weight, weight)
    return weight


#: Heights (rung-0 noise sigmas) of the line tops that :func:`line_tops` returns: the weak
#: lines the network shrinks, without the tall ones it keeps anyway.
LINE_TOP_SIGMAS = (3.0, 30.0)


def line_tops(s_hat: torch.Tensor, peak_mask: torch.Tensor,
              low: float = LINE_TOP_SIGMAS[0], high: float = LINE_TOP_SIGMAS[1]) -> torch.Tensor:
    """One point per line: the local maxima of s_hat [B, L] inside M whose height lies in
    [low, high] (s_hat in rung-0 noise sigmas above its baseline). Bool [B, L]; the ends of
    a crop are never tops (a line cut by the crop is not whole)."""
    inner = s_hat[:, 1:-1]
    top = (inner > s_hat[:, :-2]) & (inner >= s_hat[:, 2:]) & (inner >= low) & (inner <= high)
    tops = torch.zeros_like(peak_mask)
    tops[:, 1:-1] = top & peak_mask[:, 1:-1]
    return tops


def loss_rec(
    y0: torch.Tensor,
    s_hat: torch.Tensor,
    peak_mask: torch.Tensor,
    peak_weight: float = 6.0,
    base_weight: float = 1.0,
    under_weight: float = 1.0,
) -> torch.Tensor:
    """Peak-weighted L1 reconstruction (METHOD 5.1).

    L_rec = mean_{b,i} w_bi |y0_bi - s_hat_bi|, w = peak_weight inside M, base_weight elsewhere
    (:func:`rec_weight`, also for ``under_weight``).
    "Elsewhere" includes the erosion gap between M and B: those points get the baseline weight
    (METHOD 9's W = 1*B + 6*M would give them 0, leaving peak feet unsupervised).

    y0, s_hat: [B, L]; peak_mask: bool [B, L]. Returns a scalar in the units of the spectra.
    """
    weight = rec_weight(y0, s_hat, peak_mask, peak_weight, base_weight, under_weight)
    return (weight * (y0 - s_hat).abs()).mean()


def loss_deriv(y0: torch.Tensor, s_hat: torch.Tensor) -> torch.Tensor:
    """Line-shape term (METHOD 5.1): L_deriv = mean_{b,i} |diff1(y0) - diff1(s_hat)|,
    the mean over the B x (L-1) first differences. y0, s_hat: [B, L]; scalar."""
    return (diff1(y0) - diff1(s_hat)).abs().mean()


def loss_curv(y0: torch.Tensor, base_mask: torch.Tensor) -> torch.Tensor:
    """Baseline flatness (METHOD 5.2): mean |diff2(y0)| over the interior points in B.

    L_curv = sum_{b, i=1..L-2} B_bi |y0_b,i+1 - 2 y0_bi + y0_b,i-1| / sum_{b, i=1..L-2} B_bi,
    i.e. the Laplacian at i is kept where base_mask[..., i] is set (METHOD 9's
    mask_base[..., 1:-1]), averaged over those points only (METHOD 9 divides by all B x (L-2)
    points instead; this is that value divided by the baseline fraction). 0 if no point is in B.

    y0: [B, L]; base_mask: bool [B, L]. Returns a scalar in the units of the spectra.
    """
    mask = base_mask[..., 1:-1].to(y0.dtype)
    return (diff2(y0).abs() * mask).sum() / mask.sum().clamp(min=1.0)


def _pairs(k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Index vectors (i, j) of all pairs i < j of k items."""
    i, j = torch.triu_indices(k, k, offset=1, device=device)
    return i, j


def loss_cons(ys: torch.Tensor) -> torch.Tensor:
    """Cross-SNR consistency (METHOD 3.2): L_cons = mean_{i<j} mean_{b,l} |y_i - y_j|.

    ys: [B, K, L], the outputs for K sampled rungs of the same B samples. Every pair has the
    same size, so this is also the mean over all pairs and points. Returns 0 when K < 2.
    """
    k = ys.shape[1]
    if k < 2:
        return ys.new_zeros(())
    i, j = _pairs(k, ys.device)
    return (ys[:, i] - ys[:, j]).abs().mean()


def loss_T(
    residuals: torch.Tensor,
    rungs: torch.Tensor,
    T: torch.Tensor | float,
    base_mask: torch.Tensor,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Residual-ratio prior from T (METHOD 3.3), on the baseline only. Dimensionless.

    residuals: [B, K, L], r_k = xbar^(k) - f(xbar^(k)) for K sampled rungs, all in the same
    amplitude frame; rungs: [K] or [B, K] their rung indices k (0 = noisiest); T: [B] or a
    scalar (the ladder's SNR step, > 1); base_mask: bool [B, L].

        n_k  = || r_k (.) B ||_2                      (per sample)
        R_ij = (n_i + eps) / (n_j + eps)
        L_T  = mean_{b, i<j} | log R_ij - log alpha_ij |,   alpha_ij = T ** (k_j - k_i)

    CONVENTION: the noise of rung k falls as T**-k, so a perfect denoiser leaves residuals
    with n_i / n_j = T**(k_j - k_i): with k_i < k_j rung i is noisier and alpha_ij =
    T**(+(j - i)) for consecutive rungs (METHOD 3.3 writes T**-(j-i); that sign would push the
    residuals the wrong way). eps (in the units of the spectra) is added to both norms so the
    log stays finite for a zero residual; it is negligible once the norms are >> eps.
    """
    k = residuals.shape[1]
    if k < 2:
        return residuals.new_zeros(())
    mask = base_mask.to(residuals.dtype).unsqueeze(1)
    log_norm = torch.log(torch.linalg.vector_norm(residuals * mask, dim=-1) + eps)  # [B, K]
    rungs = torch.as_tensor(rungs, dtype=residuals.dtype, device=residuals.device)
    rungs = rungs.reshape(-1, k)  # [1 or B, K]
    log_t = torch.log(torch.as_tensor(T, dtype=residuals.dtype, device=residuals.device))
    i, j = _pairs(k, residuals.device)
    log_ratio = log_norm[:, i] - log_norm[:, j]
    log_alpha = (rungs[:, j] - rungs[:, i]) * log_t.reshape(-1, 1)
    return (log_ratio - log_alpha).abs().mean()


def total_loss(
    terms: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L = L_rec + l1 L_deriv + l2 L_curv + l3 L_cons + l4 L_T (METHOD 5.4).

    terms: scalar tensors keyed by "rec", "deriv", "curv", "cons", "T"; a missing term is left
    out (stage A has no L_T). weights: overrides of DEFAULT_WEIGHTS (rec 1, deriv 0.5,
    curv 0.1, cons 0.5, T 0.2). Returns (total, log) where log holds every unweighted term
    and "total" as floats.
    """
    for name in (*terms, *(weights or {})):
        if name not in DEFAULT_WEIGHTS:
            raise InputError(f"unknown loss term {name!r}; known: {sorted(DEFAULT_WEIGHTS)}")
    if not terms:
        raise InputError("total_loss needs at least one term")
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    total = sum(w[name] * value for name, value in terms.items())
    log = {name: float(value.detach()) for name, value in terms.items()}
    log["total"] = float(total.detach())
    return total, log
