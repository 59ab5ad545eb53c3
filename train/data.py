"""Training data: ladders -> prepared ladders -> batches of crops (NumPy only, no torch).

The names of the training-data path, gathered from its modules:

    train/sources.py    the ladders' sources: a manifest CSV of real ladders
                        (:func:`read_manifest`), simulated ladders in memory or streamed from
                        the simulator's HDF5 file, an array [N, R, L] (:func:`as_source`)
    train/prepare.py    :func:`prepare`: the runtime preprocessing (alignment, masks,
                        re-scaling, noise, T_hat, pseudo-truth s_hat) chunk by chunk, into
                        memory or an HDF5 cache; :func:`prepare_from_config`
    train/prepared.py   what the network trains on: the frame and units of prepared ladders
                        (:func:`to_input_frame`, :func:`fractional_shift`), held in memory
                        (:class:`PreparedLadders`) or read lazily from the cache
                        (:class:`PreparedFile`)
    train/batches.py    :class:`BatchSampler`: deterministic batches from (seed, step), several
                        rungs of the same ladders, one crop window per ladder

The frame and amplitude choices are in train/prepared.py's docstring and docs/training.md
("Data pipeline").
"""

from __future__ import annotations

from nmrladder.train.batches import Batch, BatchSampler, RungPlan, step_rng
from nmrladder.train.prepare import prepare, prepare_from_config
from nmrladder.train.prepared import (
    PREPARED_FORMAT,
    PREPARED_VERSION,
    Prepared,
    PreparedFile,
    PreparedLadders,
    fractional_shift,
    open_prepared,
    prepared_nbytes,
    to_input_frame,
)
from nmrladder.train.sources import ManifestLadders, as_source, read_manifest

__all__ = [
    "PREPARED_FORMAT",
    "PREPARED_VERSION",
    "Batch",
    "BatchSampler",
    "ManifestLadders",
    "Prepared",
    "PreparedFile",
    "PreparedLadders",
    "RungPlan",
    "as_source",
    "fractional_shift",
    "open_prepared",
    "prepare",
    "prepare_from_config",
    "prepared_nbytes",
    "read_manifest",
    "step_rng",
    "to_input_frame",
]
