"""Render saved pytest-benchmark JSON as markdown tables tagged with the machine.

    .venv/bin/python benchmarks/report.py RESULT.json [MORE.json ...] [--out-dir DIR] [--quiet]
                                          [--save-json]

Writes ``DIR/<machine tag>.md`` (default DIR: benchmarks/results; ``-quick`` / ``-smoke`` is
appended to the name for those modes) and prints it; --save-json keeps the JSON beside it under
the same name. First the like-for-like table of the product model (per precision: ONNX Runtime
against torch eager, torch.compile and torch's own int8 path on the same weights; one
spectrum's latency and the time per spectrum at batch 8 and 64) with the load it ran under,
then one table per benchmark group (median, p99, min, rounds, rates, the load average
when each benchmark started, each row's time over the group's first row's), then the derived
figures: ORT CPU over torch eager and torch.compile per model, end-to-end throughput over pure
inference, the overlap of the pipeline's stages, preprocessing per spectrum as a share of the
job's time per spectrum, the network's GFLOP/s over the machine's sgemm peak, and the ORT
profile's time per op type.

Works on any pytest-benchmark JSON (groups it does not know get the plain table); the
figures come from the ``extra_info`` the suites of this folder record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"ort_over_eager_method": 1.6, "e2e_fraction": 0.85, "preprocess_share": 0.05}
# A benchmark during which other processes took more of the CPU than this is marked: on a
# 2-core machine one busy neighbour descheduling an inference thread moves a time far more
# than the spread between rounds (benchmarks/README.md, "Load").
DISTURBED = 0.10


def disturbed(*benches: dict) -> bool:
    return any(b["extra_info"].get("others_cpu_share", 0.0) > DISTURBED for b in benches)


def load(paths: list[Path]) -> dict:
    """The first file's header with every file's benchmarks; a benchmark that a later file
    holds too (a group re-run on a quieter moment) is replaced by the later one, in place."""
    merged: dict = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        if not merged:
            merged = data
            merged["benchmarks"] = list(data["benchmarks"])
            continue
        index = {b["fullname"]: i for i, b in enumerate(merged["benchmarks"])}
        for bench in data["benchmarks"]:
            if bench["fullname"] in index:
                merged["benchmarks"][index[bench["fullname"]]] = bench
            else:
                merged["benchmarks"].append(bench)
        merged.setdefault("reruns", []).append(
            {
                "datetime": data.get("datetime"),
                "benchmarks": len(data["benchmarks"]),
                "load_average_at_start": machine(data).get("load_average_at_start"),
                "load_average_at_end": data.get("nmrladder", {}).get("load_average_at_end"),
            }
        )
    return merged


def machine(data: dict) -> dict:
    ours = data["machine_info"].get("nmrladder")
    if ours:
        return ours
    cpu = data["machine_info"].get("cpu", {})
    brand = cpu.get("brand_raw", data["machine_info"].get("machine", "unknown"))
    tag = "-".join(brand.lower().split()) + f"-{cpu.get('count', '?')}c"
    return {"tag": tag, "cpu": brand, "cores": cpu.get("count", "?"), "mode": "full"}


def seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}" if value < 1000 * scale else f"{value:.0f} s"
    return f"{value * 1e9:.0f} ns"


def rate(value) -> str:
    if value is None:
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g}"


def short_name(bench: dict) -> str:
    return bench["name"].removeprefix("test_")


def groups(data: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for bench in data["benchmarks"]:
        out.setdefault(bench["group"] or "(no group)", []).append(bench)
    return out


def group_table(benches: list[dict]) -> list[str]:
    first = benches[0]["stats"]["median"]
    lines = [
        "| benchmark | median (p50) | p99 | min | rounds | spectra/s | points/s | GFLOP/s "
        "| load at start | others' CPU | time / first row |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for bench in benches:
        stats, extra = bench["stats"], bench.get("extra_info", {})
        p99 = extra.get("p99_s")
        if p99 is None and stats.get("data"):
            ordered = sorted(stats["data"])
            p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
        load = extra.get("load_average_at_start", [None])[0]
        gflops = extra.get("gflop_per_s")
        others = extra.get("others_cpu_share")
        lines.append(
            f"| {short_name(bench)} | {seconds(stats['median'])} | "
            f"{seconds(p99) if p99 is not None else ''} | {seconds(stats['min'])} | "
            f"{stats['rounds']} | {rate(extra.get('spectra_per_s'))} | "
            f"{rate(extra.get('points_per_s'))} | "
            f"{'' if gflops is None else format(gflops, '.1f')} | "
            f"{'' if load is None else format(load, '.2f')} | "
            f"{'' if others is None else format(others, '.0%')}"
            f"{' (disturbed)' if disturbed(bench) else ''} | {stats['median'] / first:.2f}x |"
        )
    return lines


# --------------------------------------------------------------------------- like for like

HEADLINE_LENGTH = 16384
HEADLINE_BATCHES = (1, 8, 64)
# (precision, backend, what the row is called); ONNX Runtime first in each precision
LIKE_ROWS = (
    ("float32", "ort-cpu", "ONNX Runtime CPU"),
    ("float32", "torch-eager", "torch eager"),
    ("float32", "torch-compile", "torch.compile (inductor)"),
    ("int8", "ort-cpu-int8", "ONNX Runtime CPU, the int8 copy"),
    ("int8", "torch-int8", "torch int8: PT2E, x86 inductor quantizer, compiled"),
)
NOT_MEASURED = "not measured in this results file"


def _headline_source(bench: dict) -> tuple[str, int] | None:
    """(backend, batch) of a benchmark of the product model at HEADLINE_LENGTH points, or
    None. The like-for-like group holds every cell; files from before it existed still give
    batch 8 (the backends group) and the int8 copy's batch 1 and 64 (latency, throughput)."""
    group, extra = bench.get("group") or "", bench.get("extra_info", {})
    params = bench.get("params") or {}
    if group.startswith("like for like"):
        return extra["backend"], extra["batch"]
    if group.startswith("backends product"):
        return extra.get("backend"), extra.get("batch")
    if group.startswith("latency") and params.get("length") == HEADLINE_LENGTH:
        return extra.get("backend", "ort-cpu-int8"), 1
    if group.startswith("throughput") and params.get("batch") in (1, 64):
        return extra.get("backend", "ort-cpu-int8"), params["batch"]
    return None


