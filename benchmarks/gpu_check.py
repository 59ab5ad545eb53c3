"""Every GPU check of nmrladder in one call (for a lent GPU machine; < 8 minutes).

    python benchmarks/gpu_check.py --out $OUT [--minutes 7] [--onnx MODEL.onnx]

Runs from a bare checkout without installing the package (the kernels then fall back to the
NumPy reference). Each step is skipped, with the reason recorded, when its library or device is
missing, and the remaining steps are skipped when the time budget runs out:

1. environment: GPU, CUDA, torch, onnxruntime providers, TensorRT;
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


def _import_from_checkout():
    """Make `nmrladder.*` importable from the folders of this checkout (no install needed)."""
    sys.path.insert(0, str(ROOT))
    import nmrladder

    if str(ROOT) not in nmrladder.__path__:
        nmrladder.__path__.append(str(ROOT))  # nmrladder.runtime -> ROOT/runtime, ...


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
        except SkipStep as skip:
            status, value = {"status": "skipped", "reason": str(skip)}, None
        except ImportError as missing:  # BackendUnavailable included: not there is not broken
            status, value = {"status": "skipped", "reason": str(missing)}, None
        except Exception as err:  # recorded, and the next checks still run
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


class SkipStep(Exception):
    pass


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


def environment() -> dict:
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


def main() -> int:
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
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    _import_from_checkout()
    import numpy as np

    check = Check(args.minutes)
    env = check.step("environment", environment)
    state: dict = {}

    def build_reference_model():
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

    def export_reference():
        from nmrladder.export.onnx_export import export_onnx

        if args.onnx is not None:
            state["onnx"] = args.onnx
            raise SkipStep(f"--onnx {args.onnx}: the given file is checked, nothing exported")
        result = export_onnx(
            state["model"],
            args.out / "reference.onnx",
            max_length=32768,
            parity_largest=args.length,
        )
        state["onnx"] = result.path
        return {"cpu_parity": result.parity.summary()}

    def torch_cuda():
        import torch

        if not torch.cuda.is_available():
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
        error = float(np.abs(gpu - cpu).max() / np.abs(cpu).max())
        return {"relative_max_error_vs_cpu": error, "parity_1e-4": error <= 1e-4, **speed}

    def ort_provider(provider: str):
        def run_check():
            from nmrladder.export.parity import onnxruntime_runner
            from nmrladder.runtime.sessions import OrtSession

            if "onnx" not in state:
                raise SkipStep("no ONNX export")
            session = OrtSession(state["onnx"], provider=provider)
            z = state["z"]
            reference = onnxruntime_runner(state["onnx"])(z)
            got = session.run(z)
            error = float(np.abs(got - reference).max() / np.abs(reference).max())
            tolerance = 1e-4 if provider == "cuda" else 1e-3
            return {
                "relative_max_error_vs_ort_cpu": error,
                f"parity_{tolerance:g}": error <= tolerance,
                **_throughput(session.run, z),
            }

        return run_check

    def native_tensorrt(precision: str):
        def run_check():
            from nmrladder.export.parity import onnxruntime_runner
            from nmrladder.export.tensorrt_build import Profile, build_engine
            from nmrladder.runtime.sessions import TensorRTSession

            if env is None or not env.get("tensorrt"):
                raise SkipStep("tensorrt is not installed here")
            if "onnx" not in state:
                raise SkipStep("no ONNX export")
            profile = Profile(
                256, args.length, max(args.length, 32768), 1, args.batch, max(args.batch, 16)
            )
            plan, sidecar = build_engine(
                state["onnx"],
                args.out / f"reference.{precision}.plan",
                precision=precision,
                profiles=(profile,),
                timing_cache=args.out / "timing.cache",
            )
            session = TensorRTSession(plan)
            z = state["z"]
            reference = onnxruntime_runner(state["onnx"])(z)
            got = session.run(z)
            error = float(np.abs(got - reference).max() / np.abs(reference).max())
            tolerance = 1e-3 if precision == "fp32" else 2e-2
            return {
                "relative_max_error_vs_ort_cpu": error,
                f"parity_{tolerance:g}": error <= tolerance,
                "sidecar": json.loads(sidecar.read_text()) | {"artefact": "..."},
                **_throughput(session.run, z),
            }

        return run_check

    check.step("reference_model", build_reference_model)
    if "model" in state:
        check.step("export_onnx_cpu_parity", export_reference)
        check.step("torch_cuda", torch_cuda)
        check.step("ort_cuda_ep", ort_provider("cuda"))
        check.step("ort_tensorrt_ep", ort_provider("tensorrt"))
        for precision in ("fp32", "fp16"):
            check.step(f"tensorrt_{precision}", native_tensorrt(precision))

    (args.out / "gpu_check.json").write_text(json.dumps(check.results, indent=2, default=str))
    lines = ["| check | status | detail |", "| --- | --- | --- |"]
    for name, result in check.results.items():
        detail = {k: v for k, v in result.items() if k not in ("status", "traceback", "sidecar")}
        lines.append(f"| {name} | {result['status']} | {json.dumps(detail, default=str)[:300]} |")
    (args.out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["status"] != "failed" for r in check.results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
