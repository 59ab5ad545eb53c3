"""Inference speed of the network: latency, batch throughput, backends, cold start.

Fixed shapes, explicit threads (ONNX Runtime intra-op threads and torch.set_num_threads = 2;
see conftest.py), the models of conftest.py (the product model and METHOD's default U-Net)::

    .venv/bin/python -m pytest benchmarks/bench_inference.py --benchmark-enable --benchmark-only

Groups:

- ``like for like``: the product model at L = 16384, batch 1 (single-spectrum latency, p50
  and p99) and batch 64 (time per spectrum), per precision: float32 ONNX Runtime against
  float32 torch eager and torch.compile, the int8 copy ONNX Runtime runs against torch's own
  int8 path (PT2E with the x86 inductor quantizer, compiled: torch_int8.py), the same
  convolutions in int8. benchmarks/report.py puts it first, with the load it ran under.
- ``latency``: one spectrum at L = 8192 .. 65536 through ONNX Runtime CPU (the product: its
  int8 copy, as the CPU backend runs it); p50 and p99 over the rounds in extra_info.
- ``throughput``: batches of 1, 8 and 64 spectra at L = 16384 (spectra/s and points/s), int8.
- ``one stream``: batches of 1, 2, 4 and 8 on one single-threaded call, as each stream of
  the batch job runs them: its first and last batches are smaller than --batch-size
  (runtime/pipeline.py), which costs nothing if the time per spectrum is flat.
- ``backends <role>``: batch 8, L = 16384 on the same weights: ONNX Runtime CPU in float32,
  its int8 copy (export/quantize.py: what ``nmrladder denoise`` runs on CPUs; its rms
  departure from float32 in extra_info), the same weights exported at opset 20 (GELU as one
  op), torch eager and torch.compile (what a user would do instead), torch's int8 path
  (``torch-int8``, as above), and ORT CUDA / torch CUDA / TensorRT where present (skipped
  with the reason otherwise).
- ``backends paired``: the int8 copy, float32 ORT and torch eager in alternating rounds
  (batch 8, L = 16384), ratios taken round by round: the drift-free form of the ratios above.
- ``cold start``: session creation, first inference (the product's float32 file and its
  int8 copy, METHOD's float32), TensorRT engine deserialisation.

benchmarks/report.py turns the saved JSON into benchmarks/results/<machine>.md with the
ratios (ORT / torch eager, efficiency against the peak of bench_peak.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

LATENCY_LENGTHS = (8192, 16384, 32768, 65536)
BATCHES = (1, 8, 64)
STREAM_BATCHES = (1, 2, 4, 8)
L = 16384
BACKEND_BATCH = 8
# The first table of the report: one precision per pair of rows, at these batches.
LIKE_FOR_LIKE = ("ort-cpu", "torch-eager", "torch-compile", "ort-cpu-int8", "torch-int8")
LIKE_FOR_LIKE_BATCHES = (1, 64)
INT8 = ("ort-cpu-int8", "torch-int8")
BACKENDS = (
    "ort-cpu",
    "ort-cpu-int8",
    "ort-cpu-opset20",
    "torch-eager",
    "torch-compile",
    "torch-int8",
    "ort-cuda",
    "torch-cuda",
    "tensorrt",
)


def spectra(batch: int, length: int) -> np.ndarray:
    """Noise of unit sigma with a few tall lines: what the network sees after scaling."""
    rng = np.random.default_rng(batch * 100003 + length)
    x = rng.normal(size=(batch, length)).astype(np.float32)
    for row in x:
        row[rng.integers(0, length, 12)] += rng.uniform(5, 500, 12).astype(np.float32)
    return x


def _int8_session(model, sizes, threads: int | None = None):
    """The model's int8 copy, what the CPU backend runs (on ``threads``, default the suite's)."""
    from nmrladder.runtime.sessions import OrtSession

    return OrtSession(model.int8_copy(sizes.cache), threads=threads or sizes.threads)


# --------------------------------------------------------------------------- like for like


@pytest.mark.parametrize("batch", LIKE_FOR_LIKE_BATCHES)
@pytest.mark.parametrize("backend", LIKE_FOR_LIKE)
def test_like_for_like(benchmark, models, sizes, recorder, backend, batch):
    """The product model on one backend at one batch size, L = 16384: the report's first
    table pairs each ONNX Runtime row with torch's rows of the same precision."""
    model = models["product"]
    n = sizes.length(L)
    x = spectra(batch, n)
    benchmark.group = f"like for like, L={L} (product)"
    precision = "int8" if backend in INT8 else "float32"
    benchmark.extra_info.update(
        model.info(), length=n, batch=batch, backend=backend, precision=precision
    )
    run = _runner(model, backend, x, benchmark, sizes)
    _checked(model, backend, run, x, benchmark, sizes)
    rounds = sizes.rounds(50 if batch == 1 else 5)
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=2 if batch == 1 else 1)
    recorder(benchmark, spectra=batch, points=batch * n, flop=batch * model.gflop(n) * 1e9)