def headline(data: dict) -> dict[tuple[str, int], dict]:
    """(backend, batch) -> the benchmark that measures it (the like-for-like group first,
    then the backends group, then latency, then throughput)."""
    rank = ("like for like", "backends product", "latency", "throughput")
    found: dict[tuple[str, int], dict] = {}
    for bench in sorted(
        data["benchmarks"],
        key=lambda b: next(
            (i for i, r in enumerate(rank) if (b.get("group") or "").startswith(r)), len(rank)
        ),
    ):
        key = _headline_source(bench)
        if key and key not in found:
            found[key] = bench
    return found


def per_spectrum(bench: dict) -> float:
    """Median seconds of a call over its batch size."""
    return bench["stats"]["median"] / bench["extra_info"].get("batch", 1)


def p99(bench: dict) -> float:
    extra = bench.get("extra_info", {})
    if extra.get("p99_s") is not None:
        return extra["p99_s"]
    ordered = sorted(bench["stats"].get("data") or [bench["stats"]["max"]])
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def skip_reasons(data: dict) -> dict[str, str]:
    """backend -> why its benchmarks were skipped (the first reason recorded)."""
    reasons: dict[str, str] = {}
    for name, reason in data.get("nmrladder", {}).get("skipped", []):
        backend = name.split("[", 1)[-1].rstrip("]").split("-", 1)[-1]
        if name.startswith("test_like_for_like"):
            backend = name.split("[", 1)[-1].rstrip("]").rsplit("-", 1)[0]
        reasons.setdefault(backend, reason)
    return reasons


def load_sentence(data: dict, benches: list[dict]) -> str:
    """The load the run met: load averages at its start and end, the CPU count, and the most
    CPU other processes took during ``benches``."""
    info = machine(data)
    start = info.get("load_average_at_start") or ["?"]
    end = (data.get("nmrladder", {}).get("load_average_at_end") or ["?"])[0]
    cpus = info.get("cpu_count", info.get("cores", "?"))
    usable = info.get("cores", "?")
    others = [b["extra_info"]["others_cpu_share"] for b in benches
              if "others_cpu_share" in b.get("extra_info", {})]
    took = ""
    if others:
        took = f"; other processes took up to {max(others):.0%} of the CPU during these benchmarks"
    return (
        f"Load: 1-minute load average {start[0]} at the start of the run and {end} at its end, "
        f"on {cpus} CPUs ({usable} usable by the run){took}. On 2 cores one busy neighbour "
        "moves these figures by up to 2x: compare rows of one run, on an idle machine."
    )


