"""The model's canonical input: what every backend does before and after the network.

A spectrum may arrive in any normalisation (max, area, z-score, raw intensities). The
network always sees it centred on its baseline level and divided by its noise sigma
(:func:`~nmrladder.runtime.preprocess.robust_scale_batch`, the MAD kernel), padded to the
length multiple of the network; the output is cropped and mapped back:

    z = (x - center) / sigma,   y = center + sigma * net(z)

So the denoiser is equivariant to scale and offset by construction: one model serves every
normalisation, and every rung of a ladder is denoised in its own noise units. Training,
evaluation and every runtime backend use these two functions (the ONNX metadata records
``input_scaling = "robust_noise_v1"``).
"""

from __future__ import annotations

import numpy as np

from nmrladder.runtime.errors import InputError

#: Name recorded in artefact metadata; bump it when the scaling below changes.
INPUT_SCALING = "robust_noise_v1"


def padded_length(length: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that holds ``length`` points."""
    return -(-length // multiple) * multiple


def to_model_input(
    spectra: np.ndarray,
    multiple: int,
    centers: np.ndarray | None = None,
    sigmas: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale spectra [N, L] to the network's input [N, L_pad] (float32, zero padding right).

    ``centers``/``sigmas`` [N] default to the robust baseline level and noise of each row.
    Returns ``(z, centers, sigmas)``. Padding with zeros is padding with baseline: after
    centring, zero is the baseline level.
    """
    from nmrladder.runtime.preprocess import robust_scale_batch, standardise

    x = np.asarray(spectra, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"spectra: expected shape [N, L] with L > 0, got {x.shape}")
    if centers is None or sigmas is None:
        centers, sigmas = robust_scale_batch(x, threads=threads)
    centers = np.asarray(centers, dtype=np.float64)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    flat = np.flatnonzero(~(sigmas > 0))
    if flat.size:
        raise InputError(
            f"spectrum {int(flat[0])} has zero noise (constant, or over half its points equal): "
            "nothing to scale it by"
        )
    return standardise(x, centers, sigmas, padded_length(x.shape[1], multiple)), centers, sigmas


def from_model_output(
    output: np.ndarray, centers: np.ndarray, sigmas: np.ndarray, length: int
) -> np.ndarray:
    """Crop the network output [N, L_pad] to ``length`` and undo the scaling (float32)."""
    y = np.asarray(output)[:, :length].astype(np.float64)  # cropped first: less to convert
    y *= np.asarray(sigmas)[:, None]
    y += np.asarray(centers)[:, None]  # centers + sigmas * y, the same two roundings
    return y.astype(np.float32)
