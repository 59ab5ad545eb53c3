"""The figures README.md and docs/ quote come from the results (issue 24): benchmarks/figures.py
writes every ``<!-- figures:NAME -->`` block from the benchmark results JSON and the shipped
model's evaluation summaries, and a block that differs from what those files give fails here.
The expected values are recomputed from the JSON with plain arithmetic, not with the
generator's code."""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import figures  # noqa: E402
import report  # noqa: E402

RESULTS = json.loads(figures.RESULTS_FILE.read_text())
EVALUATION = json.loads((ROOT / "runtime" / "models" / "default.json").read_text())["metrics"]


def median(name: str) -> float:
    (bench,) = [b for b in RESULTS["benchmarks"] if b["name"] == name]
    return bench["stats"]["median"]


def block(path: str, name: str) -> str:
    text = (ROOT / path).read_text()
    (found,) = [m.group(2) for m in figures.BLOCK.finditer(text) if m.group(1) == name]
    return found


def test_every_marked_block_is_what_the_results_give():
    stale = figures.stale(figures.Sources())
    assert not stale, f"run `python benchmarks/figures.py` to rewrite: {stale}"


def test_each_figure_is_used_and_the_blocks_sit_where_the_numbers_were():
    used = {
        m.group(1) for path in figures.documents() for m in figures.BLOCK.finditer(path.read_text())
    }
    assert used == set(figures.FIGURES)


def test_the_quoted_speed_figures_equal_the_json_arithmetic():
    float32 = median("test_backend[product-ort-cpu]")
    int8 = median("test_backend[product-ort-cpu-int8]")
    ratio = f"{float32 / int8:.2f}x"
    assert f"{ratio} faster than float32 ORT at batch 8" in block("docs/export.md", "export-int8")
    assert f"{ratio} faster than float32 at batch 8" in block("docs/runtime.md", "runtime-int8")
    speed = block("README.md", "readme-speed")
    one = median("test_latency[16384]")  # batch 1, the int8 copy
    assert f"one spectrum takes **{one * 1e3:.3g} ms**" in speed
    per_spectrum_64 = median("test_throughput[64]") / 64
    assert f"**{per_spectrum_64 * 1e3:.3g} ms** per spectrum at batch 64" in speed
    assert f"float32 ONNX Runtime {float32 / 8 * 1e3:.3g} ms" in speed
    assert "torch's own int8 path not measured in this results file" in speed
    start = RESULTS["machine_info"]["nmrladder"]["load_average_at_start"][0]
    assert f"under a load average of {start}" in speed
    cell = block("docs/default-model.md", "default-model-speed")
    assert cell.startswith(f"{float32 / 8 * 1e3:.3g} ms in float32") and cell.endswith("| met")


def test_the_quoted_quality_figures_equal_the_evaluation_json():
    five = EVALUATION["SNR 5"]
    residual = block("README.md", "readme-residual")
    assert f"peak F1 is {five['nmrladder + residual LB']['f1']:.2f} instead of " \
           f"{five['nmrladder']['f1']:.2f}" in residual
    quality = block("README.md", "readme-quality")
    gains = [EVALUATION[s]["nmrladder"]["gain_db"] for s in ("SNR 5", "SNR 10", "SNR 50")]
    assert f"({min(gains):+.0f} to {max(gains):+.0f} dB over the whole spectrum" in quality
    best5 = max(five[b]["gain_db_peaks"] for b in figures.BASELINES)
    assert five["nmrladder"]["gain_db_peaks"] < best5  # so SNR 5 must read as behind
    assert re.search(r"behind it at SNR 5 \(", quality)
    int8 = json.loads((ROOT / "runtime" / "models" / "default.int8.json").read_text())["metrics"]
    pair = f"F1 {five['nmrladder']['f1']:.3f} -> {int8['SNR 5']['nmrladder']['f1']:.3f}"
    assert pair in block("docs/export.md", "export-int8")


def _copy_documents(root: Path) -> None:
    for path in figures.documents():
        target = root / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def test_a_hand_edited_block_is_caught_and_rewritten(tmp_path):
    _copy_documents(tmp_path)
    readme = tmp_path / "README.md"
    text = readme.read_text()
    edited = re.sub(r"(<!-- figures:readme-residual -->.*?)0\.90", r"\g<1>0.95", text,
                    count=1, flags=re.S)
    assert edited != text
    readme.write_text(edited)
    src = figures.Sources()
    assert figures.stale(src, tmp_path) == ["README.md: readme-residual"]
    assert figures.write(src, tmp_path) == [readme]
    assert readme.read_text() == text
    assert figures.stale(src, tmp_path) == [] and figures.write(src, tmp_path) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a <!-- figures:no-such-figure -->x<!-- /figures --> b", "no figure named"),
        ("a <!-- figures:readme-quality -->x b", "without its pair"),
        ("a <!-- figures:readme-speed -->x<!-- /figures -->", "on lines of its own"),
        ("a <!-- figures:readme-quality -->\nx\n<!-- /figures -->", "inline in a sentence"),
    ],
)
def test_malformed_blocks_are_named_errors(text, problem):
    with pytest.raises(figures.FigureError, match=problem):
        figures.rewrite(text, figures.Sources(), "doc.md")


