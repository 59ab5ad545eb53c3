"""Preparation of training ladders: ladders -> prepared ladders (NumPy only, no torch).

:func:`prepare` runs the runtime preprocessing (``preprocess_ladders``: alignment, masks,
re-scaling, noise, T_hat, pseudo-truth s_hat) chunk by chunk over a source
(:mod:`nmrladder.train.sources`) and builds what the network trains on, in the frame and
units that :mod:`nmrladder.train.prepared` describes: in memory, or streamed to an HDF5
cache (``out=``) and read back lazily. Ladders the preprocessing refuses are left out,
named, and the others go on. :func:`prepare_from_config` takes the options of a training
config's [data] section.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np

from nmrladder.runtime.errors import InputError
from nmrladder.train.prepared import (
    _FIELDS,
    PreparedFile,
    PreparedLadders,
    _PreparedWriter,
    open_prepared,
    prepared_nbytes,
    to_input_frame,
)
from nmrladder.train.sources import as_source


def _preprocess_keeping(x: np.ndarray, options: Mapping[str, Any], threads: int | None,
                        name: str, start: int):
    """preprocess_ladders over x [n, R, L], leaving out the ladders it refuses.

    Returns (result over the kept ladders, kept indices into x, skipped [(index in the whole
    source, reason)]). A real set can hold a ladder the preprocessing cannot use (e.g. a
    peak mask over the whole spectrum); that must not stop the training on the others.
    """
    from nmrladder.runtime.preprocess import (
        LadderBatchResult,
        preprocess_ladder,
        preprocess_ladders,
    )

    try:
        res = preprocess_ladders(x, name=name, threads=threads, **options)
        return res, np.arange(len(x)), []
    except InputError:
        pass  # find the culprits one by one
    results, kept, skipped = [], [], []
    for i in range(len(x)):
        try:
            results.append(preprocess_ladder(x[i], name=f"ladder {start + i}", **options))
            kept.append(i)
        except InputError as err:
            skipped.append((start + i, str(err)))
    if not results:
        raise InputError(f"{name}: the preprocessing refused every ladder; first: "
                         f"{skipped[0][1]}")
    names = [f.name for f in dataclass_fields(LadderBatchResult) if f.name != "params"]
    stacked = {k: np.stack([getattr(r, k) for r in results]) for k in names}
    return LadderBatchResult(**stacked, params=results[0].params), np.array(kept), skipped


def _prepare_chunk(
    x: np.ndarray, T_true: np.ndarray | None, options: Mapping[str, Any], t_source: str,
    rescale: bool, threads: int | None, name: str, start: int = 0,
) -> tuple[dict[str, np.ndarray], list[tuple[int, str]]]:
    """Prepared arrays (see _FIELDS) for one chunk of ladders x [n, R, L], and the ladders
    left out [(index, reason)]."""
    from nmrladder.runtime.preprocess import fuse, robust_scale_batch

    res, kept, skipped = _preprocess_keeping(x, options, threads, name, start)
    x = x[kept]
    T_true = None if T_true is None else np.asarray(T_true)[kept]
    shifts = np.asarray(res.shifts, dtype=np.float64)
    roll = np.rint(shifts).astype(np.int64)
    frac = shifts - roll
    if rescale:
        scales = np.asarray(res.scales, dtype=np.float64)
        s_hat = res.s_hat.astype(np.float64)
        sigma = np.asarray(res.sigma, dtype=np.float64)
    else:
        # METHOD 2.2 switched off (ablation): every rung keeps its own normalisation; the
        # pseudo-truth is fused from the aligned rungs without their scales.
        scales = np.ones_like(res.scales, dtype=np.float64)
        raw = res.aligned / res.scales[..., None]
        s_hat = np.stack([fuse(raw[i], res.weights[i]) for i in range(len(raw))])
        sigma = res.sigma / res.scales
    unit = sigma[:, 0]
    inputs = to_input_frame(x, res.offsets, roll, scales, unit)
    n, R, L = inputs.shape
    centers, sigmas = robust_scale_batch(inputs.reshape(n * R, L), threads=threads)
    if t_source == "true":
        if T_true is None or not np.all(np.isfinite(T_true)):
            raise InputError(f"{name}: data.t_source='true' needs the true T of every ladder "
                             "(simulated data, or a T column in the manifest)")
        T = np.asarray(T_true, dtype=np.float64)
    else:
        T = np.asarray(res.t_hat, dtype=np.float64)
    return {
        "inputs": inputs,
        "s_hat": (s_hat / unit[:, None]).astype(np.float32),
        "frac": frac,
        "roll": roll,
        "offsets": np.asarray(res.offsets, dtype=np.float64),
        "scales": scales,
        "unit": unit,
        "noise": sigma / unit[:, None],
        "centers": centers.reshape(n, R),
        "sigmas": sigmas.reshape(n, R),
        "peak_mask": res.peak_mask.astype(np.uint8),
        "base_mask": res.base_mask.astype(np.uint8),
        "T": T,
        "t_hat": np.asarray(res.t_hat, dtype=np.float64),
    }, skipped

def prepare(
    data: Any,
    preprocess_options: Mapping[str, Any] | None = None,
    *,
    t_source: str = "t_hat",
    rescale: bool = True,
    threads: int | None = None,
    chunk: int = 256,
    out: str | os.PathLike | None = None,
    progress: bool = False,
) -> PreparedLadders | PreparedFile:
    """Prepare ladders for training (see the module docstring, and train/prepared.py's).

    data: Ladders, a LadderFile, ManifestLadders, an array [N, R, L], or a path (.h5 of
    simulated ladders, or a manifest .csv). preprocess_options: keywords of
    ``preprocess_ladders``. t_source: "t_hat" or "true" (needs the true T). rescale: False
    keeps every rung's own normalisation (METHOD 2.2 off, an ablation). Ladders are
    preprocessed ``chunk`` at a time; with ``out`` the result streams to an HDF5 cache at
    that path (written atomically) and comes back as a lazily read :class:`PreparedFile`,
    else everything is held in memory.
    """
    if t_source not in ("t_hat", "true"):
        raise InputError(f"t_source={t_source!r}: use 't_hat' or 'true'")
    source = as_source(data)
    options = dict(preprocess_options or {})
    meta = {
        "source": source.name,
        "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "t_source": t_source,
        "rescale": bool(rescale),
        "units": "rung-0 noise sigma of each ladder",
    }
    if t_source == "true" and not source.has_true_t:
        raise InputError(f"{source.name}: data.t_source='true' needs the true T of every "
                         "ladder (simulated data, or a T column in the manifest)")
    bar = _progress(source.n, progress)
    try:
        return _prepare_source(source, options, t_source, rescale, threads, chunk, out, meta,
                               bar)
    finally:
        bar.close()
        source.close()


def _prepare_source(source, options, t_source, rescale, threads, chunk, out, meta, bar):
    """prepare()'s work: every chunk through _prepare_chunk, into memory or the cache."""
    skipped: list[tuple[int, str]] = []

    def parts():
        start = 0
        for x, T in source.iter_chunks(chunk):
            part, left_out = _prepare_chunk(x, T, options, t_source, rescale, threads,
                                            f"{source.name}[{start}:{start + len(x)}]", start)
            skipped.extend(left_out)
            start += len(x)
            bar.update(len(x))
            yield part

    def note() -> None:
        meta["skipped"] = [[i, why] for i, why in skipped]
        if skipped:
            first = skipped[0]
            warnings.warn(f"{source.name}: left out {len(skipped)} of {source.n} ladders the "
                          f"preprocessing refused (first: {first[1]})",
                          stacklevel=3)

    if out is not None:
        with _PreparedWriter(out, source.n, source.rungs, source.length, meta) as writer:
            for part in parts():
                writer.write(part)
            note()
            writer.set_meta(meta)
        return open_prepared(out)
    chunks = list(parts())
    note()
    arrays = {name: np.concatenate([p[name] for p in chunks]) for name in _FIELDS}
    for name in ("peak_mask", "base_mask"):
        arrays[name] = arrays[name].view(bool)
    return PreparedLadders(**arrays, meta=meta)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="ladder", desc="prepare", disable=not enabled)


def prepare_from_config(
    data: Any,
    config: Mapping[str, Any],
    cache_dir: str | os.PathLike | None = None,
    name: str = "train",
    progress: bool = False,
) -> PreparedLadders | PreparedFile:
    """:func:`prepare` with the options of a training config's [data] section.

    data.cache: "memory", "disk" (cache_dir/<name>.h5, needs cache_dir) or "auto" (disk
    when the prepared set would exceed data.memory_limit_mb and cache_dir is given).
    """
    from nmrladder.train.config import preprocess_options

    d = config["data"]
    source = as_source(data)
    size_mb = prepared_nbytes(source.n, source.rungs, source.length) / 2**20
    disk = d["cache"] == "disk" or (d["cache"] == "auto" and size_mb > d["memory_limit_mb"])
    if disk and cache_dir is None:
        if d["cache"] == "disk":
            raise InputError("data.cache='disk' needs a folder for the cache")
        disk = False
    out = Path(cache_dir) / f"{name}.h5" if disk else None
    return prepare(source, preprocess_options(config), t_source=d["t_source"],
                   rescale=d["rescale"], threads=config["run"]["threads"],
                   chunk=d["prepare_chunk"], out=out, progress=progress)