# --------------------------------------------------------------------------- latency


@pytest.mark.parametrize("length", LATENCY_LENGTHS)
def test_latency(benchmark, models, sizes, recorder, length):
    model = models["product"]
    n = sizes.length(length)
    session = _int8_session(model, sizes)
    x = spectra(1, n)
    benchmark.group = "latency, batch 1 (ORT CPU, product)"
    benchmark.extra_info.update(
        model.info(), length=n, batch=1, precision="int8", backend="ort-cpu-int8"
    )
    rounds = sizes.rounds(100 if length > 16384 else 200)
    benchmark.pedantic(session.run, (x,), rounds=rounds, iterations=1, warmup_rounds=3)
    recorder(benchmark, spectra=1, points=n, flop=model.gflop(n) * 1e9)


# --------------------------------------------------------------------------- throughput


@pytest.mark.parametrize("batch", BATCHES)
def test_throughput(benchmark, models, sizes, recorder, batch):
    model = models["product"]
    n = sizes.length(L)
    session = _int8_session(model, sizes)
    x = spectra(batch, n)
    benchmark.group = f"throughput, L={L} (ORT CPU, product)"
    benchmark.extra_info.update(
        model.info(), length=n, batch=batch, precision="int8", backend="ort-cpu-int8"
    )
    rounds = sizes.rounds({1: 50, 8: 20, 64: 5}[batch])
    benchmark.pedantic(session.run, (x,), rounds=rounds, iterations=1, warmup_rounds=1)
    recorder(benchmark, spectra=batch, points=batch * n, flop=batch * model.gflop(n) * 1e9)


@pytest.mark.parametrize("batch", STREAM_BATCHES)
def test_stream_batch(benchmark, models, sizes, recorder, batch):
    model = models["product"]
    n = sizes.length(L)
    session = _int8_session(model, sizes, threads=1)
    x = spectra(batch, n)
    benchmark.group = f"one stream (1 thread), L={L} (ORT CPU, product)"
    benchmark.extra_info.update(model.info(), length=n, batch=batch, precision="int8", threads=1)
    rounds = sizes.rounds({1: 40, 2: 20, 4: 10, 8: 6}[batch])
    benchmark.pedantic(session.run, (x,), rounds=rounds, iterations=1, warmup_rounds=1)
    recorder(benchmark, spectra=batch, points=batch * n, flop=batch * model.gflop(n) * 1e9)


# --------------------------------------------------------------------------- backends


def _torch_runner(model, backend: str, x: np.ndarray, benchmark, compile_backend: str):
    """A callable running the torch baseline on x, warmed up (compiled) outside the timing."""
    import copy
    import time

    import torch

    device = "cuda" if backend == "torch-cuda" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} sees no CUDA device")
    module = model.torch_module()
    if device == "cuda":
        module = copy.deepcopy(module).to(device)  # the CPU baselines keep the shared one
    if backend == "torch-compile":
        started = time.perf_counter()
        # one static graph per shape: a second shape would otherwise recompile the forward
        # with symbolic sizes (dynamo's automatic dynamic shapes), another program
        module = torch.compile(module, backend=compile_backend, dynamic=False)
        with torch.inference_mode():
            module(torch.from_numpy(x))  # compilation happens here, outside the timed rounds
        benchmark.extra_info["compile_s"] = time.perf_counter() - started
        benchmark.extra_info["compile_backend"] = compile_backend
    xt = torch.from_numpy(x).to(device)

    def run():
        with torch.inference_mode():
            y = module(xt)
            return y.cpu() if device == "cuda" else y  # the result on the host, like ORT

    return run


# role -> (converted int8 graph, its int8 convolutions): quantized once, compiled per shape
_TORCH_INT8: dict[str, tuple] = {}


