"""Dispatch between the compiled kernels and the NumPy reference, shared by the preprocessing
modules (runtime/preprocess.py, runtime/chain.py).

- Which runs: the kernels when they are built and not switched off (``NMRLADDER_KERNELS=
  reference`` in the environment, read when this module is imported, or ``with
  use_reference(): ...`` within a block); :func:`kernels_refusal` says why not.
- Fallbacks are counted: a function that hands its input to the reference because the
  compiled path cannot take it records why (:func:`fell_back`); :func:`fallback_counts` is
  the tally of this process, and the batch job and series mode report what was added during
  their run (``JobSummary.fallbacks``). An empty tally means the compiled path ran throughout.
- Input conversion for the kernels: C-contiguous float32 or float64 arrays, masks as bytes,
  NaN/Inf refused with an :class:`InputError` before any kernel runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import numbers
import os
import threading
from collections import Counter

import numpy as np
from scipy.signal import savgol_coeffs

from nmrladder.runtime import reference
from nmrladder.runtime.errors import InputError

try:
    from nmrladder.kernels import align, checks, ladder, masks, rescale, robust
except ImportError:  # not built: everything runs on the reference (see kernels_refusal())
    align = checks = ladder = masks = rescale = robust = None
    KERNELS_BUILT = False
else:
    KERNELS_BUILT = True

_FORCE_REFERENCE = contextvars.ContextVar("nmrladder_force_reference", default=False)

# Read once: the environment switch applies to the process (use_reference() within it).
_ENVIRONMENT_FORCES_REFERENCE = (
    os.environ.get("NMRLADDER_KERNELS", "").strip().lower() == "reference"
)


@contextlib.contextmanager
def use_reference(enabled: bool = True):
    """Run the preprocessing functions on the NumPy reference inside the block (for
    comparisons). A context variable: threads started inside the block do not inherit it."""
    token = _FORCE_REFERENCE.set(enabled)
    try:
        yield
    finally:
        _FORCE_REFERENCE.reset(token)


def kernels_refusal() -> str | None:
    """Why no compiled kernel may run right now; None when they may."""
    if not KERNELS_BUILT:
        return "the compiled kernels are not built (pip install -e . builds them)"
    if _ENVIRONMENT_FORCES_REFERENCE:
        return "NMRLADDER_KERNELS=reference"
    if _FORCE_REFERENCE.get():
        return "use_reference()"
    return None


def kernels_on() -> bool:
    return KERNELS_BUILT and not _ENVIRONMENT_FORCES_REFERENCE and not _FORCE_REFERENCE.get()


def backend() -> str:
    """``"kernels"`` or ``"reference"``: what the preprocessing functions run on right now."""
    return "kernels" if kernels_on() else "reference"


# --------------------------------------------------------------------------- fallbacks

_FALLBACKS: Counter = Counter()
_FALLBACKS_LOCK = threading.Lock()


def fell_back(function: str, reason: str) -> None:
    """Count one call of ``function`` that ran on the reference, and why."""
    with _FALLBACKS_LOCK:
        _FALLBACKS[f"{function}: {reason}"] += 1


def on_reference(function: str, reason: str, compute, *args, **kwargs):
    """``compute(*args, **kwargs)`` (the reference's ``function``), counted as a fallback
    once it returns: an input the reference refuses raises its error and counts nothing."""
    result = compute(*args, **kwargs)
    fell_back(function, reason)
    return result


def fallback_counts() -> dict[str, int]:
    """``"function: reason" -> calls`` that ran on the reference in this process so far."""
    with _FALLBACKS_LOCK:
        return dict(_FALLBACKS)


def fallbacks_since(before: dict[str, int]) -> dict[str, int]:
    """The fallbacks counted since :func:`fallback_counts` returned ``before``."""
    now = fallback_counts()
    return {key: n - before.get(key, 0) for key, n in now.items() if n > before.get(key, 0)}


# --------------------------------------------------------------------------- input conversion


def threads_argument(threads: int | None) -> int:
    """The kernels' thread count: 0 for every OpenMP thread (None), else ``threads`` >= 1."""
    if threads is None:
        return 0
    if not isinstance(threads, numbers.Integral) or threads < 1:
        raise InputError(f"threads={threads!r}: use a positive integer, or None for all cores")
    return int(threads)


def floats(x) -> np.ndarray | None:
    """x as a C-contiguous float32 (kept) or float64 array in the machine's byte order (data
    read from files may come byte-swapped); None for what the kernels skip."""
    arr = np.asarray(x)
    if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8):
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    if arr.dtype.kind in "iub" or (arr.dtype.kind == "f" and arr.dtype.itemsize == 2):
        return np.ascontiguousarray(arr, dtype=np.float64)
    return None


def floats_refusal(x) -> str | None:
    """Why :func:`floats` skips ``x`` (its dtype); None when it converts it."""
    dtype = np.asarray(x).dtype
    if (dtype.kind == "f" and dtype.itemsize in (2, 4, 8)) or dtype.kind in "iub":
        return None
    return f"dtype {dtype}: the kernels take integers and real floats"


def checked(arr: np.ndarray, function: str, what: str) -> np.ndarray:
    """``arr``, or an InputError when it holds NaN/Inf."""
    bad = checks.nonfinite_count(arr.reshape(-1))
    if bad:
        raise InputError(f"{function}: {bad} NaN/Inf value(s) in {what}")
    return arr


def mask_bytes(mask, shape) -> np.ndarray | None:
    """mask as C-contiguous uint8 0/1 of the given shape, or None if it has another shape."""
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape):
        return None
    return np.ascontiguousarray(m).view(np.uint8)


def is_int(value) -> bool:
    return type(value) is int or isinstance(value, numbers.Integral)


def is_real(value) -> bool:
    """A finite real number."""
    if type(value) is not float and not isinstance(value, numbers.Real):
        return False
    return math.isfinite(value)


@functools.lru_cache(maxsize=64)
def savgol_taps(window: int, polyorder: int) -> np.ndarray:
    # reference.smooth: windows @ coeffs[::-1]
    if window <= 1:
        return np.ones(1)
    return np.ascontiguousarray(savgol_coeffs(window, polyorder)[::-1])


@functools.lru_cache(maxsize=64)
def gaussian_taps(sigma: float) -> np.ndarray:
    return np.ascontiguousarray(reference.gaussian_taps(sigma))


def window_taps(windows, polyorder):
    """(taps back to back, their counts) for the kernels, or None for what they do not cover."""
    if not isinstance(windows, (tuple, list)) or not windows or not is_int(polyorder):
        return None
    if not all(is_int(w) and (w <= 1 or w % 2 == 1) for w in windows):
        return None
    return _window_taps_cached(tuple(int(w) for w in windows), int(polyorder))


@functools.lru_cache(maxsize=64)
def _window_taps_cached(windows: tuple[int, ...], polyorder: int):
    taps = [savgol_taps(w, polyorder) for w in windows]
    return np.concatenate(taps), np.array([t.size for t in taps], dtype=np.intp)
