"""The figures README.md, docs/ and benchmarks/README.md quote, written from the results.

    .venv/bin/python benchmarks/figures.py           # rewrite every marked block
    .venv/bin/python benchmarks/figures.py --check   # exit 1 naming each block that differs

A marked block is the text between ``<!-- figures:NAME -->`` and ``<!-- /figures -->`` (inline
in a sentence or a table row, or on lines of its own); NAME picks a function of FIGURES, which
writes it from the benchmark results file (RESULTS_FILE: the reference machine's, saved by
``nmrladder bench``) and the shipped model's evaluation summaries and quantization report
(runtime/models/). Whatever stands between the markers is replaced: change the function or
the results, never the block. tests/test_doc_figures.py fails when a block differs from what
the files give, so a quoted figure cannot drift from its source.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402  (benchmarks/report.py, beside this file)

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = ROOT / "benchmarks" / "results" / "amd-epyc-2c-avx512.json"
MODELS = ROOT / "runtime" / "models"
DOCUMENTS = ("README.md", "docs/*.md", "benchmarks/README.md")
BLOCK = re.compile(r"<!-- figures:([\w-]+) -->(.*?)<!-- /figures -->", re.S)
MARKER = re.compile(r"<!-- /?figures\b")
SNRS = ("SNR 5", "SNR 10", "SNR 50")  # the in-distribution test sets, rung-0 SNR
BASELINES = ("Savitzky-Golay", "line broadening", "matched line broadening")
NARROW_OOD = ("13C SNR 5", "19F SNR 5", "1H 1.0-1.2 GHz SNR 5")
NETWORK, RESIDUAL = "nmrladder", "nmrladder + residual LB"
NOT_MEASURED = report.NOT_MEASURED


class FigureError(ValueError):
    """A document's markers are malformed, or name no figure."""


@dataclass
class Sources:
    """The files figures are written from, read once."""

    results: Path = RESULTS_FILE
    models: Path = MODELS

    @cached_property
    def bench(self) -> dict:
        return report.load([self.results])

    @cached_property
    def cells(self) -> dict:
        return report.headline(self.bench)

    @cached_property
    def evaluation(self) -> dict:
        return json.loads((self.models / "default.json").read_text())["metrics"]

    @cached_property
    def evaluation_int8(self) -> dict:
        return json.loads((self.models / "default.int8.json").read_text())["metrics"]

    @cached_property
    def quantization(self) -> dict:
        return json.loads((self.models / "default.int8.onnx.quant.json").read_text())

    @property
    def file(self) -> str:
        return f"benchmarks/results/{self.results.name}"

    def group(self, prefix: str) -> list[dict]:
        return [b for b in self.bench["benchmarks"] if (b.get("group") or "").startswith(prefix)]

    def time(self, backend: str, batch: int) -> float | None:
        """Seconds per spectrum of ``backend`` on the product model at ``batch``."""
        bench = self.cells.get((backend, batch))
        return report.per_spectrum(bench) if bench else None

    def shown(self, backend: str, batch: int) -> str:
        value = self.time(backend, batch)
        return NOT_MEASURED if value is None else report.seconds(value)

    def ratio(self, slow: str, fast: str, batch: int) -> str | None:
        """``slow``'s time over ``fast``'s at ``batch``, e.g. "1.71x", or None."""
        a, b = self.time(slow, batch), self.time(fast, batch)
        return None if a is None or b is None else f"{a / b:.2f}x"

    def run(self) -> str:
        """Where and when: the machine, the date and the load the run started under."""
        info = report.machine(self.bench)
        load = (info.get("load_average_at_start") or ["?"])[0]
        return (
            f"{info.get('cores')} cores ({info.get('cpu')}, {info.get('threads')} threads; "
            f"{self.file}, run {str(self.bench.get('datetime', '?'))[:10]} under a load "
            f"average of {load})"
        )


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _span(values: list[float], fmt: str, joiner: str = "-") -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}{joiner}{high}"


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _best_baseline(metrics: dict, key: str) -> tuple[str, float]:
    name = max(BASELINES, key=lambda b: metrics[b][key])
    return name, metrics[name][key]


# --------------------------------------------------------------------------- speed