def _torch_int8_runner(model, x: np.ndarray, benchmark, sizes):
    """torch's int8 path on x (torch_int8.py), compiled outside the timing; skipped with the
    reason where it cannot be built here (torchao missing)."""
    import time

    import torch
    from torch_int8 import available, compiled, quantize

    from nmrladder.export.onnx_export import read_onnx_info
    from nmrladder.export.quantize import _inputs

    reason = available()
    if reason:
        pytest.skip(reason)
    started = time.perf_counter()
    if model.role not in _TORCH_INT8:
        multiple = model.config.length_multiple
        # the calibration spectra of the ONNX copy (export/quantize.py), shrunk like it in smoke
        spectra, length = (4, 1024) if sizes.smoke else (16, 4096)
        calibration = _inputs(spectra, max(length, multiple), multiple, seed=1)
        _TORCH_INT8[model.role] = quantize(
            model.torch_module(), model.int8_copy(sizes.cache), calibration, multiple
        )
    converted, quantized = _TORCH_INT8[model.role]
    xt = torch.from_numpy(x)
    module = compiled(converted, xt, backend=sizes.compile_backend)
    onnx_int8 = read_onnx_info(model.int8_copy(sizes.cache)).extra["int8_convolutions"]
    benchmark.extra_info.update(
        compile_s=time.perf_counter() - started,
        compile_backend=sizes.compile_backend,
        int8_convolutions=quantized,
        onnx_int8_convolutions=len(onnx_int8),
        quantizer="PT2E, X86InductorQuantizer (torchao)",
    )

    def run():
        with torch.inference_mode():
            return module(xt)

    return run


def _runner(model, backend: str, x: np.ndarray, benchmark, sizes):
    """A callable running ``backend`` on x with ``model``'s weights (warm-up left to the
    caller, except compilation, which happens here)."""
    from nmrladder.runtime.sessions import OrtSession

    if backend == "ort-cpu":
        session = model.session()
        return lambda: session.run(x)
    if backend == "ort-cpu-int8":
        session = _int8_session(model, sizes)
        return lambda: session.run(x)
    if backend == "ort-cpu-opset20":
        session = OrtSession(model.exported_at_opset(20, sizes.cache), threads=sizes.threads)
        return lambda: session.run(x)
    if backend == "torch-int8":
        return _torch_int8_runner(model, x, benchmark, sizes)
    if backend.startswith("torch"):
        return _torch_runner(model, backend, x, benchmark, sizes.compile_backend)
    return _gpu_session_runner(model, backend, x, sizes.cache)


def _checked(model, backend: str, run, x: np.ndarray, benchmark, sizes) -> None:
    """Run once (the warm-up: kernels chosen, memory allocated) and check the output against
    float32 ORT CPU: the same function within float32 / fp16 tolerances, or, for an int8
    path, within the int8 copy's budget in noise sigmas (x is in noise sigmas, so is the
    output)."""
    out = np.asarray(run())
    if backend == "ort-cpu":
        return
    reference = model.session().run(x)
    error = float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))
    benchmark.extra_info["max_rel_diff_vs_ort_cpu"] = error
    rms = float(np.sqrt(np.mean(np.square(out - reference, dtype=np.float64))))
    benchmark.extra_info["rms_diff_vs_ort_cpu_sigma"] = rms
    if backend in INT8:
        from nmrladder.export.onnx_export import read_onnx_info

        budget = read_onnx_info(model.int8_copy(sizes.cache)).extra["int8_budget_sigma"]
        assert rms <= 1.5 * budget, f"{backend} departs from float32 by {rms:g} sigma rms"
    else:
        tolerance = 3e-2 if backend == "tensorrt" else 1e-3
        assert error <= tolerance, f"{backend} differs from ORT CPU by {error:g} of the scale"


def _gpu_session_runner(model, backend: str, x: np.ndarray, cache):
    from nmrladder.runtime.errors import BackendUnavailable

    try:
        if backend == "ort-cuda":
            session = model.session(provider="cuda")
        else:
            session = _tensorrt_session(model, x.shape, cache)
    except BackendUnavailable as err:
        pytest.skip(str(err))
    return lambda: session.run(x)


def _tensorrt_session(model, shape: tuple[int, int], cache):
    """A native fp16 engine with one profile around ``shape``, built once into the cache."""
    from nmrladder.runtime.sessions import TensorRTSession

    plan = _tensorrt_plan(model, shape, cache)
    return TensorRTSession(plan)


