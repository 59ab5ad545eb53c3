"""Shared set-up of the inference suites (bench_inference, bench_end_to_end, bench_peak).

- Threads: ONNX Runtime intra-op threads and torch.set_num_threads are both THREADS (2 unless
  NMRLADDER_BENCH_THREADS says otherwise); OpenBLAS stays at one thread except inside the
  peak sgemm (its idle workers spin and would take a core from everything else).
- Models under test: the shipped ``runtime/models/default.onnx`` as the product when it
  exists, else the candidate product config exported with seeded random weights; METHOD's
  default U-Net (64-128-256-256) as the reference point. Exports are cached in
  NMRLADDER_BENCH_CACHE (default ~/.cache/nmrladder/bench). The torch baselines are built
  from the ONNX file's own initializers, and their outputs are checked once against ONNX
  Runtime's, so every backend runs the same weights; torch's int8 path quantizes the same
  convolutions as the ONNX int8 copy (torch_int8.py).
- Sizes: NMRLADDER_BENCH_SMOKE=1 shrinks every shape (lengths / 32, tiny models, one round,
  torch.compile through aot_eager) so tests/test_bench_smoke.py runs each body in seconds;
  NMRLADDER_BENCH_QUICK=1 keeps the shapes and takes fewer rounds (``nmrladder bench --quick``).
- Machine: CPU model, cores (usable by the run, and the machine's CPU count), library
  versions, the load average at the start of the session (machine_info of the JSON), at its
  end, and at the start of each benchmark (its extra_info), with the CPU share other
  processes took while each ran.
"""

from __future__ import annotations

import os

# Before numpy is imported anywhere (bench_kernels has the same policy): OpenBLAS workers
# spin after use; bench_peak raises the count only around its own sgemm.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import ast  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SMOKE = os.environ.get("NMRLADDER_BENCH_SMOKE") == "1"
QUICK = os.environ.get("NMRLADDER_BENCH_QUICK") == "1"
THREADS = int(os.environ.get("NMRLADDER_BENCH_THREADS", "2"))
# inductor compiles C++ for every graph, slow even for a tiny model: the smoke run checks the
# dynamo path only.
COMPILE_BACKEND = os.environ.get(
    "NMRLADDER_BENCH_COMPILE_BACKEND", "aot_eager" if SMOKE else "inductor"
)
CACHE = Path(
    os.environ.get("NMRLADDER_BENCH_CACHE", Path.home() / ".cache" / "nmrladder" / "bench")
)
SEED = 20241127
LOAD_AT_START = os.getloadavg()

# The candidate product config and METHOD's default (their FLOPs: docs/model.md).
CONFIGS = {
    "product": {
        "depth": 4,
        "widths": (24, 48, 96, 96),
        "dilations": (1, 2, 4, 8),
        "stem_stride": 4,
    },
    "method": {},
}
SMOKE_CONFIGS = {
    "product": {"depth": 2, "widths": (8, 8), "dilations": (1, 2), "stem_stride": 4},
    "method": {"depth": 2, "widths": (8, 16), "dilations": (1, 2)},
}
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "runtime" / "models" / "default.onnx"


# --------------------------------------------------------------------------- machine


def _cpuinfo(field: str) -> str | None:
    """The first /proc/cpuinfo line's value for field (None off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    import platform

    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_tag() -> str:
    """Short name of this machine for result files, e.g. ``amd-epyc-2c-avx512``."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-")
    slug = re.sub(r"-(processor|cpu|with-radeon.*|\d+-core.*)$", "", slug)
    tag = f"{slug}-{cores()}c"
    return tag + ("-avx512" if "avx512f" in cpu_flags() else "")