def readme_speed(src: Sources) -> str:
    """A paragraph: one spectrum's latency and the time per spectrum at batch 64 (the int8
    copy), then batch 8 like for like, each precision against torch on the same weights."""
    float32 = src.cells.get(("ort-cpu", 8))
    gflop = ""
    if float32:
        extra = float32["extra_info"]
        gflop = (
            f"The shipped model costs {extra['gflop_per_call'] / extra['batch']:.2f} GFLOP per "
            f"{extra['length']}-point spectrum. "
        )
    one = src.cells.get(("ort-cpu-int8", 1))
    p99 = f" (p99 {report.seconds(report.p99(one))})" if one else ""
    eager = src.ratio("torch-eager", "ort-cpu", 8)
    int8 = src.ratio("ort-cpu", "ort-cpu-int8", 8)
    torch_int8 = src.ratio("torch-int8", "ort-cpu-int8", 8)
    return (
        f"\n{gflop}On {src.run()}, one spectrum takes **{src.shown('ort-cpu-int8', 1)}**{p99} "
        f"in the int8 copy the CPU backend runs, and **{src.shown('ort-cpu-int8', 64)}** per "
        f"spectrum at batch 64. Like for like at batch 8, per spectrum: float32 ONNX Runtime "
        f"{src.shown('ort-cpu', 8)}, float32 torch eager {src.shown('torch-eager', 8)}"
        + (f" ({eager} ONNX Runtime's time)" if eager else "")
        + f"; the int8 copy {src.shown('ort-cpu-int8', 8)}"
        + (f" ({int8} faster than float32)" if int8 else "")
        + f", torch's own int8 path {src.shown('torch-int8', 8)}"
        + (f" ({torch_int8} the int8 copy's time)" if torch_int8 else "")
        + ".\n"
    )


def _int8_copy(src: Sources) -> str:
    quant = src.quantization
    return (
        f"{len(quant['quantized'])} of its {len(quant['sensitivity_sigma'])} convolutions in "
        f"int8, {quant['rms_sigma']:.3f} noise sigmas rms from float32"
    )


def _paired_int8(src: Sources) -> str | None:
    for bench in src.group("backends paired"):
        extra = bench["extra_info"]
        if extra.get("model") == src.cells[("ort-cpu-int8", 8)]["extra_info"].get("model"):
            ratio = extra.get("ort-cpu_over_ort-cpu-int8")
            return f"{ratio['median']:.2f}x" if ratio else None
    return None


def _same_metrics(src: Sources) -> str:
    a, b = src.evaluation, src.evaluation_int8

    def pairs(key: str, fmt: str) -> str:
        return ", ".join(
            f"{a[s][NETWORK][key]:{fmt}} -> {b[s][NETWORK][key]:{fmt}}" for s in SNRS
        )

    return (
        f"rung-0 SNR 5 / 10 / 50, float32 -> int8: peak-region gain "
        f"{pairs('gain_db_peaks', '+.2f')} dB; F1 {pairs('f1', '.3f')}; heights "
        f"{pairs('height_ret', '.3f')}"
    )


def export_int8(src: Sources) -> str:
    ratio = src.ratio("ort-cpu", "ort-cpu-int8", 8)
    paired = _paired_int8(src) if ratio else None
    speed = f"{ratio} faster than float32 ORT at batch 8" if ratio else NOT_MEASURED
    paired_text = f" ({paired} in alternating rounds)" if paired else ""
    return (
        f"{_int8_copy(src)}, {speed}{paired_text} on {src.run()}, and the same METHOD 7 "
        f"figures on the held-out test sets of docs/default-model.md ({_same_metrics(src)})"
    )


def runtime_int8(src: Sources) -> str:
    ratio = src.ratio("ort-cpu", "ort-cpu-int8", 8)
    speed = f"{ratio} faster than float32 at batch 8" if ratio else NOT_MEASURED
    return f"{_int8_copy(src)}, the same METHOD 7 figures, {speed} in {src.file}"


def default_model_speed(src: Sources) -> str:
    """A table row's measured and verdict cells: the aim is 15 ms per spectrum, ORT, batch 8."""
    value = src.time("ort-cpu", 8)
    if value is None:
        return f"{NOT_MEASURED} | not known"
    return (
        f"{report.seconds(value)} in float32, {src.shown('ort-cpu-int8', 8)} in the int8 copy "
        f"({src.file}) | {'met' if value <= 0.015 else 'not met'}"
    )