def _tensorrt_plan(model, shape: tuple[int, int], cache):
    from nmrladder.export.tensorrt_build import Profile, build_engine
    from nmrladder.runtime.cuda import import_tensorrt

    import_tensorrt()  # BackendUnavailable before any building
    batch, length = shape
    plan = cache / f"{model.onnx_path.stem}-b{batch}-l{length}.fp16.plan"
    if not plan.is_file():
        profile = Profile(length, length, length, 1, batch, max(batch, 8))
        build_engine(
            model.onnx_path,
            plan,
            precision="fp16",
            profiles=(profile,),
            timing_cache=cache / "tensorrt.timing-cache",
        )
    return plan


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("role", ("product", "method"))
def test_backend(benchmark, models, sizes, recorder, role, backend):
    model = models[role]
    n = sizes.length(L)
    x = spectra(BACKEND_BATCH, n)
    benchmark.group = f"backends {role}, batch {BACKEND_BATCH}, L={L}"
    benchmark.extra_info.update(model.info(), length=n, batch=BACKEND_BATCH, backend=backend)
    run = _runner(model, backend, x, benchmark, sizes)
    _checked(model, backend, run, x, benchmark, sizes)
    heavy = model.gflop(n) * BACKEND_BATCH > 50  # METHOD's default: seconds per call
    rounds = sizes.rounds(5 if heavy else 10)
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0 if heavy else 1)
    recorder(
        benchmark,
        spectra=BACKEND_BATCH,
        points=BACKEND_BATCH * n,
        flop=BACKEND_BATCH * model.gflop(n) * 1e9,
    )


PAIRED_SETTLE_SECONDS = 0.05


@pytest.mark.parametrize("role", ("product", "method"))
def test_backends_paired(benchmark, models, sizes, recorder, role):
    """float32 ORT and torch eager (their order swapped every other round), then the int8
    copy (the timed call), round after round.

    The backends groups time each backend in its own benchmark, minutes apart, while this
    VM's speed drifts from minute to minute (benchmarks/README.md); here each round's
    ratios compare calls made within a second of each other. extra_info holds every round's
    seconds and the per-round ratios' median and quartiles.
    """
    import time

    model = models[role]
    n = sizes.length(L)
    x = spectra(BACKEND_BATCH, n)
    benchmark.group = f"backends paired, batch {BACKEND_BATCH}, L={L}"
    benchmark.extra_info.update(model.info(), length=n, batch=BACKEND_BATCH)
    int8, float32 = _int8_session(model, sizes), model.session()
    timed = lambda: int8.run(x)  # noqa: E731
    others = {
        "ort-cpu": lambda: float32.run(x),
        "torch-eager": _torch_runner(model, "torch-eager", x, benchmark, sizes.compile_backend),
    }
    for run in (timed, *others.values()):
        run()  # warm-up: kernels chosen, memory allocated
    seconds = {name: [] for name in others}

    def run_others():
        # ORT's and torch's pool threads spin for a while after a call; a pause after each
        # call (the int8 one included) lets them sleep before the next backend runs
        # (the slowdown otherwise: benchmarks/README.md, "End to end").
        time.sleep(PAIRED_SETTLE_SECONDS)
        names = list(others) if len(seconds["ort-cpu"]) % 2 == 0 else list(others)[::-1]
        for name in names:
            started = time.perf_counter()
            others[name]()
            seconds[name].append(time.perf_counter() - started)
            time.sleep(PAIRED_SETTLE_SECONDS)
        return (), {}

    heavy = model.gflop(n) * BACKEND_BATCH > 50
    benchmark.pedantic(timed, setup=run_others, rounds=sizes.rounds(8 if heavy else 20))
    recorder(benchmark, spectra=BACKEND_BATCH, points=BACKEND_BATCH * n)
    if benchmark.stats is None:
        return
    seconds["ort-cpu-int8"] = list(benchmark.stats.stats.data)  # round by round, in order
    for name, times in seconds.items():
        benchmark.extra_info[f"{name}_seconds"] = times
    for slow, fast in (("torch-eager", "ort-cpu-int8"), ("ort-cpu", "ort-cpu-int8"),
                       ("torch-eager", "ort-cpu")):
        ratios = np.asarray(seconds[slow]) / np.asarray(seconds[fast])
        benchmark.extra_info[f"{slow}_over_{fast}"] = {
            "median": float(np.median(ratios)),
            "q25": float(np.percentile(ratios, 25)),
            "q75": float(np.percentile(ratios, 75)),
        }


# --------------------------------------------------------------------------- cold start