def machine_summary() -> dict:
    import numpy
    import onnxruntime

    try:
        import torch

        torch_version = torch.__version__
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    except ImportError:
        torch_version, gpu = "not installed", ""
    return {
        "tag": machine_tag(),
        "cpu": cpu_model(),
        "cores": cores(),
        "cpu_count": os.cpu_count(),
        "avx512": "avx512f" in cpu_flags(),
        "gpu": gpu,
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch_version,
        "threads": THREADS,
        "load_average_at_start": [round(v, 2) for v in LOAD_AT_START],
        "mode": "smoke" if SMOKE else "quick" if QUICK else "full",
    }


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["nmrladder"] = machine_summary()


SKIPPED: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    """Remember why a benchmark was skipped (no GPU, ...), for the report."""
    if report.skipped and isinstance(report.longrepr, tuple):
        SKIPPED.append(
            (report.nodeid.split("::")[-1], report.longrepr[2].removeprefix("Skipped: "))
        )


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["nmrladder"] = {
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "skipped": SKIPPED,
    }


def cpu_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every process included."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    hz = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / hz, (busy + idle + iowait) / hz


@pytest.fixture(autouse=True)
def _benchmark_context(request):
    """Hardware, versions, the load average and the CPU share other processes took while
    the benchmark ran (``others_cpu_share``: the machine's busy time minus this process's,
    over its capacity; 0.5 on 2 cores = one core taken) into every benchmark's extra_info."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    benchmark.extra_info["machine"] = request.getfixturevalue("machine")
    benchmark.extra_info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    busy, total = cpu_jiffies()
    own = sum(os.times()[:2])
    yield
    busy_after, total_after = cpu_jiffies()
    if total_after > total:
        others = (busy_after - busy) - (sum(os.times()[:2]) - own)
        benchmark.extra_info["others_cpu_share"] = round(
            max(0.0, others) / (total_after - total), 3
        )


@pytest.fixture(scope="session")
def machine() -> dict:
    return machine_summary()


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Shapes and repetitions, shrunk in smoke mode and thinned in quick mode."""

    smoke: bool = SMOKE
    quick: bool = QUICK
    threads: int = THREADS
    cache: Path = CACHE  # exported models and TensorRT engines
    compile_backend: str = COMPILE_BACKEND

    def length(self, full: int) -> int:
        return max(256, full // 32) if self.smoke else full

    def rounds(self, full: int) -> int:
        if self.smoke:
            return 1
        return max(3, full // 5) if self.quick else full

    def gemm(self, full: int) -> int:
        return 256 if self.smoke else full


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return Sizes()


def record_rates(benchmark, *, spectra: int = 0, points: int = 0, flop: float = 0.0) -> None:
    """p50 / p99 of the rounds and the rates they imply, into extra_info.

    Nothing is recorded when benchmarking is disabled (stats is None then).
    """
    if benchmark.stats is None:
        return
    import numpy as np

    data = np.asarray(benchmark.stats.stats.data)
    median = float(np.median(data))
    info = benchmark.extra_info
    info["p50_s"] = median
    info["p99_s"] = float(np.percentile(data, 99))
    if spectra:
        info["spectra"] = spectra
        info["spectra_per_s"] = spectra / median
    if points:
        info["points_per_s"] = points / median
    if flop:
        info["gflop_per_call"] = flop / 1e9
        info["gflop_per_s"] = flop / median / 1e9


@pytest.fixture(scope="session")
def recorder():
    return record_rates


# --------------------------------------------------------------------------- models


@dataclass
class BenchModel:
    """A model under test: its ONNX file and the same weights as a torch module."""

    role: str  # "product" or "method"
    label: str
    onnx_path: Path
    config: object  # nmrladder.train.model.ModelConfig
    max_abs_diff: float = float("nan")  # ORT vs the torch module, checked once
    _torch: object = field(default=None, repr=False)

    def torch_module(self):
        if self._torch is None:
            self._torch = torch_model_from_onnx(self.onnx_path)
        return self._torch

    def gflop(self, length: int) -> float:
        from nmrladder.train.model import flops_per_spectrum

        return flops_per_spectrum(self.config, length) / 1e9

    def session(self, provider: str = "cpu", threads: int = THREADS):
        from nmrladder.runtime.sessions import OrtSession

        return OrtSession(self.onnx_path, provider=provider, threads=threads)

    def exported_at_opset(self, opset: int, cache: Path) -> Path:
        """The same weights exported at another opset (cached by the source file's hash).

        Opset 20 has ONNX's Gelu op: the exporter then writes one node where opset 18 needs
        Div, Erf, Add, Mul, Mul, a pattern ONNX Runtime 1.2x-1.3x does not fuse.
        """
        from nmrladder.export.onnx_export import export_onnx, read_onnx_info, sha256_of

        digest = sha256_of(self.onnx_path)[:12]
        path = cache / f"{self.onnx_path.stem}-{digest}-opset{opset}.onnx"
        if not path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            max_length = read_onnx_info(self.onnx_path).max_length
            export_onnx(self.torch_module(), path, opset=opset, max_length=max_length, parity=False)
        return path

    def int8_copy(self, cache: Path) -> Path:
        """The int8 copy ORT runs on CPUs: the shipped one beside the shipped model, else made
        by export/quantize.py with its default budget (cached by the source file's hash)."""
        from nmrladder.export.onnx_export import sha256_of
        from nmrladder.export.quantize import quantize_int8

        beside = self.onnx_path.with_name(self.onnx_path.stem + ".int8.onnx")
        if self.onnx_path == SHIPPED_MODEL and beside.is_file():
            return beside
        digest = sha256_of(self.onnx_path)[:12]
        path = cache / f"{self.onnx_path.stem}-{digest}.int8.onnx"
        if not path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            small = {"spectra": 4, "length": 1024} if SMOKE else {}
            quantize_int8(self.onnx_path, path, progress=False, **small)
        return path

    def info(self) -> dict:
        return {
            "model": self.label,
            "onnx": str(self.onnx_path),
            "config": self.config.to_dict(),
            "max_abs_diff_ort_torch": self.max_abs_diff,
        }


def _name_scope(node) -> list[str]:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            return ast.literal_eval(prop.value)
    return []


def torch_model_from_onnx(path: Path):
    """The UNet1d of the file's metadata with the file's own weights.

    The dynamo exporter keeps each parameter under its state_dict name, except GroupNorm's
    affine pair, which it folds into the constant operands of the Mul / Add that follow
    InstanceNormalization (the exporter's name scopes say which module those nodes came
    from), and the decoder's transposed convolutions, which nmrladder exports as phase
    convolutions (``<up>.conv.weight``; export/upsampling.py) and which are mapped back here.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from nmrladder.export.onnx_export import read_onnx_info
    from nmrladder.export.upsampling import transposed_parameters
    from nmrladder.train.model import ModelConfig, build_model

    config = ModelConfig.from_dict(read_onnx_info(path).model_config)
    model = build_model(config).eval()
    graph = onnx.load(str(path)).graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    expected = model.state_dict()
    state = {name: arrays[name] for name in expected if name in arrays}
    for name in expected:
        module = name.rsplit(".", 1)[0]
        if name.endswith(".weight") and name not in state and f"{module}.conv.weight" in arrays:
            weight, bias = transposed_parameters(
                arrays[f"{module}.conv.weight"], arrays[f"{module}.conv.bias"]
            )
            state[name], state[f"{module}.bias"] = weight, bias
    for node in graph.node:
        scope = _name_scope(node)
        if node.op_type not in ("Mul", "Add") or len(scope) < 2:
            continue
        name = f"{scope[-2]}.{'weight' if node.op_type == 'Mul' else 'bias'}"
        if name not in expected or name in state:
            continue
        constants = [
            arrays[i]
            for i in node.input
            if i in arrays and arrays[i].size == expected[name].numel()
        ]
        if len(constants) == 1:
            state[name] = constants[0].reshape(tuple(expected[name].shape))
    missing = sorted(set(expected) - set(state))
    if missing:
        raise RuntimeError(f"{path}: no initializer found for {missing}")
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
    return model


def _export_seeded(role: str, config, cache: Path) -> Path:
    """Export config with seeded random weights once per config and toolkit version."""
    import torch

    from nmrladder import __version__
    from nmrladder.export.onnx_export import export_onnx
    from nmrladder.train.model import build_model

    key = json.dumps([config.to_dict(), SEED, __version__, torch.__version__], sort_keys=True)
    path = cache / f"{role}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.onnx"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    model = build_model(config).eval()
    # Non-trivial norm parameters, so the check of the weights loaded back from the ONNX file
    # (torch_model_from_onnx) would see a wrong mapping; speed does not depend on them.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_(1.0, 0.1)
                module.bias.normal_(0.0, 0.1)
    max_length = 4096 if SMOKE else 131072
    export_onnx(model, path, max_length=max_length, parity=False)  # checked in check_same()
    return path


def check_same(model: BenchModel, length: int) -> None:
    """ORT and the torch module on the same input: max |difference| <= 1e-4 of the output."""
    import numpy as np
    import torch

    x = np.random.default_rng(SEED).normal(size=(2, length)).astype(np.float32)
    x[:, length // 3] += 200.0  # a tall line, as real spectra in noise units have
    ort_out = model.session().run(x)
    with torch.inference_mode():
        torch_out = model.torch_module()(torch.from_numpy(x)).numpy()
    model.max_abs_diff = float(np.max(np.abs(ort_out - torch_out)))
    scale = float(np.max(np.abs(ort_out)))
    assert model.max_abs_diff <= 1e-4 * scale, (
        f"{model.label}: ORT and torch differ by {model.max_abs_diff:g} (scale {scale:g}); "
        "the torch baseline does not hold the ONNX file's weights"
    )


def _make_model(role: str, sizes: Sizes) -> BenchModel:
    from nmrladder.export.onnx_export import read_onnx_info
    from nmrladder.train.model import ModelConfig

    if role == "product" and not sizes.smoke and SHIPPED_MODEL.is_file():
        config = ModelConfig.from_dict(read_onnx_info(SHIPPED_MODEL).model_config)
        model = BenchModel(role, "shipped default.onnx", SHIPPED_MODEL, config)
    else:
        config = ModelConfig(**(SMOKE_CONFIGS if sizes.smoke else CONFIGS)[role])
        widths = "-".join(map(str, config.widths))
        stem = f", stem stride {config.stem_stride}" if config.stem_stride > 1 else ""
        what = "candidate product" if role == "product" else "METHOD default"
        label = f"{what} {widths}{stem} (seeded)"
        model = BenchModel(role, label, _export_seeded(role, config, CACHE), config)
    check_same(model, max(sizes.length(2048), 4 * config.length_multiple))
    return model


@pytest.fixture(scope="session")
def torch_threads():
    """torch with THREADS intra-op threads (the ORT sessions get the same number)."""
    import torch

    torch.set_num_threads(THREADS)
    return torch


@pytest.fixture(scope="session")
def models(sizes, torch_threads) -> dict[str, BenchModel]:
    started = time.perf_counter()
    out = {role: _make_model(role, sizes) for role in ("product", "method")}
    print(f"\n[bench] models ready in {time.perf_counter() - started:.1f} s")
    return out


@pytest.fixture(scope="session")
def seeded_export():
    """export(name, config) -> an ONNX file of config with seeded weights (cached), for
    benchmarks whose speed does not depend on trained weights."""
    return lambda name, config: _export_seeded(name, config, CACHE)


@pytest.fixture(scope="session")
def smoke_config():
    """The tiny stand-in config of smoke mode."""
    return SMOKE_CONFIGS["product"]
