"""Batch denoising of NMR files: the names of the local engine, gathered from its modules.

    runtime/inputs.py     input discovery: which files and folders are spectra
    runtime/stages.py     the per-input stages (read and prepare, finish and write), shared
                          with the Ray engine, and the per-input failure policy
    runtime/manifest.py   results, the manifest of finished outputs, and the resume plan
    runtime/batch_job.py  DenoiseJob: the threaded job that overlaps files and inference
    runtime/series.py     series mode: one SNR ladder per input, denoised and fused

What a spectrum goes through around the network is runtime/core.py's, the same on every path.
"""

from __future__ import annotations

from nmrladder.runtime.batch_job import DenoiseJob
from nmrladder.runtime.batch_job import _Batcher as _Batcher  # the tests' scheduling checks
from nmrladder.runtime.inputs import colliding_names, discover_inputs
from nmrladder.runtime.manifest import (
    MANIFEST,
    FileResult,
    JobSummary,
    Manifest,
    plan_resume,
    remove_stale_temporaries,
)
from nmrladder.runtime.series import read_ladder, run_series
from nmrladder.runtime.stages import (
    OUTPUT_SNR_EVERY,
    STAGES,
    ScaledInput,
    estimated_snr,
    read_scaled,
    split_read_time,
    unexpected_error,
    write_denoised,
)

__all__ = [
    "MANIFEST",
    "OUTPUT_SNR_EVERY",
    "STAGES",
    "DenoiseJob",
    "FileResult",
    "JobSummary",
    "Manifest",
    "ScaledInput",
    "colliding_names",
    "discover_inputs",
    "estimated_snr",
    "plan_resume",
    "read_ladder",
    "read_scaled",
    "remove_stale_temporaries",
    "run_series",
    "split_read_time",
    "unexpected_error",
    "write_denoised",
]
