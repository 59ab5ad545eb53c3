"""The machine's float32 peak in the same run, and where the network's time goes.

    .venv/bin/python -m pytest benchmarks/bench_peak.py --benchmark-enable --benchmark-only

- ``peak``: a 4096 x 4096 float32 matrix product (sgemm, 2 threads) with numpy (OpenBLAS)
  and torch (MKL); GFLOP/s = 2 n^3 / median time. The faster of the two is the peak that
  benchmarks/report.py divides the network's achieved GFLOP/s by (efficiency).
- ``ORT profile``: one profiled ONNX Runtime run (batch 8, L = 16384, 2 threads) per model,
  its node time summed per op type (extra_info ``op_shares``): what limits the network.
  Profiling adds a little overhead per node, so that group's time is not a speed figure.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

N = 4096
PROFILE_BATCH = 8
PROFILE_L = 16384


@contextlib.contextmanager
def openblas_threads(count: int):
    """numpy's OpenBLAS at ``count`` threads inside the block (conftest.py keeps it at 1)."""
    setter = getter = None
    for library in glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*")):
        handle = ctypes.CDLL(library)  # already loaded by numpy: the same handle
        for prefix in ("scipy_openblas", "openblas"):
            if hasattr(handle, f"{prefix}_set_num_threads64_"):
                setter = getattr(handle, f"{prefix}_set_num_threads64_")
                getter = getattr(handle, f"{prefix}_get_num_threads64_")
            elif hasattr(handle, f"{prefix}_set_num_threads"):
                setter = getattr(handle, f"{prefix}_set_num_threads")
                getter = getattr(handle, f"{prefix}_get_num_threads")
    if setter is None:
        yield None  # another BLAS build: its own thread setting applies
        return
    before = getter()
    setter(count)
    try:
        yield getter()
    finally:
        setter(before)


@pytest.mark.parametrize("library", ("numpy", "torch"))
def test_peak_sgemm(benchmark, sizes, recorder, torch_threads, library):
    n = sizes.gemm(N)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    benchmark.group = "peak"
    benchmark.extra_info.update(n=n, library=library, threads=sizes.threads)
    if library == "torch":
        torch = torch_threads
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        benchmark.pedantic(torch.mm, (ta, tb), rounds=sizes.rounds(10), warmup_rounds=1)
    else:
        with openblas_threads(sizes.threads) as used:
            benchmark.extra_info["openblas_threads"] = used
            benchmark.pedantic(np.matmul, (a, b), rounds=sizes.rounds(10), warmup_rounds=1)
    recorder(benchmark, flop=2.0 * n**3)


def op_shares(profile: list[dict]) -> dict[str, float]:
    """Share of the last model run's node time per op type, largest first."""
    runs = [e for e in profile if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start, end = runs[-1]["ts"], runs[-1]["ts"] + runs[-1]["dur"]
    totals: dict[str, float] = defaultdict(float)
    for event in profile:
        if event.get("cat") == "Node" and start <= event["ts"] <= end:
            if event.get("name", "").endswith("_kernel_time"):
                totals[event["args"]["op_name"]] += event["dur"]
    whole = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return {op: round(dur / whole, 4) for op, dur in ranked}


@pytest.mark.parametrize("role", ("product", "method"))
def test_ort_profile(benchmark, models, sizes, role, tmp_path):
    import onnxruntime as ort
    from bench_inference import spectra

    model = models[role]
    options = ort.SessionOptions()
    options.intra_op_num_threads = sizes.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / f"ort-{role}")
    session = ort.InferenceSession(str(model.onnx_path), options, ["CPUExecutionProvider"])
    x = spectra(PROFILE_BATCH, sizes.length(PROFILE_L))
    name = session.get_inputs()[0].name
    session.run(None, {name: x})  # warm-up; op_shares reads the last run only
    benchmark.group = "ORT profile"
    benchmark.pedantic(session.run, (None, {name: x}), rounds=1, iterations=1)
    profile = json.loads(Path(session.end_profiling()).read_text())
    shares = op_shares(profile)
    benchmark.extra_info.update(model.info(), batch=PROFILE_BATCH, length=x.shape[1])
    benchmark.extra_info["op_shares"] = shares
    assert shares and abs(sum(shares.values()) - 1.0) < 1e-3