def architecture_method(src: Sources) -> str:
    """METHOD's default U-Net on ORT CPU against torch eager and the machine's sgemm peak."""
    named = {b["extra_info"].get("backend"): b for b in src.group("backends method")}
    ort, eager = named.get("ort-cpu"), named.get("torch-eager")
    peaks = [b["extra_info"].get("gflop_per_s", 0.0) for b in src.group("peak")]
    if not ort:
        return NOT_MEASURED
    extra = ort["extra_info"]
    gflop = extra["gflop_per_call"] / extra["batch"]
    text = (
        f"costs {gflop:.1f} GFLOP per spectrum at L = {extra['length']} (flops_per_spectrum); "
        f"ONNX Runtime (CPU, {report.machine(src.bench).get('threads')} threads) ran it at "
        f"{extra['spectra_per_s']:.2f} spectra/s"
    )
    if eager:
        text += f", {eager['stats']['median'] / ort['stats']['median']:.2f}x torch eager"
    text += f", {extra['gflop_per_s']:.0f} GFLOP/s"
    if peaks and max(peaks) > 0:
        text += (
            f", {extra['gflop_per_s'] / max(peaks):.0%} of the machine's float32 sgemm peak "
            f"({max(peaks):.0f} GFLOP/s)"
        )
    return text + f", on {src.run()}"


def bench_headline(src: Sources) -> str:
    lines = report.like_for_like_table(src.bench)
    if not lines:
        return f"\n{NOT_MEASURED}\n"
    commit = str(src.bench.get("commit_info", {}).get("id", "?"))[:10]
    intro = (
        f"From {src.file.removeprefix('benchmarks/')} (run {str(src.bench['datetime'])[:16]} UTC, "
        f"commit {commit}; every group of that run: results/{src.results.stem}.md):"
    )
    return "\n" + "\n".join([intro, ""] + lines[2:]) + "\n"


# --------------------------------------------------------------------------- quality


def readme_quality(src: Sources) -> str:
    m = src.evaluation
    gains = [m[s][NETWORK]["gain_db"] for s in SNRS]
    ahead, behind = [], []
    for s in SNRS:
        name, best = _best_baseline(m[s], "gain_db_peaks")
        mine = m[s][NETWORK]["gain_db_peaks"]
        (ahead if mine > best else behind).append(
            f"{s.removeprefix('SNR ')} ({mine:+.2f} against {best:+.2f} dB, {name})"
        )
    five = m["SNR 5"][NETWORK]
    ood = [m[s][NETWORK]["f1"] for s in NARROW_OOD]
    savgol = [m[s]["Savitzky-Golay"]["f1"] for s in NARROW_OOD]
    return (
        f"clears the noise between lines ({_span(gains, '+.0f', ' to ')} dB over the whole "
        f"spectrum on held-out simulated 1H spectra at rung-0 SNR 5-50); inside the peaks it "
        f"is ahead of the best classical baseline at rung-0 SNR {_listing(ahead or ['none'])} "
        f"and behind it at SNR {_listing(behind or ['none'])}. It keeps "
        f"{_pct(m['SNR 10'][NETWORK]['height_ret'])} of the line heights at SNR 10 and "
        f"{_pct(five['height_ret'])} at SNR 5, where it finds {_pct(five['recall'])} of the "
        f"lines. On the narrow lines of 13C/19F-like and >1 GHz spectra its peak F1 is "
        f"{_span(ood, '.2f')} against Savitzky-Golay's {_span(savgol, '.2f')}"
    )


def readme_residual(src: Sources) -> str:
    five = src.evaluation["SNR 5"]
    net, res = five[NETWORK], five[RESIDUAL]
    name, best = _best_baseline(five, "gain_db_peaks")
    where = "ahead of" if res["gain_db_peaks"] > best else "behind"
    return (
        f"at SNR 5 its peak F1 is {res['f1']:.2f} instead of {net['f1']:.2f} and it keeps "
        f"{_pct(res['height_ret'])} of the heights, {where} every baseline in the peak regions "
        f"({res['gain_db_peaks']:+.2f} against {best:+.2f} dB, {name}), at the price of a "
        f"noisier baseline ({res['gain_db']:+.1f} instead of {net['gain_db']:+.1f} dB over the "
        f"whole spectrum)"
    )