def _record(data: dict, backend: str, batch: int, seconds: float) -> dict:
    """A benchmark record as bench_inference.py writes it: the like-for-like group at batch 1
    and 64, the backends group at batch 8."""
    bench = copy.deepcopy(next(b for b in data["benchmarks"] if b["name"] == "test_latency[16384]"))
    if batch == 8:
        group, name = "backends product, batch 8, L=16384", f"test_backend[product-{backend}]"
    else:
        group, name = "like for like, L=16384 (product)", f"test_like_for_like[{backend}-{batch}]"
    bench.update(group=group, name=name, fullname=f"x::{name}",
                 params={"backend": backend, "batch": batch})
    bench["stats"].update(median=seconds, data=[seconds] * 3, max=seconds)
    bench["extra_info"].update(backend=backend, batch=batch, p99_s=seconds * 1.1)
    return bench


def test_cells_the_file_lacks_say_so_and_a_new_run_fills_them(tmp_path):
    """The saved run has no batch 1 / 64 rows for torch, nor torch's int8 path: the table says
    "not measured in this results file"; a run with the like-for-like group (and torch's int8
    path in the backends group) fills every cell."""
    old = report.like_for_like_table(report.load([figures.RESULTS_FILE]))
    rows = {line.split(" | ")[1]: line for line in old if line.startswith("| float32 |")
            or line.startswith("| int8 |")}
    assert rows["torch eager"].count(report.NOT_MEASURED) == 2  # batch 1 and 64
    assert rows[report.LIKE_ROWS[-1][2]].count(report.NOT_MEASURED) == 3
    assert report.NOT_MEASURED not in rows["ONNX Runtime CPU, the int8 copy"]
    data = copy.deepcopy(RESULTS)
    times = {}
    for i, (_, backend, _) in enumerate(report.LIKE_ROWS):
        for batch in (1, 64):
            times[backend, batch] = (i + 1) * 1e-3 * batch
            data["benchmarks"].append(_record(data, backend, batch, times[backend, batch]))
    data["benchmarks"].append(_record(data, "torch-int8", 8, 0.05))
    path = tmp_path / "new.json"
    path.write_text(json.dumps(data))
    table = "\n".join(report.like_for_like_table(report.load([path])))
    assert report.NOT_MEASURED not in table
    int8_row = next(line for line in table.split("\n") if line.startswith("| int8 | torch"))
    # torch int8 (row 5) over the ORT int8 copy (row 4) at batch 1, 8 (the saved file's
    # backends group) and 64
    ratio_1 = times["torch-int8", 1] / times["ort-cpu-int8", 1]
    ratio_8 = 0.05 / median("test_backend[product-ort-cpu-int8]")
    ratio_64 = (times["torch-int8", 64] / 64) / (times["ort-cpu-int8", 64] / 64)
    assert int8_row.endswith(f"| {ratio_1:.2f}x; {ratio_8:.2f}x; {ratio_64:.2f}x |")
    assert "load average 1.48 at the start of the run and 1.92 at its end, on 2 CPUs" in table
    text = figures.readme_speed(figures.Sources(results=path))
    assert f"one spectrum takes **{report.seconds(times['ort-cpu-int8', 1])}**" in text
    assert report.NOT_MEASURED not in text


def test_no_pasted_speed_ratio_outside_the_blocks():
    """A speed-up of ORT, the int8 copy or torch quoted outside a block would drift again."""
    ratio = re.compile(r"\b\d+(\.\d+)?(-\d+(\.\d+)?)?x\b")
    subject = re.compile(r"int8|\bORT\b|ONNX Runtime|torch eager|torch\.compile")
    pasted = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = figures.BLOCK.sub("", path.read_text())
        for paragraph in re.split(r"\n\s*\n", text):
            for sentence in re.split(r"(?<=[.;])\s", " ".join(paragraph.split())):
                if subject.search(sentence) and ratio.search(sentence):
                    pasted.append(f"{path.name}: {sentence[:120]}")
    assert not pasted, pasted


def test_check_mode_exits_nonzero_on_drift(tmp_path, monkeypatch, capsys):
    _copy_documents(tmp_path)
    monkeypatch.setattr(figures, "ROOT", tmp_path)
    assert figures.main(["--check"]) == 0
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("figures:readme-speed -->\n",
                                                 "figures:readme-speed -->\nstale ", 1))
    assert figures.main(["--check"]) == 1
    assert "stale: README.md: readme-speed" in capsys.readouterr().out
    assert figures.main([]) == 0 and figures.main(["--check"]) == 0


def test_the_results_markdown_is_the_report_of_its_json():
    """results/<machine>.md is benchmarks/report.py's rendering of the JSON beside it."""
    markdown = figures.RESULTS_FILE.with_suffix(".md").read_text()
    assert markdown == report.render(report.load([figures.RESULTS_FILE])), (
        "re-render it: python benchmarks/report.py benchmarks/results/"
        f"{figures.RESULTS_FILE.name} --quiet"
    )
