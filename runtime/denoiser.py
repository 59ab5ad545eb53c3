"""The Denoiser: the Python API users and pipelines call.

    from nmrladder.runtime import Denoiser
    den = Denoiser.default()                      # the model shipped with the package
    y = den.denoise(x)                            # x [N, L] or [L], any normalisation
    series = den.denoise_series(ladder)           # ladder [R, L]: fused spectrum, T_hat, SNRs
    den = Denoiser.default(strength="auto")       # the strength dial (runtime/strength.py)
    y, sigma, reports = den.denoise(x, return_confidence=True, return_report=True)

Spectra may come in any normalisation (max, area, z-score, raw intensities): the input
scaling (runtime/scaling.py) makes the network see every spectrum in its own noise units
and maps the output back; that and the strength step (the dial from the input to the
network's output, "auto", or the residual step) are the core every path shares
(runtime/core.py). Lengths outside the artefact's range are refused; others are
padded to the length multiple and cropped back.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from nmrladder.runtime.confidence import DEFAULT_COPIES, checked_copies
from nmrladder.runtime.core import Core, CoreDenoiser
from nmrladder.runtime.errors import InputError, ModelError
from nmrladder.runtime.residual import checked_factor
from nmrladder.runtime.sessions import default_threads, open_session

DEFAULT_MODEL = "default.onnx"
#: The same weights with the convolutions that fit 0.02 noise sigmas in int8 (export/quantize.py):
#: what the CPU backend runs by default, 1.3-1.5x faster at the same METHOD 7 figures.
DEFAULT_INT8_MODEL = "default.int8.onnx"


def default_model_path(backend: str = "ort") -> Path:
    """The ONNX model shipped inside the package: runtime/models/default.int8.onnx for the CPU
    backend "ort", runtime/models/default.onnx (float32) for every other backend."""
    name = DEFAULT_INT8_MODEL if backend == "ort" else DEFAULT_MODEL
    path = Path(str(resources.files("nmrladder.runtime") / "models" / name))
    if not path.is_file():
        raise ModelError(f"{path}: the packaged default model is missing; reinstall nmrladder")
    return path


@dataclass
class SeriesResult:
    """What :meth:`Denoiser.denoise_series` returns.

    fused [L]: the SNR-weighted fusion of the denoised rungs, in the top rung's frame and its
      original units; denoised [R, L]: every rung denoised, aligned and re-scaled to the top
      rung (centred); t_hat, snr [R], sigma [R], shifts [R], scales [R], weights [R]: from the
      ladder's preprocessing (METHOD 2.1-2.4, 3.1); preprocessing: the full LadderResult.
    """

    fused: np.ndarray
    denoised: np.ndarray
    t_hat: float
    snr: np.ndarray
    sigma: np.ndarray
    shifts: np.ndarray
    scales: np.ndarray
    weights: np.ndarray
    preprocessing: object


class Denoiser(CoreDenoiser):
    """A denoising network behind one backend ("ort", "ort-cuda", "ort-tensorrt", "trt", "torch").

    ``model_path`` is an artefact file (.onnx, .plan, .pt2) or an export folder; ``batch_size``
    spectra go through the network at once; ``threads`` sets the CPU threads of the session
    and of the preprocessing kernels (None: every core). ``streams`` > 1 (CPU backend "ort"
    only) runs that many batches side by side, each on ``threads // streams`` threads: on
    these small convolutions, single-threaded calls side by side outrun one call on every core
    (benchmarks/README.md), which suits batch jobs; one stream keeps single calls fastest.
    ``residual_lb`` (a factor, e.g. 0.5; None: off) runs the residual step after the network
    (runtime/residual.py): the amplitudes of what it kept are re-fitted to the input, and
    what it removed comes back line-broadened: more lines found, full heights and integrals, a
    noisier baseline. ``strength`` (a number in [0, 1] or "auto"; None: 1) sets the strength
    dial instead (runtime/strength.py: 0 gives the input back bit for bit, 1 the network's
    output, 0.5 the residual step with factor 0.5; "auto" chooses per region, with no truth).
    """

    def __init__(
        self,
        model_path: str | Path,
        backend: str = "ort",
        batch_size: int = 8,
        threads: int | None = None,
        streams: int = 1,
        residual_lb: float | None = None,
        strength: float | str | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if streams < 1:
            raise InputError(f"streams must be >= 1, got {streams}")
        if streams > 1 and backend != "ort":
            raise InputError(
                f"streams={streams}: only the CPU backend 'ort' runs batches side by side; "
                f"{backend!r} takes one batch at a time (use streams=1)"
            )
        self.model_path = Path(model_path)
        self.backend = backend
        self.batch_size = batch_size
        self.threads = threads
        self.streams = streams
        residual_lb = None if residual_lb is None else checked_factor(residual_lb)  # before loading
        Core(1, residual_lb, strength)  # the settings' errors, before loading too
        session_threads = threads
        if streams > 1:
            session_threads = max(1, (threads or default_threads()) // streams)
        self.session = open_session(self.model_path, backend, threads=session_threads)
        self.info = self.session.info
        #: What the spectra go through around the network (runtime/core.py).
        self.core = Core(self.info.length_multiple, residual_lb, strength)
        # On a multi-threaded CPU session ONNX Runtime's convolutions take another path for a
        # lone row than for a row of a larger batch (another summation order): the last bits
        # of a spectrum would depend on its batch (shipped float32 model, L <= 8192). run_batch.
        self._lone_row_differs = backend == "ort" and (session_threads or default_threads()) > 1

    @classmethod
    def default(cls, backend: str = "ort", **kwargs) -> Denoiser:
        """The model shipped with the package (int8 for the CPU backend "ort")."""
        return cls(default_model_path(backend), backend=backend, **kwargs)

    def run_batch(self, z: np.ndarray) -> np.ndarray:
        """The network on one batch of the canonical input z [B, L_pad] (runtime/scaling.py).

        A lone row on a multi-threaded CPU session runs as two copies, so that its output is
        bit for bit the one it gets in any larger batch: the batch job, the Ray engine and a
        multi-spectrum ``denoise`` give the same bits however the spectra were batched. (A
        single spectrum given alone to ``denoise`` keeps the faster lone-row call.)
        """
        if self._lone_row_differs and z.shape[0] == 1:
            return self.session.run(np.concatenate([z, z]))[:1]
        return self.session.run(z)

    @cached_property
    def fingerprint(self) -> str:
        """The artefact's file name and sha256 prefix (runtime/artefact.artefact_fingerprint):
        what the batch job's manifest records as the model of each output."""
        from nmrladder.runtime.artefact import artefact_fingerprint

        return artefact_fingerprint(self.session.path)

    @property
    def length_range(self) -> tuple[int, int]:
        return self.info.min_length, self.info.max_length

    def _checked(self, spectra, name: str) -> np.ndarray:
        x = np.asarray(spectra)
        if x.dtype == object or not np.issubdtype(x.dtype, np.number):
            raise InputError(f"{name}: expected numbers, got dtype {x.dtype}")
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise InputError(f"{name}: expected shape [N, L] or [L] with N, L > 0, got {x.shape}")
        self.info.check_length(x.shape[1], name)
        bad = ~np.isfinite(x)
        if bad.any():
            row, point = np.argwhere(bad)[0]
            raise InputError(f"{name}: NaN/Inf in spectrum {row} at point {point}")
        return x.astype(np.float32, copy=False)

    def denoise(
        self,
        spectra,
        name: str = "spectra",
        *,
        return_confidence: bool = False,
        return_report: bool = False,
        copies: int = DEFAULT_COPIES,
        ppm=None,
    ):
        """Denoise spectra [N, L] (or one [L]); the output has the input's shape and units.

        ``return_confidence``: also each output point's estimated error sigma (same shape; the
        network runs ``copies`` more times per spectrum: runtime/confidence.py);
        ``return_report``: also a :class:`~nmrladder.runtime.strength.RemovalReport` per
        spectrum (a list, or one report for one spectrum; ``ppm``: the ppm axis [L] or [N, L]
        for its positions). Returns y, (y, sigma), (y, reports) or (y, sigma, reports).
        """
        single = np.ndim(spectra) == 1
        x = self._checked(np.atleast_2d(spectra), name)
        if not (return_confidence or return_report):
            y = self.core.denoise(x, self._network, threads=self.threads)
            return y[0] if single else y
        checked = self.core.check(x, self._network, threads=self.threads,
                                  copies=checked_copies(copies) if return_confidence else 0,
                                  ppm=ppm)
        result = [checked.output[0] if single else checked.output]
        if return_confidence:
            result.append(checked.confidence[0] if single else checked.confidence)
        if return_report:
            result.append(checked.reports[0] if single else checked.reports)
        return tuple(result)

    def _network(self, z: np.ndarray) -> np.ndarray:
        """The network on the canonical input z [N, L_pad], in batches of ``batch_size``,
        ``streams`` of them side by side."""
        out = np.empty_like(z)
        chunks = [slice(s, s + self.batch_size) for s in range(0, z.shape[0], self.batch_size)]

        # one spectrum alone: the lone-row call, the fastest (run_batch's note)
        run_one = self.session.run if z.shape[0] == 1 else self.run_batch

        def run(chunk: slice) -> None:
            out[chunk] = run_one(z[chunk])

        if self.streams > 1 and len(chunks) > 1:
            # ORT's run is thread-safe and releases the GIL: the batches run side by side.
            with ThreadPoolExecutor(self.streams, thread_name_prefix="nmrladder-infer") as pool:
                list(pool.map(run, chunks))
        else:
            for chunk in chunks:
                run(chunk)
        return out

    def denoise_series(self, ladder, name: str = "ladder", **preprocess_options) -> SeriesResult:
        """Denoise a ladder [R, L] (rung 0 lowest SNR) and fuse it (METHOD 2.1-2.4, 3.1).

        The rungs are aligned, re-scaled, masked and their noise measured by the compiled
        kernels; every rung is denoised as acquired (no interpolation before the network), then
        aligned and re-scaled like the rung itself and fused with the rung's SNR weight.
        """
        from nmrladder.runtime.preprocess import apply_shift, preprocess_ladder

        result = preprocess_ladder(ladder, name=name, **preprocess_options)
        raw = self._checked(np.asarray(ladder, dtype=np.float32), name)
        denoised = self.denoise(raw - result.offsets[:, None].astype(np.float32), name)
        fields = result.shift_fields if result.shift_fields is not None else result.shifts
        aligned = (
            np.stack(
                [
                    apply_shift(denoised[k], -float(fields[k]))
                    if np.ndim(fields[k]) == 0
                    else _apply_field(denoised[k], fields[k])
                    for k in range(denoised.shape[0])
                ]
            )
            * result.scales[:, None]
        )
        fused = (result.weights @ aligned) / result.weights.sum() + result.offsets[-1]
        return SeriesResult(
            fused=fused.astype(np.float32),
            denoised=aligned.astype(np.float32),
            t_hat=float(result.t_hat),
            snr=result.snr,
            sigma=result.sigma,
            shifts=result.shifts,
            scales=result.scales,
            weights=result.weights,
            preprocessing=result,
        )


def _apply_field(spectrum: np.ndarray, field: np.ndarray) -> np.ndarray:
    from nmrladder.runtime.preprocess import apply_shift_field

    return apply_shift_field(spectrum, -np.asarray(field, dtype=np.float64))