def runtime_residual(src: Sources) -> str:
    m = src.evaluation
    lift = [m[s][RESIDUAL]["gain_db_peaks"] - m[s][NETWORK]["gain_db_peaks"] for s in SNRS]
    heights = [m[s][RESIDUAL]["height_ret"] for s in SNRS]
    whole = [m[s][RESIDUAL]["gain_db"] for s in SNRS]
    network = [m[s][NETWORK]["gain_db"] for s in SNRS]
    five = m["SNR 5"]
    return (
        f"{_span(lift, '+.1f', ' to ')} dB inside the peak regions at rung-0 SNR 5-50, peak F1 "
        f"{five[NETWORK]['f1']:.2f} -> {five[RESIDUAL]['f1']:.2f} at SNR 5, "
        f"{_span([100 * h for h in heights], '.0f')} % of the heights; a noisier baseline "
        f"(whole-spectrum gain {_span(whole, '+.1f', ' to ')} instead of "
        f"{_span(network, '+.1f', ' to ')} dB)"
    )


FIGURES: dict[str, Callable[[Sources], str]] = {
    "readme-speed": readme_speed,
    "readme-quality": readme_quality,
    "readme-residual": readme_residual,
    "export-int8": export_int8,
    "runtime-int8": runtime_int8,
    "runtime-residual": runtime_residual,
    "default-model-speed": default_model_speed,
    "architecture-method": architecture_method,
    "bench-headline": bench_headline,
}


# --------------------------------------------------------------------------- documents


def documents(root: Path | None = None) -> list[Path]:
    root = root or ROOT
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern) if p.is_file()})


def rewrite(text: str, src: Sources, where: str = "text") -> str:
    """``text`` with every marked block written anew; FigureError on a malformed marker."""
    spans = list(BLOCK.finditer(text))
    loose = len(MARKER.findall(text)) - 2 * len(spans)
    if loose or any(MARKER.search(m.group(2)) for m in spans):
        raise FigureError(f"{where}: a figures marker without its pair")
    out, last = [], 0
    for match in spans:
        name, old = match.group(1), match.group(2)
        if name not in FIGURES:
            raise FigureError(f"{where}: no figure named {name!r} (known: {', '.join(FIGURES)})")
        new = FIGURES[name](src)
        if old.startswith("\n") != new.startswith("\n"):
            raise FigureError(
                f"{where}: block {name!r} is written "
                + ("on lines of its own" if new.startswith("\n") else "inline in a sentence")
            )
        out += [text[last:match.start()], f"<!-- figures:{name} -->{new}<!-- /figures -->"]
        last = match.end()
    return "".join(out) + text[last:]


def stale(src: Sources, root: Path | None = None) -> list[str]:
    """``path: block`` for every marked block whose text is not what the sources give."""
    root = root or ROOT
    found = []
    for path in documents(root):
        text = path.read_text()
        new = rewrite(text, src, str(path.relative_to(root)))
        if new != text:
            old_blocks = {m.start(): m.group(0) for m in BLOCK.finditer(text)}
            new_blocks = [m.group(0) for m in BLOCK.finditer(new)]
            for old, fresh in zip(old_blocks.values(), new_blocks, strict=True):
                if old != fresh:
                    found.append(f"{path.relative_to(root)}: {BLOCK.match(old).group(1)}")
    return found


def write(src: Sources, root: Path | None = None) -> list[Path]:
    """Rewrite the blocks of every document that has stale ones; the paths changed."""
    from nmrladder.runtime.atomic import write_text_atomic

    root = root or ROOT
    changed = []
    for path in documents(root):
        text = path.read_text()
        new = rewrite(text, src, str(path.relative_to(root)))
        if new != text:
            write_text_atomic(path, new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_FILE, help=f"default: {RESULTS_FILE}"
    )
    args = parser.parse_args(argv)
    src = Sources(results=args.results)
    try:
        if args.check:
            found = stale(src)
            for line in found:
                print(f"stale: {line} (python benchmarks/figures.py rewrites it)")
            return 1 if found else 0
        for path in write(src):
            print(f"rewrote {path}")
    except (FigureError, OSError, KeyError) as err:
        print(f"figures: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
