"""scripts/evaluate_model.py, the script behind docs/default-model.md and the training docs'
tables, still runs and reports what the evaluation library computes on the same sets (the
oracle: nmrladder.train.evaluate.evaluate_denoisers called directly)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nmrladder.runtime import Denoiser
from nmrladder.train.evaluate import evaluate_denoisers
from nmrladder.train.simulate import simulate_ladders

ROOT = Path(__file__).resolve().parents[1]
LADDERS, LENGTH = 4, 2048


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The folder layout scripts/simulate_sets.sh writes, with a few short ladders per set."""
    root = tmp_path_factory.mktemp("sets")
    for snr in (5, 10, 50):
        for split, seed in (("val", 200), ("test", 300)):
            folder = root / f"{split}_snr{snr}"
            folder.mkdir()
            simulate_ladders(LADDERS, 4, LENGTH, 2.0, float(snr), seed + snr).save(
                folder / "ladders.h5"
            )
    return root


@pytest.mark.timeout(300)
def test_evaluate_model_script_reports_the_library_figures(tiny_model_dir, data, tmp_path):
    model = tiny_model_dir / "model.onnx"
    summary, tables = tmp_path / "summary.json", tmp_path / "tables.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate_model.py"), str(model),
         "--data", str(data), "--limit", str(LADDERS), "--skip-ood", "--residual-lb",
         "--json", str(summary), "--markdown", str(tables)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    metrics = json.loads(summary.read_text())["metrics"]
    assert sorted(metrics) == ["SNR 10", "SNR 5", "SNR 50"]
    rows = {"nmrladder", "nmrladder + residual LB", "Savitzky-Golay", "line broadening",
            "matched line broadening"}
    assert rows <= set(metrics["SNR 5"])
    assert re.search(r"^\|\s*nmrladder \+ residual LB\s*\|", tables.read_text(), re.M)
    report = evaluate_denoisers(
        {"nmrladder": Denoiser(model, batch_size=8)},
        {"SNR 10": data / "test_snr10"},
        data / "val_snr10",
        limit=LADDERS,
    )
    expected = report.summary["SNR 10"]
    for method in ("nmrladder", "matched line broadening"):
        for key in ("gain_db", "gain_db_peaks", "f1", "height_ret", "integral_err"):
            assert metrics["SNR 10"][method][key] == pytest.approx(
                expected[method][key], abs=1e-4
            ), (method, key)
