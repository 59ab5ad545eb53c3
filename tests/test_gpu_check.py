"""benchmarks/gpu_check.py, the one call a lent GPU machine gets, runs its CPU steps here and
skips the GPU ones with their reasons. Oracle for the reference model: the shipped artefact's
own metadata (export/onnx_export.read_onnx_info)."""

import json
import subprocess
import sys
from pathlib import Path

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
