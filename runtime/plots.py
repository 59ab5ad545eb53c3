"""PNG figures a person would rather look at than read (matplotlib, imported lazily).

Every figure is written atomically. With a ppm axis the x axis runs the NMR way (high ppm left).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nmrladder.runtime.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def mask_runs(mask: np.ndarray) -> np.ndarray:
    """[start, stop) index pairs [n, 2] of the True runs of a 1D boolean mask."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return edges.reshape(-1, 2)


def _shade(ax, axis: np.ndarray, mask: np.ndarray, color: str, label: str) -> None:
    for n, (start, stop) in enumerate(mask_runs(mask)):
        ax.axvspan(
            axis[start],
            axis[stop - 1],
            color=color,
            alpha=0.18,
            lw=0,
            label=label if n == 0 else None,
        )


def _x_axis(length: int, ppm: np.ndarray | None) -> tuple[np.ndarray, str]:
    if ppm is None:
        return np.arange(length), "point"
    return np.asarray(ppm), "ppm"


def _finish(fig, ax_list, xlabel: str, ppm_axis: bool, path: str | os.PathLike) -> Path:
    ax_list[-1].set_xlabel(xlabel)
    if ppm_axis:
        ax_list[0].invert_xaxis()  # the axes share x, so every panel follows
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)
    return Path(path)


def plot_ladder(
    result, path, *, truth=None, ppm=None, title: str | None = None, window=None
) -> Path:
    """One ladder after preprocessing: aligned rungs with M shaded, s_hat (and truth) with B.

    ``result`` is a :class:`~nmrladder.runtime.reference.LadderResult`; ``truth`` an optional
    noise-free spectrum in the same frame and units as ``result.s_hat``; ``window`` an optional
    (start, stop) point range to zoom on.
    """
    plt = _pyplot()
    rungs, length = result.aligned.shape
    axis, xlabel = _x_axis(length, ppm)
    view = slice(*window) if window is not None else slice(0, length)
    fig, (ax_rungs, ax_fused) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    spread = 1.2 * float(np.max(np.abs(result.s_hat[view]))) / max(rungs - 1, 1)
    for k in range(rungs):
        ax_rungs.plot(
            axis[view],
            result.aligned[k, view] + k * spread,
            lw=0.7,
            label=f"rung {k}: SNR {result.snr[k]:.1f}, shift {result.shifts[k]:+.2f} pt",
        )
    _shade(ax_rungs, axis[view], result.peak_mask[view], "tab:orange", "peak mask M")
    ax_rungs.set_ylabel("aligned, re-scaled (offset per rung)")
    ax_rungs.legend(fontsize=7, loc="upper right")
    ax_fused.plot(axis[view], result.s_hat[view], lw=0.8, color="black", label="pseudo-truth s_hat")
    if truth is not None:
        ax_fused.plot(
            axis[view],
            np.asarray(truth)[view],
            lw=0.8,
            color="tab:green",
            alpha=0.8,
            ls="--",
            label="truth",
        )
    _shade(ax_fused, axis[view], result.base_mask[view], "tab:blue", "baseline mask B")
    ax_fused.set_ylabel("intensity (top rung's units)")
    ax_fused.legend(fontsize=7, loc="upper right")
    ax_rungs.set_title(title or f"ladder: {rungs} rungs, T_hat = {result.t_hat:.2f}")
    return _finish(fig, [ax_rungs, ax_fused], xlabel, ppm is not None, path)


def plot_denoised(
    noisy,
    denoised,
    path,
    *,
    truth=None,
    ppm=None,
    title: str | None = None,
    band=None,
    flag: tuple[int, str] | None = None,
) -> Path:
    """Input, output, truth (if known) and the residual input - output of one spectrum.

    ``band``: each output point's estimated error sigma (runtime/confidence.py), drawn as the
    band output +- 2 sigma; ``flag``: (point index, label) of a line-shaped structure the
    network removed (the removal report's flag), marked on both panels.
    """
    plt = _pyplot()
    noisy = np.asarray(noisy)
    denoised = np.asarray(denoised)
    axis, xlabel = _x_axis(noisy.size, ppm)
    fig, (ax_top, ax_res) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 1])
    ax_top.plot(axis, noisy, lw=0.6, color="0.6", label="input")
    if band is not None:
        sigma = 2.0 * np.asarray(band)
        ax_top.fill_between(axis, denoised - sigma, denoised + sigma, color="tab:red",
                            alpha=0.25, lw=0, label="output \u00b1 2\u03c3")
    ax_top.plot(axis, denoised, lw=0.8, color="tab:red", label="denoised")
    if truth is not None:
        ax_top.plot(
            axis, np.asarray(truth), lw=0.8, color="black", ls="--", alpha=0.8, label="truth"
        )
    if flag is not None:
        index, label = flag
        for ax in (ax_top, ax_res):
            ax.axvline(axis[index], color="tab:purple", lw=0.9, ls=":",
                       label=label if ax is ax_top else None)
    ax_top.legend(fontsize=8, loc="upper right")
    ax_top.set_ylabel("intensity")
    ax_res.plot(axis, noisy - denoised, lw=0.5, color="tab:blue")
    ax_res.set_ylabel("input - output")
    if title:
        ax_top.set_title(title)
    return _finish(fig, [ax_top, ax_res], xlabel, ppm is not None, path)
