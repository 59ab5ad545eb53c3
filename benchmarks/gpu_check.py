"""Every GPU check of nmrladder in one call (for a lent GPU machine; < 8 minutes).

    python benchmarks/gpu_check.py --out $OUT [--minutes 7] [--onnx MODEL.onnx]

Runs from a bare checkout without installing the package (the kernels then fall back to the
NumPy reference). A step is skipped, with the reason recorded, only when its library or a
CUDA device is missing (checked before the step starts), or when the time budget runs out.
Anything else is a failure and makes the exit status 1: a CUDA or TensorRT error, an ONNX
Runtime session that fell back to the CPU, a parity miss.

1. environment: GPU, CUDA, torch, onnxruntime packages and providers, TensorRT;
2. a reference model: a seeded U-Net of the shipped model's config (read from
   runtime/models/default.onnx's metadata) exported to ONNX with the CPU parity check, or,
   with --onnx, that exported file (steps 4-5 run it; step 3 runs a seeded U-Net of its
   config);
3. torch CUDA vs torch CPU: parity and throughput at L = 16384;
4. ONNX Runtime CUDA EP (and TensorRT EP) vs ONNX Runtime CPU: parity and throughput;
5. native TensorRT engines fp32 / fp16 (one small profile): parity vs ONNX Runtime CPU,
   the engine's sidecar, throughput.

Writes gpu_check.json and gpu_check.md to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Parity tolerances, relative to the reference's largest magnitude.
TOLERANCES = {"torch_cuda": 1e-4, "cuda": 1e-4, "tensorrt": 1e-3, "fp32": 1e-3, "fp16": 2e-2}


def _import_from_checkout():
    """Make `nmrladder.*` importable from the folders of this checkout (no install needed)."""
    sys.path.insert(0, str(ROOT))
    import nmrladder

    if str(ROOT) not in nmrladder.__path__:
        nmrladder.__path__.append(str(ROOT))  # nmrladder.runtime -> ROOT/runtime, ...


class SkipStep(Exception):
    """The step's library or device is missing: not there is not broken."""


class Check:
    def __init__(self, minutes: float):
        self.deadline = time.monotonic() + 60 * minutes
        self.results: dict[str, dict] = {}

    def step(self, name: str, function, *args):
        if time.monotonic() > self.deadline:
            self.results[name] = {"status": "skipped", "reason": "time budget spent"}
            return None
        started = time.monotonic()
        try:
            value = function(*args)
            status = {"status": "ok"} if value is None else {"status": "ok", **value}
            verdict = (value or {}).get("parity")
            if verdict and not verdict["passed"]:  # a parity miss is a failure
                status["status"] = "failed"
                status["error"] = (
                    f"parity miss: relative max error {verdict['relative_max_error']:.3g} > "
                    f"{verdict['tolerance']:g}"
                )
        except SkipStep as skip:
            status, value = {"status": "skipped", "reason": str(skip)}, None
        except ModuleNotFoundError as missing:  # a library that is not installed
            status, value = {"status": "skipped", "reason": str(missing)}, None
        except Exception as err:  # CUDA/TensorRT errors, CPU fall-backs: recorded, next runs
            status, value = (
                {
                    "status": "failed",
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(limit=5),
                },
                None,
            )
        status["seconds"] = round(time.monotonic() - started, 2)
        self.results[name] = status
        why = status.get("reason", status.get("error", ""))
        print(f"[gpu_check] {name}: {status['status']} {why}", flush=True)
        return value

    @property
    def exit_code(self) -> int:
        return 0 if all(r["status"] != "failed" for r in self.results.values()) else 1


def parity(got, reference, tolerance: float) -> dict:
    """Relative max error of ``got`` against ``reference``; passed only when finite and within."""
    import numpy as np

    error = float(np.abs(got - reference).max() / np.abs(reference).max())
    return {"relative_max_error": error, "tolerance": tolerance, "passed": error <= tolerance}