# The product's int8 copy is what the CPU backend opens; its float32 file, what GPUs open.
COLD_CASES = [("product", "float32"), ("product", "int8"), ("method", "float32")]


def _cold_model_path(model, sizes, precision: str) -> Path:
    return model.int8_copy(sizes.cache) if precision == "int8" else model.onnx_path


@pytest.mark.parametrize(("role", "precision"), COLD_CASES)
def test_cold_session(benchmark, models, sizes, role, precision):
    """Creating the ONNX Runtime session: parse, graph optimisation, weight pre-packing."""
    from nmrladder.runtime.sessions import OrtSession

    model = models[role]
    path = _cold_model_path(model, sizes, precision)
    benchmark.group = "cold start"
    benchmark.extra_info.update(model.info(), stage="session creation", precision=precision)
    benchmark.pedantic(OrtSession, (path,), {"threads": sizes.threads}, rounds=sizes.rounds(5))


@pytest.mark.parametrize(("role", "precision"), COLD_CASES)
def test_cold_first_inference(benchmark, models, sizes, role, precision):
    """The first run of a fresh session (one spectrum, L = 16384): buffer planning and
    allocation happen here. extra_info ``steady_s`` is a later run of the same session, so
    the difference is what the first call costs on top."""
    import time

    from nmrladder.runtime.sessions import OrtSession

    model = models[role]
    path = _cold_model_path(model, sizes, precision)
    x = spectra(1, sizes.length(L))
    sessions = []

    def fresh():
        sessions.append(OrtSession(path, threads=sizes.threads))
        return (sessions[-1],), {}

    benchmark.group = "cold start"
    benchmark.extra_info.update(
        model.info(), stage="first inference", length=x.shape[1], precision=precision
    )
    benchmark.pedantic(lambda s: s.run(x), setup=fresh, rounds=sizes.rounds(5))
    steady = []
    for _ in range(3):
        started = time.perf_counter()
        sessions[-1].run(x)
        steady.append(time.perf_counter() - started)
    benchmark.extra_info["steady_s"] = float(np.median(steady))


@pytest.mark.parametrize("role", ("product", "method"))
def test_cold_tensorrt_engine(benchmark, models, sizes, role):
    """Deserialising a TensorRT engine and creating its execution context."""
    from nmrladder.runtime.errors import BackendUnavailable
    from nmrladder.runtime.sessions import TensorRTSession

    model = models[role]
    try:
        plan = _tensorrt_plan(model, (BACKEND_BATCH, sizes.length(L)), sizes.cache)
    except BackendUnavailable as err:
        pytest.skip(str(err))
    benchmark.group = "cold start"
    benchmark.extra_info.update(model.info(), stage="TensorRT engine deserialisation")
    benchmark.pedantic(TensorRTSession, (plan,), rounds=sizes.rounds(5))


# --------------------------------------------------------------------------- model sizes

# The quality-versus-cost curve of docs/training.md: the shipped architecture at three
# widths (speed does not depend on the weights: seeded exports).
SIZE_WIDTHS = {"w16": (16, 32, 64, 64), "w24": (24, 48, 96, 96), "w32": (32, 64, 128, 128)}


@pytest.mark.parametrize("size", SIZE_WIDTHS)
def test_model_size(benchmark, sizes, recorder, torch_threads, seeded_export, smoke_config,
                    size):
    from nmrladder.runtime.sessions import OrtSession
    from nmrladder.train.model import ModelConfig, flops_per_spectrum

    if sizes.smoke:
        config = ModelConfig(**smoke_config)
    else:
        config = ModelConfig(depth=4, widths=SIZE_WIDTHS[size], dilations=(1, 2, 4, 8),
                             stem_stride=4)
    session = OrtSession(seeded_export(f"size-{size}", config), threads=sizes.threads)
    n = sizes.length(L)
    x = spectra(BACKEND_BATCH, n)
    benchmark.group = f"model sizes, ORT CPU, batch {BACKEND_BATCH}, L={L}"
    benchmark.extra_info.update(size=size, config=config.to_dict(), length=n,
                                batch=BACKEND_BATCH)
    benchmark.pedantic(session.run, (x,), rounds=sizes.rounds(15), iterations=1,
                       warmup_rounds=1)
    flop = flops_per_spectrum(config, n)
    recorder(benchmark, spectra=BACKEND_BATCH, points=BACKEND_BATCH * n,
             flop=BACKEND_BATCH * flop)