def like_for_like_table(data: dict) -> list[str]:
    """The first table of the report: per precision, ONNX Runtime against torch on the same
    weights, at batch 1 (latency), 8 and 64 (time per spectrum). Cells the file has no
    benchmark for say so; a backend skipped here says why under the table."""
    found = headline(data)
    if not any(backend == "ort-cpu" or backend == "ort-cpu-int8" for backend, _ in found):
        return []
    reasons = skip_reasons(data)
    model = next(iter(found.values()))["extra_info"].get("model", "product")
    lines = [
        f"## Like for like: {model}, L = {HEADLINE_LENGTH}",
        "",
        "Each precision's ONNX Runtime row against torch on the same weights. Batch 1 is the "
        "latency of one spectrum (median, p99 in brackets); batch 8 and 64 the time per "
        "spectrum (a call's median over its batch). `/ ORT` is the row's time over ONNX "
        "Runtime's of the same precision and batch (above 1: ONNX Runtime is faster).",
        "",
        "| precision | backend | batch 1 (p99) | batch 8, per spectrum | batch 64, per spectrum "
        "| / ORT, batch 1; 8; 64 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for precision, backend, what in LIKE_ROWS:
        ort = "ort-cpu" if precision == "float32" else "ort-cpu-int8"
        cells, ratios = [], []
        for batch in HEADLINE_BATCHES:
            bench = found.get((backend, batch))
            if bench is None:
                cells.append("not run (below)" if backend in reasons else NOT_MEASURED)
                ratios.append("-")
                continue
            cell = seconds(per_spectrum(bench))
            if batch == 1:
                cell += f" ({seconds(p99(bench))})"
            cells.append(cell + (" [disturbed]" if disturbed(bench) else ""))
            base = found.get((ort, batch))
            ratios.append(f"{per_spectrum(bench) / per_spectrum(base):.2f}x" if base else "-")
        if backend in reasons and any(c.startswith("not run") for c in cells):
            notes.append(f"- {what}: not run here: {reasons[backend]}")
        lines.append(f"| {precision} | {what} | " + " | ".join(cells) + f" | {'; '.join(ratios)} |")
    lines += ["", load_sentence(data, list(found.values()))]
    one, many = found.get(("ort-cpu-int8", 1)), found.get(("ort-cpu-int8", 64))
    if one and many:
        lines += [
            "",
            f"- **One spectrum** (the int8 copy the CPU backend runs, batch 1): "
            f"**{seconds(per_spectrum(one))}** (p99 {seconds(p99(one))}); "
            f"**per spectrum at batch 64**: **{seconds(per_spectrum(many))}**.",
        ]
    if notes:
        lines += [""] + notes
    return lines


def _by_name(benches: list[dict]) -> dict[str, dict]:
    return {short_name(b): b for b in benches}


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def derived(data: dict) -> list[str]:
    """Ratios and shares computed from the suites' benchmarks (skips what did not run)."""
    grouped = groups(data)
    peaks = grouped.get("peak", [])
    best = max(peaks, key=lambda b: b["extra_info"].get("gflop_per_s", 0.0), default=None)
    peak = best["extra_info"].get("gflop_per_s", 0.0) if best else 0.0
    lines: list[str] = []
    if best:
        extra = best["extra_info"]
        lines.append(
            f"- **Peak**: {peak:.1f} GFLOP/s (float32 sgemm {extra['n']} x {extra['n']}, "
            f"{extra['threads']} threads, {extra['library']}; the faster library)"
            + (" [disturbed: others took CPU]." if disturbed(*peaks) else ".")
        )
    network = {}
    for group, benches in grouped.items():
        if group.startswith("backends paired"):
            lines += _paired(benches)
        elif group.startswith("one stream"):
            lines += _one_stream(benches)
        elif group.startswith("backends "):
            lines += _backends(group.split()[1], benches, peak)
            for bench in benches:
                if bench["extra_info"].get("backend") == "ort-cpu":
                    network[bench["extra_info"]["model"]] = bench["extra_info"]["gflop_per_s"]
    lines += _cold_start(grouped.get("cold start", []))
    lines += _end_to_end(grouped.get("end to end", []))
    lines += _profile(grouped.get("ORT profile", []), network, peak)
    return lines


BACKEND_NAMES = (
    ("ort-cpu-opset20", "ORT CPU on the opset-20 export (Gelu op)"),
    ("torch-eager", "torch eager"),
    ("torch-compile", "torch.compile"),
    ("ort-cuda", "ORT CUDA"),
    ("torch-cuda", "torch CUDA"),
    ("tensorrt", "TensorRT fp16"),
)


def _backends(role: str, benches: list[dict], peak: float) -> list[str]:
    """ORT CPU's speed over every other backend that ran, and its efficiency."""
    named = {b["extra_info"].get("backend"): b for b in benches}
    ort = named.get("ort-cpu")
    if not ort:
        return []
    extra, median = ort["extra_info"], ort["stats"]["median"]
    parts = []
    for other, what in BACKEND_NAMES:
        if other not in named:
            continue
        ratio = named[other]["stats"]["median"] / median
        target = ""
        if role == "method" and other == "torch-eager":
            goal = TARGETS["ort_over_eager_method"]
            target = f" (target >= {goal}x: {met(ratio >= goal)})"
        note = " [disturbed: others took CPU]" if disturbed(ort, named[other]) else ""
        parts.append(f"{ratio:.2f}x {what}{target}{note}")
    int8_sentence = _int8(named, median)
    gflops = extra["gflop_per_s"]
    per_spectrum = extra["gflop_per_call"] / extra["batch"]
    efficiency = f" = **{gflops / peak:.0%} of the sgemm peak**" if peak else ""
    if disturbed(ort):
        efficiency += " [disturbed: others took CPU]"
    return [
        f"- **{extra.get('model', role)}**, ORT CPU at batch {extra['batch']}, "
        f"L={extra['length']}: {rate(extra['spectra_per_s'])} spectra/s x "
        f"{per_spectrum:.2f} GFLOP/spectrum = {gflops:.1f} GFLOP/s{efficiency}. "
        f"ORT CPU is faster than: {'; '.join(parts) or 'no other backend ran'} "
        f"(ratios of medians; below 1 means ORT CPU is slower).{int8_sentence}"
    ]


def _int8(named: dict, float32_median: float) -> str:
    """The int8 copy (what ``nmrladder denoise`` runs on CPUs) against float32 ORT, torch's
    own int8 path (like for like) and float32 torch eager (across precisions)."""
    int8 = named.get("ort-cpu-int8")
    if not int8:
        return ""
    median = int8["stats"]["median"]
    sentence = f" Its int8 copy runs {float32_median / median:.2f}x float32 ORT CPU"
    torch_int8 = named.get("torch-int8")
    if torch_int8:
        sentence += f", {torch_int8['stats']['median'] / median:.2f}x torch's int8 path"
    eager = named.get("torch-eager")
    if eager:
        ratio = eager["stats"]["median"] / median
        goal = TARGETS["ort_over_eager_method"]
        sentence += (
            f" and **{ratio:.2f}x float32 torch eager** (across precisions; target >= {goal}x: "
            f"{met(ratio >= goal)})"
        )
    rms = int8["extra_info"].get("rms_diff_vs_ort_cpu_sigma", float("nan"))
    return sentence + f", {rms:.4f} noise sigmas rms from float32."


def _paired(benches: list[dict]) -> list[str]:
    """ORT CPU against torch eager with the ratios taken round by round."""
    lines = []
    for bench in benches:
        extra = bench["extra_info"]
        if "torch-eager_over_ort-cpu-int8" not in extra:
            continue
        parts = []
        for slow, fast, what in (
            ("torch-eager", "ort-cpu-int8", "the int8 copy over float32 torch eager"),
            ("torch-eager", "ort-cpu", "float32 ORT over torch eager"),
            ("ort-cpu", "ort-cpu-int8", "the int8 copy over float32 ORT"),
        ):
            r = extra[f"{slow}_over_{fast}"]
            target = ""
            if fast == "ort-cpu-int8" and slow == "torch-eager":  # what the CPU backend runs
                goal = TARGETS["ort_over_eager_method"]
                target = f", target >= {goal}x: {met(r['median'] >= goal)}"
            parts.append(
                f"{what} **{r['median']:.2f}x** (quartiles {r['q25']:.2f}-{r['q75']:.2f}{target})"
            )
        note = " [disturbed: others took CPU]" if disturbed(bench) else ""
        lines.append(
            f"- **{extra.get('model', short_name(bench))}, paired rounds** "
            f"({len(extra['torch-eager_seconds'])} rounds, batch {extra['batch']}, "
            f"L={extra['length']}; median of the per-round ratios): {'; '.join(parts)}.{note}"
        )
    return lines


def _cold_start(benches: list[dict]) -> list[str]:
    """Session creation plus the first inference's extra cost over a steady run."""
    lines = []
    for bench in benches:
        extra = bench["extra_info"]
        if extra.get("stage") != "first inference" or "steady_s" not in extra:
            continue
        model = extra.get("model", short_name(bench))
        precision = extra.get("precision", "float32")
        session = next(
            (
                b["stats"]["median"]
                for b in benches
                if b["extra_info"].get("stage") == "session creation"
                and b["extra_info"].get("model") == model
                and b["extra_info"].get("precision", "float32") == precision
            ),
            0.0,
        )
        first, steady = bench["stats"]["median"], extra["steady_s"]
        lines.append(
            f"- **Cold start, {model}, {precision}**: session {seconds(session)} + first inference "
            f"{seconds(first)} (a steady one: {seconds(steady)}; the first call costs "
            f"{seconds(max(first - steady, 0.0))} more) = {seconds(session + first)} to the "
            "first result."
        )
    return lines


def _one_stream(benches: list[dict]) -> list[str]:
    """Time per spectrum of one single-threaded call at each batch size, over batch 8's: the
    batch job's streams run small first and last batches (runtime/pipeline.py)."""
    per_spectrum = {
        b["extra_info"]["batch"]: b["stats"]["median"] / b["extra_info"]["batch"] for b in benches
    }
    if 8 not in per_spectrum:
        return []
    shown = ", ".join(
        f"batch {batch} {seconds(value)} ({value / per_spectrum[8]:.2f}x)"
        for batch, value in sorted(per_spectrum.items())
    )
    return [
        f"- **One stream** (one single-threaded call, time per spectrum against batch 8's; the "
        f"batch job's first and last batches are smaller): {shown}"
        + (" [disturbed: others took CPU]." if disturbed(*benches) else ".")
    ]


def _end_to_end(benches: list[dict]) -> list[str]:
    named = _by_name(benches)
    job, pure = named.get("denoise_job"), named.get("pure_inference")
    if not job or not pure:
        return []
    extra = job["extra_info"]
    n = extra["files"]
    separate = pure["stats"]["median"] / job["stats"]["median"]
    # Rounds of pure inference alternating with the job's, when recorded: drift-free.
    fraction = extra.get("paired_fraction", separate)
    per_spectrum = job["stats"]["median"] / n
    stages = extra.get("stage_seconds", {})
    lines = [
        f"- **End to end** ({n} .npy files of {extra['length']} points, "
        f"{extra.get('precision', 'float32')} model, batch {extra['batch']}, "
        f"{extra.get('streams', 1)} inference stream(s)): "
        f"{rate(n / job['stats']['median'])} spectra/s file to file, "
        f"{rate(n / pure['stats']['median'])} spectra/s pure inference on the same spectra: "
        f"**{fraction:.0%} of pure inference** (target >= {TARGETS['e2e_fraction']:.0%}: "
        f"{met(fraction >= TARGETS['e2e_fraction'])})"
        + (
            f", pure inference (the faster of the job's streams and one batch at a time on every"
            f" thread) timed before each round of the job ({separate:.0%} from the two"
            " benchmarks' medians, which the machine's drift between them can skew)"
            if "paired_fraction" in extra else ""
        )
        + (" [disturbed: others took CPU]." if disturbed(job, pure) else "."),
    ]
    if stages:
        wall = extra["wall_seconds"]
        shown = ", ".join(f"{k} {v:.3f} s" for k, v in stages.items())
        lines.append(
            f"  Stages of the median round (summed over the stage's threads): {shown}; wall "
            f"{wall:.3f} s; overlap (sum of stage times / wall) **{extra['overlap']:.2f}**."
        )
    if "scale" in stages:
        read, scale = stages["read"] / n, stages["scale"] / n
        lines.append(
            f"  The file thread's time per spectrum in the job: reading {seconds(read)}, scaling "
            f"{seconds(scale)} (wall time, waits for a core included: it shares the cores "
            "with the network, so this is not its cost; that is below)."
        )
    for name, what in (
        ("read_scale", "read + scale (one file, one thread)"),
        ("scale_unscale", "the preprocess stage, scaling in and out"),
    ):
        if name in named:
            share = named[name]["stats"]["median"] / per_spectrum
            target = TARGETS["preprocess_share"]
            lines.append(
                f"  Preprocessing per spectrum, {what}: "
                f"{seconds(named[name]['stats']['median'])} = **{share:.1%}** of the job's "
                f"{seconds(per_spectrum)} per spectrum (target <= {target:.0%}: "
                f"{met(share <= target)})."
            )
    return lines


CONVS = ("Conv", "ConvTranspose")


def _profile(benches: list[dict], network: dict[str, float], peak: float) -> list[str]:
    """Op-type shares side by side, and the convolutions' own rate: the network's GFLOP/s
    (``network``: model -> ORT CPU GFLOP/s, batch 8) over the convolutions' share of the time
    (the FLOP count is the convolutions'; everything else is memory traffic)."""
    if not benches:
        return []
    columns = [
        (b["extra_info"].get("model", short_name(b)), b["extra_info"]["op_shares"]) for b in benches
    ]
    ops: list[str] = []
    for _, shares in columns:
        ops += [op for op in list(shares)[:8] if op not in ops]
    lines = [
        "",
        "ORT CPU profile, share of node time per op type (batch "
        f"{benches[0]['extra_info'].get('batch')}, L={benches[0]['extra_info'].get('length')}):",
        "",
        "| op type | " + " | ".join(label for label, _ in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for op in ops:
        cells = [f"{shares.get(op, 0.0):.1%}" for _, shares in columns]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    rows = []
    for label, shares in columns:
        conv = sum(shares.get(op, 0.0) for op in CONVS)
        if label in network and conv > 0:
            rate_conv = network[label] / conv
            of_peak = f" ({rate_conv / peak:.0%} of the peak)" if peak else ""
            rows.append(
                f"- {label}: convolutions {conv:.0%} of the time at {rate_conv:.1f} GFLOP/s"
                f"{of_peak}; the other {1 - conv:.0%} is elementwise and normalisation passes."
            )
    return lines + ([""] + rows if rows else [])


def render(data: dict) -> str:
    info = machine(data)
    end = data.get("nmrladder", {}).get("load_average_at_end")
    commit = data.get("commit_info", {})
    header = [
        f"# nmrladder benchmarks on `{info['tag']}`",
        "",
        f"- Machine: {info.get('cpu')}, {info.get('cores')} cores"
        + (", AVX-512" if info.get("avx512") else "")
        + (f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"),
        f"- Versions: numpy {info.get('numpy')}, onnxruntime {info.get('onnxruntime')}, "
        f"torch {info.get('torch')}, Python {data['machine_info'].get('python_version')}",
        f"- Threads: {info.get('threads')} (ORT intra-op, torch.set_num_threads); mode "
        f"{info.get('mode')}",
        f"- Run: {data.get('datetime', '?')[:19]} UTC, commit {str(commit.get('id', '?'))[:10]}"
        + (" (dirty)" if commit.get("dirty") else ""),
        f"- Load average (1, 5, 15 min): {info.get('load_average_at_start')} at the start, "
        f"{end} at the end; per benchmark: the 1-min load when it started, and the share of "
        "the machine's CPU that other processes took while it ran (others' CPU; 50 % on 2 "
        "cores = one core taken)",
    ]
    for rerun in data.get("reruns", []):
        header.append(
            f"- Re-run on {str(rerun['datetime'])[:19]} UTC, replacing {rerun['benchmarks']} "
            f"benchmarks: load average {rerun['load_average_at_start']} at the start, "
            f"{rerun['load_average_at_end']} at the end"
        )
    body = []
    first = like_for_like_table(data)
    if first:
        body += [""] + first
    for group, benches in groups(data).items():
        body += ["", f"## {group}", ""] + group_table(benches)
    figures = derived(data)
    if figures:
        body += ["", "## Derived figures", ""] + figures
    skipped = data.get("nmrladder", {}).get("skipped", [])
    if skipped:
        body += ["", "## Skipped", ""] + [f"- `{name}`: {reason}" for name, reason in skipped]
    return "\n".join(header + body) + "\n"


def output_name(data: dict) -> str:
    info = machine(data)
    mode = info.get("mode", "full")
    return info["tag"] + ("" if mode == "full" else f"-{mode}") + ".md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON file(s)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument("--quiet", action="store_true", help="write the file, print its path")
    parser.add_argument(
        "--save-json", action="store_true", help="also save the (merged) JSON beside the markdown"
    )
    args = parser.parse_args(argv)
    data = load(args.json)
    text = render(data)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / output_name(data)
    path.write_text(text)
    if args.save_json:
        path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print(path if args.quiet else text + f"\n(written to {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
