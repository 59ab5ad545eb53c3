"""The speed suites keep working: ``nmrladder bench`` on tiny shapes, each body run once.

NMRLADDER_BENCH_SMOKE=1 shrinks the suites (tiny models, lengths / 32, one round,
torch.compile through aot_eager; see benchmarks/conftest.py), so this runs the CLI, the three
suites and benchmarks/report.py end to end in well under a minute. It checks that they run
and render, never how fast anything is.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nmrladder.cli import main

ROOT = Path(__file__).resolve().parents[1]

GROUPS = (
    "like for like, L=16384 (product)",
    "latency, batch 1 (ORT CPU, product)",
    "throughput, L=16384 (ORT CPU, product)",
    "one stream (1 thread), L=16384 (ORT CPU, product)",
    "backends product, batch 8, L=16384",
    "backends method, batch 8, L=16384",
    "backends paired, batch 8, L=16384",
    "cold start",
    "end to end",
    "peak",
    "ORT profile",
    "model sizes, ORT CPU, batch 8, L=16384",
)


def test_bench_verb_has_help_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "examples:" in text and "nmrladder bench --quick" in text


def test_bench_suites_run_and_render(tmp_path):
    env = dict(
        os.environ,
        NMRLADDER_BENCH_SMOKE="1",
        NMRLADDER_BENCH_CACHE=str(tmp_path / "cache"),
    )
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "nmrladder.cli", "bench", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (markdown,) = out.glob("*-smoke.md")
    (saved,) = out.glob("*-smoke.json")
    text = markdown.read_text()
    assert markdown.stem.removesuffix("-smoke") in text.splitlines()[0]  # the machine tag
    for group in GROUPS:
        assert f"## {group}" in text
    figures = ("**Peak**", "of the sgemm peak", "of pure inference", "overlap", "**One stream**")
    for figure in figures:
        assert figure in text
    assert "## Skipped" in text or "torch CUDA" in text  # GPU rows run or say why not
    assert text in done.stdout  # the verb prints the tables
    # the verb states the load it ran under, and so does the report
    assert re.search(r"load average [\d.]+, [\d.]+, [\d.]+ on \d+ CPUs at the start", done.stdout)
    assert re.search(r"load average [\d.]+, [\d.]+, [\d.]+ on \d+ CPUs at the end", done.stdout)
    _check_like_for_like(text, data_of(saved))
    data = json.loads(saved.read_text())
    ran = {b["name"] for b in data["benchmarks"]}
    assert {"test_denoise_job", "test_pure_inference", "test_peak_sgemm[torch]"} <= ran
    assert {"test_backend[product-ort-cpu-int8]", "test_backend[method-ort-cpu-int8]"} <= ran
    assert "Its int8 copy runs" in text and "x float32 torch eager** (across precisions" in text
    assert {"test_backends_paired[product]", "test_backends_paired[method]"} <= ran
    assert "paired rounds" in text and "the int8 copy over float32 torch eager **" in text
    assert {"test_cold_session[product-int8]", "test_cold_first_inference[product-int8]"} <= ran
    assert "Cold start, " in text and ", int8**: session" in text
    job = next(b for b in data["benchmarks"] if b["name"] == "test_denoise_job")
    assert set(job["extra_info"]["stage_seconds"]) == {"read", "scale", "infer", "write"}
    pure, walls = job["extra_info"]["paired_pure_seconds"], job["extra_info"]["walls"]
    assert len(pure) == len(walls) >= 1
    extra = job["extra_info"]
    ways = zip(extra["pure_seconds_streams"], extra["pure_seconds_one_call"], strict=True)
    assert pure == pytest.approx([min(pair) for pair in ways])  # the faster way is the ceiling
    assert job["extra_info"]["paired_fraction"] == pytest.approx(np.median(pure) / np.median(walls))
    assert "timed before each round of the job" in text
    assert data["machine_info"]["nmrladder"]["cores"] >= 1


def data_of(path: Path) -> dict:
    return json.loads(path.read_text())


def _check_like_for_like(text: str, data: dict) -> None:
    """The report opens with the like-for-like table, every cell of this run measured (torch's
    int8 path: measured, or not run with the reason), and the load it ran under."""
    body = text.split("\n## ")
    assert body[1].startswith("Like for like: "), body[1][:80]
    table = body[1]
    rows = [line for line in table.split("\n") if line.startswith(("| float32 |", "| int8 |"))]
    assert len(rows) == 5
    assert "Load: 1-minute load average" in table and " CPUs (" in table
    ran = {b["name"] for b in data["benchmarks"]}
    for row in rows[:4]:
        assert "not measured" not in row and "not run" not in row, row
    torch_int8 = rows[4]
    if "test_like_for_like[torch-int8-1]" in ran:
        assert "not measured" not in torch_int8 and "not run" not in torch_int8
        (extra,) = [b["extra_info"] for b in data["benchmarks"]
                    if b["name"] == "test_like_for_like[torch-int8-1]"]
        # as many convolutions in int8 as the ONNX copy, within its error budget
        assert extra["int8_convolutions"] == extra["onnx_int8_convolutions"] >= 1
        assert extra["rms_diff_vs_ort_cpu_sigma"] <= 0.03
    else:
        assert "not run (below)" in torch_int8 and "not run here: torchao" in table
    batches = {(b["extra_info"]["backend"], b["extra_info"]["batch"])
               for b in data["benchmarks"] if b["group"].startswith("like for like")}
    assert {("ort-cpu", 1), ("torch-eager", 64), ("ort-cpu-int8", 64)} <= batches
    assert "**One spectrum**" in table and "**per spectrum at batch 64**" in table


def test_kernel_and_simulator_suites_run(tmp_path):
    """`nmrladder bench --suite all` adds these two suites; each body runs once here."""
    env = dict(os.environ, NMRLADDER_BENCH_SMOKE="1", NMRLADDER_BENCH_CACHE=str(tmp_path))
    suites = ["benchmarks/bench_kernels.py", "benchmarks/bench_simulate.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *suites, "-q", "--benchmark-disable",
         "-p", "no:cacheprovider"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


@pytest.mark.timeout(300)
def test_ray_benchmark_script_runs_and_checks_its_outputs(tmp_path):
    """benchmarks/bench_ray.py (a script): a tiny model on 16 short spectra, one repeat; it
    asserts that Ray's outputs equal the local engine's before printing its table."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'nmrladder[ray]')")
    table = tmp_path / "ray.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_ray.py"), "--spectra", "16",
         "--length", "1024", "--model-size", "tiny", "--repeats", "1", "--out", str(table)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = table.read_text()
    assert "| ray | 2 x 1 |" in text and "bit-identical" in text
