"""`nmrladder demo` (what `make demo` runs) end to end on small sizes: every stage runs, its
tables are printed and its plots and files are written."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")


def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "nmrladder.cli", "demo", "--out", str(out), "--samples", "2",
         "--length", "4096", "--test-spectra", "8", "--train-steps", "8"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    for heading in ("== 1. preprocessing", "== 2. the shipped default model",
                    "== 3. round trip", "demo done"):
        assert heading in text, heading
    for row in ("default model", "Savitzky-Golay", "matched line broadening", "T_hat"):
        assert row in text, row
    assert (out / "ladder0.png").stat().st_size > 10_000
    assert (out / "series0.png").stat().st_size > 10_000
    assert list((out / "default_model").rglob("default_model_*.png"))
    trip = out / "round_trip"
    assert (trip / "small.onnx").is_file() and (trip / "run" / "model.safetensors").is_file()
    from nmrladder.runtime.io import read_spectrum

    inputs = sorted((trip / "spectra").iterdir())
    outputs = sorted(p for p in (trip / "denoised").iterdir() if p.suffix in (".csv", ".npz"))
    assert len(inputs) == len(outputs) == 6
    for source, result in zip(inputs, outputs, strict=True):
        a, b = read_spectrum(source), read_spectrum(result)
        np.testing.assert_array_equal(a.ppm, b.ppm)  # the axis is kept
        assert not np.array_equal(a.intensities, b.intensities)
    assert "6 of 6 files denoised" in text
