"""benchmarks/gpu_check.py, the one call a lent GPU machine gets, runs its CPU steps here and
skips the GPU ones with their reasons; with the GPU libraries' answers faked, a CUDA error, a
CPU fall-back or a parity miss fails it. Oracles: the shipped artefact's own metadata
(export/onnx_export.read_onnx_info) for the reference model, ONNX Runtime's CPU output for
parity."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gpu_fakes import FakeCudart, cudaError_t, fake_tensorrt, install

from nmrladder.export.onnx_export import read_onnx_info
from nmrladder.train.model import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "runtime" / "models" / "default.onnx"


def _gpu_check(out: Path, *extra: str) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out),
         "--minutes", "4", "--length", "1024", "--batch", "2", *extra],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    return done.returncode, json.loads((out / "gpu_check.json").read_text())


def test_gpu_check_builds_the_shipped_config_exports_it_and_states_each_skip(tmp_path):
    code, results = _gpu_check(tmp_path)
    assert code == 0, results
    shipped = ModelConfig.from_dict(read_onnx_info(SHIPPED).model_config).to_dict()
    assert results["reference_model"]["model_config"] == shipped
    assert "PASS" in results["export_onnx_cpu_parity"]["cpu_parity"]
    for name, result in results.items():
        assert result["status"] in ("ok", "skipped"), (name, result)
        if result["status"] == "skipped":
            assert result["reason"], name  # every skip says why
    assert {"torch_cuda", "ort_cuda_ep", "tensorrt_fp32", "tensorrt_fp16"} <= set(results)


def test_gpu_check_names_an_unreadable_model(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    code, results = _gpu_check(tmp_path / "out", "--onnx", str(bad))
    assert code == 1
    assert results["reference_model"]["status"] == "failed"
    assert str(bad) in results["reference_model"]["error"]


# --- skips, failures and the exit status, with the GPU libraries' answers faked ------------
# (tests/gpu_fakes.py: cuda-python and TensorRT stand-ins; ONNX Runtime's fall-back to the
# CPU is the real one of the CPU build here, only its list of built-in providers is faked)


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location(
        "gpu_check_under_test", ROOT / "benchmarks" / "gpu_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main(gpu_check, monkeypatch, out: Path) -> tuple[int, dict]:
    monkeypatch.setattr(gpu_check, "_import_from_checkout", lambda: None)  # installed here
    monkeypatch.setattr(
        sys,
        "argv",
        ["gpu_check.py", "--out", str(out), "--minutes", "4", "--length", "1024",
         "--batch", "2", "--onnx", str(SHIPPED)],
    )
    code = gpu_check.main()
    return code, json.loads((out / "gpu_check.json").read_text())


def _raise(error):
    def step():
        raise error

    return step


def test_only_a_missing_library_or_device_is_a_skip(gpu_check):
    from nmrladder.runtime.cuda import CudaError
    from nmrladder.runtime.errors import BackendUnavailable, ModelError

    check = gpu_check.Check(minutes=1)
    one = np.ones(4)
    steps = {
        "cuda_error": _raise(CudaError("cudaMalloc(8) failed: cudaErrorMemoryAllocation")),
        "fell_back": _raise(BackendUnavailable("ort-cuda", "fell back to the CPU")),
        "tensorrt_error": _raise(ModelError("m.plan: TensorRT refused to execute")),
        "no_module": _raise(ModuleNotFoundError("No module named 'tensorrt'")),
        "no_device": _raise(gpu_check.SkipStep("no CUDA device on this machine")),
        "parity_miss": lambda: {"parity": gpu_check.parity(1.01 * one, one, 1e-3)},
        "parity_ok": lambda: {"parity": gpu_check.parity(1.0001 * one, one, 1e-3)},
    }
    for name, step in steps.items():
        check.step(name, step)
    assert {name: result["status"] for name, result in check.results.items()} == {
        "cuda_error": "failed",
        "fell_back": "failed",
        "tensorrt_error": "failed",
        "no_module": "skipped",
        "no_device": "skipped",
        "parity_miss": "failed",
        "parity_ok": "ok",
    }
    assert "parity miss" in check.results["parity_miss"]["error"]
    assert check.exit_code == 1
    healthy = gpu_check.Check(minutes=1)
    healthy.step("parity_ok", steps["parity_ok"])
    healthy.step("no_device", steps["no_device"])
    assert healthy.exit_code == 0


def test_gpu_check_fails_when_onnxruntime_falls_back_to_the_cpu(gpu_check, monkeypatch, tmp_path):
    import onnxruntime

    install(monkeypatch, cudart=FakeCudart(devices=1))  # a GPU is there
    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    code, results = _main(gpu_check, monkeypatch, tmp_path)
    assert code == 1
    for step in ("ort_cuda_ep", "ort_tensorrt_ep"):
        assert results[step]["status"] == "failed", results[step]
        assert "fell back to ['CPUExecutionProvider']" in results[step]["error"]
    assert results["tensorrt_fp32"]["status"] == "skipped"  # no tensorrt: a skip


def test_gpu_check_fails_on_a_cuda_error(gpu_check, monkeypatch, tmp_path):
    cudart = FakeCudart(devices=1, malloc_status=cudaError_t.cudaErrorMemoryAllocation)
    install(monkeypatch, cudart=cudart, tensorrt=fake_tensorrt())
    code, results = _main(gpu_check, monkeypatch, tmp_path)
    assert code == 1
    for precision in ("fp32", "fp16"):
        result = results[f"tensorrt_{precision}"]
        assert result["status"] == "failed", result
        assert "CudaError" in result["error"] and "cudaErrorMemoryAllocation" in result["error"]


def test_gpu_check_fails_on_a_parity_miss_and_passes_without(gpu_check, monkeypatch, tmp_path):
    trt = fake_tensorrt()
    install(monkeypatch, cudart=FakeCudart(devices=1), tensorrt=trt)
    code, results = _main(gpu_check, monkeypatch, tmp_path / "same")
    assert code == 0, results
    for precision in ("fp32", "fp16"):
        assert results[f"tensorrt_{precision}"]["status"] == "ok"
        assert results[f"tensorrt_{precision}"]["parity"]["passed"]
    trt.offset = 10.0  # every output off by ten noise sigmas (the canonical scale's unit)
    code, results = _main(gpu_check, monkeypatch, tmp_path / "off")
    assert code == 1
    for precision in ("fp32", "fp16"):
        assert results[f"tensorrt_{precision}"]["status"] == "failed"
        assert "parity miss" in results[f"tensorrt_{precision}"]["error"]
