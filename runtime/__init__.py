"""nmrladder.runtime: torch-free preprocessing, inference sessions, Denoiser and file I/O."""

from nmrladder.runtime.conventions import SHIFT_CONVENTION, SNR_CONVENTION
from nmrladder.runtime.denoiser import Denoiser, SeriesResult
from nmrladder.runtime.errors import BackendUnavailable, InputError, ModelError, NmrLadderError
from nmrladder.runtime.preprocess import (
    LadderBatchResult,
    LadderResult,
    PreprocessOptions,
    preprocess_ladder,
    preprocess_ladders,
)

__all__ = [
    "SHIFT_CONVENTION",
    "SNR_CONVENTION",
    "BackendUnavailable",
    "Denoiser",
    "InputError",
    "LadderBatchResult",
    "LadderResult",
    "ModelError",
    "NmrLadderError",
    "PreprocessOptions",
    "SeriesResult",
    "preprocess_ladder",
    "preprocess_ladders",
]