def _throughput(run, z, repeats: int = 20) -> dict:
    run(z)  # warm-up (engine/kernel selection)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(z)
        times.append(time.perf_counter() - started)
    times.sort()
    median = times[len(times) // 2]
    return {
        "batch": int(z.shape[0]),
        "length": int(z.shape[1]),
        "median_ms": round(1e3 * median, 3),
        "spectra_per_s": round(z.shape[0] / median, 1),
    }


def gpu_count() -> int | None:
    """CUDA devices by cuda-python (else torch); None when neither is installed. A missing
    driver is a SkipStep; any other CUDA error raises (a failure, not "no GPU")."""
    from nmrladder.runtime.cuda import cudart, device_count
    from nmrladder.runtime.errors import BackendUnavailable

    try:
        cudart()
    except BackendUnavailable:  # no cuda-python: ask torch, if it is a CUDA build
        try:
            import torch
        except ImportError:
            return None
        return torch.cuda.device_count() if torch.version.cuda else None
    try:
        return device_count()
    except BackendUnavailable as missing:
        raise SkipStep(str(missing)) from missing


def require_gpu() -> int | None:
    count = gpu_count()
    if count == 0:
        raise SkipStep("no CUDA device on this machine")
    return count


def environment() -> dict:
    from nmrladder.runtime.sessions import ort_packages

    info = {"python": sys.version.split()[0]}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    except ImportError:
        info["torch"] = None
    info["onnxruntime_packages"] = ort_packages()
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["ort_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def build_reference_model(state: dict, args) -> dict:
    import numpy as np
    import torch

    from nmrladder.export.onnx_export import read_onnx_info
    from nmrladder.train.model import ModelConfig, build_model

    # the artefact's metadata holds its ModelConfig (runtime/artefact.py)
    source = args.onnx or ROOT / "runtime" / "models" / "default.onnx"
    config = ModelConfig.from_dict(read_onnx_info(source).model_config)
    torch.manual_seed(0)
    state["model"] = build_model(config).eval()
    rng = np.random.default_rng(0)
    z = rng.normal(size=(args.batch, args.length)).astype(np.float32)
    z[:, args.length // 3] += 300.0  # a solvent-like line
    state["z"] = z
    return {"config_from": str(source), "model_config": config.to_dict()}


def export_reference(state: dict, args) -> dict:
    from nmrladder.export.onnx_export import export_onnx

    if args.onnx is not None:
        state["onnx"] = args.onnx
        raise SkipStep(f"--onnx {args.onnx}: the given file is checked, nothing exported")
    result = export_onnx(
        state["model"], args.out / "reference.onnx", max_length=32768, parity_largest=args.length
    )  # a CPU parity miss raises ModelError: a failure
    state["onnx"] = result.path
    return {"cpu_parity": result.parity.summary()}


def torch_cuda(state: dict) -> dict:
    import torch

    if not torch.version.cuda:
        raise SkipStep(f"torch {torch.__version__} is a CPU build")
    count = require_gpu()
    if not torch.cuda.is_available():
        if count:  # CUDA sees a device that torch cannot use: broken, not missing
            raise RuntimeError(f"torch sees no CUDA device, CUDA reports {count}")
        raise SkipStep("torch sees no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, z = state["model"], state["z"]
    with torch.no_grad():
        cpu = model(torch.from_numpy(z)).numpy()
        gpu_model = model.to("cuda")
        x = torch.from_numpy(z).cuda()

        def run(_z, x=x):
            out = gpu_model(x)
            torch.cuda.synchronize()
            return out

        gpu = run(z).cpu().numpy()
        speed = _throughput(run, z)
        state["model"] = model.to("cpu")
    return {"parity": parity(gpu, cpu, TOLERANCES["torch_cuda"]), **speed}


def ort_provider(state: dict, provider: str) -> dict:
    import onnxruntime as ort

    from nmrladder.export.parity import onnxruntime_runner
    from nmrladder.runtime.sessions import ORT_GPU_PROVIDERS, OrtSession, ort_packages

    if "onnx" not in state:
        raise SkipStep("no ONNX export")
    packages, wanted = ort_packages(), ORT_GPU_PROVIDERS[provider]
    # Both packages at once is a broken install, not a missing one: OrtSession refuses it.
    if len(packages) <= 1 and wanted not in ort.get_available_providers():
        raise SkipStep(f"{', '.join(packages) or 'onnxruntime'} here has no {wanted}")
    require_gpu()
    session = OrtSession(state["onnx"], provider=provider)  # refuses a CPU fall-back
    z = state["z"]
    reference = onnxruntime_runner(state["onnx"])(z)
    got = session.run(z)
    return {
        "providers": session.session.get_providers(),
        "parity": parity(got, reference, TOLERANCES[provider]),
        **_throughput(session.run, z),
    }


def native_tensorrt(state: dict, args, precision: str) -> dict:
    from nmrladder.export.parity import onnxruntime_runner
    from nmrladder.export.tensorrt_build import Profile, build_engine
    from nmrladder.runtime.cuda import cudart
    from nmrladder.runtime.sessions import TensorRTSession

    try:
        import tensorrt  # noqa: F401

        cudart()
    except ImportError as missing:  # BackendUnavailable for cuda-python included
        raise SkipStep(f"tensorrt or cuda-python is not installed here ({missing})") from missing
    if "onnx" not in state:
        raise SkipStep("no ONNX export")
    require_gpu()
    profile = Profile(256, args.length, max(args.length, 32768), 1, args.batch, max(args.batch, 16))
    plan, sidecar = build_engine(
        state["onnx"],
        args.out / f"reference.{precision}.plan",
        precision=precision,
        profiles=(profile,),
        timing_cache=args.out / "timing.cache",
    )
    z = state["z"]
    reference = onnxruntime_runner(state["onnx"])(z)
    with TensorRTSession(plan) as session:
        got = session.run(z)
        speed = _throughput(session.run, z)
    return {
        "parity": parity(got, reference, TOLERANCES[precision]),
        "sidecar": json.loads(sidecar.read_text()) | {"artefact": "..."},
        **speed,
    }


def run_checks(args) -> Check:
    check = Check(args.minutes)
    check.step("environment", environment)
    state: dict = {}
    check.step("reference_model", build_reference_model, state, args)
    if "model" in state:
        check.step("export_onnx_cpu_parity", export_reference, state, args)
        check.step("torch_cuda", torch_cuda, state)
        check.step("ort_cuda_ep", ort_provider, state, "cuda")
        check.step("ort_tensorrt_ep", ort_provider, state, "tensorrt")
        for precision in ("fp32", "fp16"):
            check.step(f"tensorrt_{precision}", native_tensorrt, state, args, precision)
    return check


def write_report(results: dict, out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    lines = ["| check | status | detail |", "| --- | --- | --- |"]
    for name, result in results.items():
        detail = {k: v for k, v in result.items() if k not in ("status", "traceback", "sidecar")}
        lines.append(f"| {name} | {result['status']} | {json.dumps(detail, default=str)[:300]} |")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    parser.add_argument("--minutes", type=float, default=7.0, help="time budget (default 7)")
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--onnx",
        type=Path,
        default=None,
        help="check this exported model instead of a seeded export of the shipped config",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    _import_from_checkout()
    check = run_checks(args)
    write_report(check.results, args.out)
    return check.exit_code


if __name__ == "__main__":
    sys.exit(main())
