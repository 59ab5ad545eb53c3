"""The ladder chain (METHOD 2.1-2.4, 3.1) in native code, behind the reference's signatures.

:func:`preprocess_ladder` and :func:`preprocess_ladders` run the whole chain in one call of
the compiled ``ladder.preprocess_batch`` (the GIL released once for a whole batch), when
:func:`chain_refusal` finds nothing it cannot take; else the NumPy reference runs, and the
fallback is counted with its reason (runtime/dispatch.py). Results equal the reference's
(masks exactly, floats to rounding); errors are the reference's, word for word.
Both are public as ``nmrladder.runtime.preprocess.preprocess_ladder(s)``.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict
from dataclasses import fields as dataclass_fields

import numpy as np

from nmrladder.runtime import reference
from nmrladder.runtime.dispatch import checks as _checks
from nmrladder.runtime.dispatch import (
    fell_back,
    gaussian_taps,
    is_int,
    is_real,
    kernels_refusal,
    on_reference,
    threads_argument,
    window_taps,
)
from nmrladder.runtime.dispatch import ladder as _ladder
from nmrladder.runtime.dispatch import rescale as _rescale
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.reference import (
    SHIFT_SMOOTH_SIGMA,
    LadderBatchResult,
    LadderResult,
    PreprocessOptions,
)


def preprocess_ladder(ladder, name: str = "ladder", **options) -> LadderResult:
    """Run METHOD 2.1-2.4 and 3.1 on one ladder [R, L] (rung 0 = lowest SNR, R-1 = highest).

    The whole chain runs in native code (ladder.preprocess_batch); options and results as
    :func:`reference.preprocess_ladder`. Raises the reference's InputError on bad input.
    """
    opts = reference.make_options(**options)
    reason = chain_refusal(ladder, opts, ndim=2)
    if reason is not None:
        return on_reference(
            "preprocess_ladder", reason, reference.preprocess_ladder, ladder, name, **options
        )
    batch = _run_chain(np.asarray(ladder)[None], [name], opts, options, 1, want_fields=True)
    fields = batch.pop("shift_fields")
    result = LadderBatchResult(**batch, params=asdict(opts))[0]
    result.t_hat = float(result.t_hat)
    result.shift_fields = fields[0] if opts.local else None
    return result


def preprocess_ladders(
    batch, name: str = "ladders", threads: int | None = None, **options
) -> LadderBatchResult:
    """:func:`preprocess_ladder` over a batch [N, R, L], the ladders in parallel (``threads``).

    The native chain releases the GIL once for the whole batch; the fields come back
    stacked as :func:`reference.preprocess_ladders` stacks them.
    """
    arr = np.asarray(batch)
    if arr.ndim != 3:
        raise InputError(f"{name}: expected shape [N, R, L], got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: the batch is empty")
    opts = reference.make_options(**options)
    reason = chain_refusal(arr, opts, ndim=3)
    if reason is not None:
        return on_reference(
            "preprocess_ladders", reason, reference.preprocess_ladders, batch, name, **options
        )
    names = [f"{name}[{i}]" for i in range(arr.shape[0])]
    threads = threads_argument(threads)
    stacked = _run_chain(arr, names, opts, options, threads, want_fields=False)
    stacked.pop("shift_fields")
    return LadderBatchResult(**stacked, params=asdict(opts))


def chain_refusal(ladders, opts: PreprocessOptions, ndim: int = 2) -> str | None:
    """Why the native chain cannot take ``ladders`` (one ladder [R, L] for ``ndim`` 2, a batch
    [N, R, L] for 3) with ``opts``; None when it can.

    The reasons: the kernels may not run (runtime/dispatch.py, kernels_refusal); the input's
    shape or type is one the reference refuses or converts another way (too few rungs, too
    short, empty, not real numbers, rungs of different shapes); an option the chain does not
    implement or takes in another type (CHAIN_OPTIONS, _options_refusal).
    """
    reason = kernels_refusal()
    if reason is not None:
        return reason
    if isinstance(ladders, (list, tuple)) and len({np.shape(item) for item in ladders}) > 1:
        return "rungs of different shapes"
    arr = np.asarray(ladders)
    if arr.ndim != ndim:
        return f"shape {arr.shape}: {ndim} dimensions expected"
    if arr.dtype.kind not in "iuf":
        return f"dtype {arr.dtype}: integers and real floats only"
    if arr.shape[-2] < 2:
        return f"shape {arr.shape}: fewer than 2 rungs"
    if arr.shape[-1] == 0 or arr.shape[-1] < opts.min_length():
        return f"length {arr.shape[-1]}: the options need at least {opts.min_length()}"
    return _options_refusal(opts)


#: The PreprocessOptions the native chain implements: a reference with other options runs
#: on the reference (and tests/test_kernels.py fails until the kernel catches up).
CHAIN_OPTIONS = frozenset(
    {
        "reference",
        "max_lag",
        "local",
        "local_window",
        "local_max_lag",
        "n_anchors",
        "alpha",
        "dilate_radius",
        "dilate_relative",
        "erode_radius",
        "trend_radius",
        "smooth_windows",
        "smooth_polyorder",
        "weights",
        "gamma",
        "w_max",
        "scale_method",
        "snr_percentile",
    }
)



#: The PreprocessOptions fields that must be integers for the native chain.
_INTEGER_OPTIONS = (
    "max_lag",
    "local_window",
    "local_max_lag",
    "n_anchors",
    "dilate_radius",
    "erode_radius",
    "trend_radius",
    "smooth_polyorder",
)
#: ... and those that must be real numbers (``w_max`` may also be None).
_REAL_OPTIONS = ("alpha", "gamma", "snr_percentile")


def _options_refusal(opts: PreprocessOptions) -> str | None:
    """The first option the native chain does not take as given, and why; None for none."""
    unknown = {f.name for f in dataclass_fields(PreprocessOptions)} ^ CHAIN_OPTIONS
    if unknown:
        return f"options the chain does not implement: {sorted(unknown)}"
    for name in _INTEGER_OPTIONS:
        if not is_int(getattr(opts, name)):
            return f"option {name}={getattr(opts, name)!r} is not an integer"
    if opts.trend_radius < 0:
        return f"option trend_radius={opts.trend_radius} is negative"
    if not is_real(opts.dilate_relative):
        return f"option dilate_relative={opts.dilate_relative!r} is not a finite number"
    for name in _REAL_OPTIONS:
        if not isinstance(getattr(opts, name), numbers.Real):
            return f"option {name}={getattr(opts, name)!r} is not a real number"
    if opts.w_max is not None and not isinstance(opts.w_max, numbers.Real):
        return f"option w_max={opts.w_max!r} is not a real number"
    if opts.scale_method not in _rescale.SCALE_METHODS:
        return f"option scale_method={opts.scale_method!r} has no kernel"
    if window_taps(opts.smooth_windows, opts.smooth_polyorder) is None:
        return f"option smooth_windows={opts.smooth_windows!r}: odd integers only"
    return None


def _run_chain(arr, names, opts, options, threads, want_fields):
    """The native chain over arr [N, R, L] (chain_refusal found nothing): stacked result fields.

    Errors keep the reference's order and text: ladders are checked (checks.check_ladders)
    before any computes; the chain runs on the ladders before the first invalid one; the
    first ladder with a non-zero status, or else the first invalid one, is handed to the
    reference, which raises its own InputError (or computes a degenerate case the kernel
    defers to it, and its result is kept).
    """
    x32 = np.ascontiguousarray(arr, dtype=np.float32)
    offsets = np.zeros(x32.shape[:2])
    middles = np.zeros((*x32.shape[:2], 2))
    flags = _checks.check_ladders(x32, offsets, middles, threads)
    invalid = np.flatnonzero(flags)
    n_valid = int(invalid[0]) if invalid.size else x32.shape[0]
    if n_valid == 0:
        _raise_invalid(arr[0], opts, names[0])
    taps, tap_counts = window_taps(opts.smooth_windows, opts.smooth_polyorder)
    result = _ladder.preprocess_batch(
        x32[:n_valid],
        offsets[:n_valid],
        middles[:n_valid],
        fused=opts.reference == "fused",
        local=bool(opts.local),
        max_lag=opts.max_lag,
        local_window=opts.local_window,
        local_max_lag=opts.local_max_lag,
        n_anchors=opts.n_anchors,
        alpha=float(opts.alpha),
        dilate_radius=opts.dilate_radius,
        dilate_relative=float(opts.dilate_relative),
        erode_radius=opts.erode_radius,
        trend_radius=opts.trend_radius,
        savgol_taps=taps,
        tap_counts=tap_counts,
        weights_method=_rescale.WEIGHT_METHODS.get(opts.weights, _rescale.UNKNOWN_WEIGHT_METHOD),
        gamma=float(opts.gamma),
        has_cap=opts.w_max is not None,
        cap=float(opts.w_max) if opts.w_max is not None else 0.0,
        scale_method=_rescale.SCALE_METHODS[opts.scale_method],
        percentile=float(opts.snr_percentile),
        shift_taps=gaussian_taps(SHIFT_SMOOTH_SIGMA),
        want_fields=want_fields,
        threads=threads,
    )
    status = result.pop("status")
    del result["status_rung"], result["status_value"]
    for i in np.flatnonzero(status):
        # The reference raises this ladder's error, or decides the case the kernel deferred.
        _splice(result, i, reference.preprocess_ladder(arr[i], names[i], **options))
        fell_back("ladder chain", "a degenerate ladder the kernel defers to the reference")
    if n_valid < x32.shape[0]:
        _raise_invalid(arr[n_valid], opts, names[n_valid])
    result["offsets"] = offsets
    result["peak_mask"] = result["peak_mask"].view(bool)
    result["base_mask"] = result["base_mask"].view(bool)
    return result


def _splice(result: dict, i: int, computed: LadderResult) -> None:
    for key, values in result.items():
        if key == "shift_fields":
            if values is not None and computed.shift_fields is not None:
                values[i] = computed.shift_fields
        elif key != "offsets":
            values[i] = getattr(computed, key)


def _raise_invalid(invalid: np.ndarray, opts: PreprocessOptions, name: str) -> None:
    reference.validate_ladder(invalid, opts, name)  # raises the reference's message
    raise InputError(
        f"{name}: invalid once converted to float32, the kernels' input type (a value beyond "
        "the float32 range, or a rung that float32 rounding makes constant or of zero MAD); "
        "set NMRLADDER_KERNELS=reference to process it in float64"
    )


__all__ = ["CHAIN_OPTIONS", "chain_refusal", "preprocess_ladder", "preprocess_ladders"]
