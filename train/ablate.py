"""METHOD 8's ablations: train named variants of one config on one shared budget (same
steps, seed and data), then evaluate them side by side with the classical baselines.

Each variant is the base config plus ``section.key=value`` overrides (:data:`VARIANTS`).
Its run goes to ``OUT/runs/<variant>/`` (the RUN layout of training; a finished run is
reused, an interrupted one resumed), the evaluation to ``OUT/evaluation/`` and the table to
``OUT/ablation.md``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.runtime.errors import InputError
from nmrladder.runtime.table import format_table
from nmrladder.train.config import with_overrides


@dataclass(frozen=True)
class Variant:
    """One ablation: what it changes (in words) and the config overrides that do it."""

    description: str
    overrides: tuple[str, ...]


def _both_stages(*pairs: str) -> tuple[str, ...]:
    return tuple(f"{stage}.{pair}" for stage in ("stage_a", "stage_b") for pair in pairs)


#: METHOD 8's variants, in table order.
VARIANTS: dict[str, Variant] = {
    "full": Variant("the config as given", ()),
    "no_peak_weight": Variant(
        "L_rec weighs peaks like the baseline (peak weight 1, also late)",
        _both_stages("peak_weight=1.0", "late_peak_weight=1.0"),
    ),
    "with_stage_b": Variant(
        "METHOD's stage B after stage A: 1/9 of the budget with L_cons, L_T, every rung, SNR "
        "curriculum (the stage-B defaults)",
        ("stage_b.steps=1000", "stage_b.epochs=0", "stage_b.peak_weight=30.0",
         'stage_b.rec_loss="smooth_l1"', "stage_b.huber_delta=2.0", "stage_b.under_weight=3.0"),
    ),
    "no_under_weight": Variant(
        "L_rec symmetric inside M (under_weight 1: falling short of a line costs as much as "
        "overshooting it)",
        _both_stages("under_weight=1.0"),
    ),
    "l1_rec": Variant(
        "METHOD's plain L1 for L_rec (instead of the config's smooth L1)",
        _both_stages('rec_loss="l1"'),
    ),
    "no_curv": Variant("no L_curv (l2 = 0, also late)", _both_stages("l2=0.0", "late_l2=0.0")),
    "no_cons_T": Variant("no L_cons and no L_T (l3 = l4 = 0)", _both_stages("l3=0.0", "l4=0.0")),
    "top_only": Variant(
        "pseudo-truth = the top rung only (fusion weights 'top')",
        ("data.preprocess.weights=top",),
    ),
    "no_rescale": Variant(
        "no METHOD 2.2 re-scaling (every rung keeps its own normalisation, scales = 1)",
        ("data.rescale=false",),
    ),
}

#: Columns of the ablation table: (title, metric of the evaluation report, format).
COLUMNS = (
    ("gain dB (P)", "gain_db_peaks", "{:+.2f}"),
    ("gain dB", "gain_db", "{:+.2f}"),
    ("F1", "f1", "{:.3f}"),
    ("height ret", "height_ret", "{:.3f}"),
    ("FWHM err", "fwhm_err", "{:.3f}"),
    ("integral err", "integral_err", "{:.3f}"),
    ("false/spec", "false_peaks", "{:.2f}"),
    ("L1/sigma0", "l1", "{:.3f}"),
)


@dataclass
class AblationResult:
    """runs: variant -> RUN folder; seconds: variant -> training seconds (0 when reused);
    report: the EvaluationReport; table: the markdown table written to OUT/ablation.md."""

    runs: dict[str, Path]
    seconds: dict[str, float]
    steps: int
    report: Any
    table: str


def budget_overrides(config: Mapping[str, Any], steps: int, steps_per_epoch: int,
                     rungs: int) -> tuple[str, ...]:
    """Overrides that give config a total of `steps` steps, split between the stages (and
    the warm-up scaled) in the proportions the config has."""
    from nmrladder.train.training import Schedule

    schedule = Schedule(config, steps_per_epoch, rungs)
    a, b = schedule.stage_steps["stage_a"], schedule.stage_steps["stage_b"]
    steps_a = round(steps * a / (a + b))
    steps_b = steps - steps_a
    warmup = round(schedule.warmup_steps * steps / schedule.total_steps)
    out = [f"optim.warmup_steps={warmup}", "optim.warmup_epochs=0"]
    for stage, n in (("stage_a", steps_a), ("stage_b", steps_b)):
        out += [f"{stage}.steps={n}", f"{stage}.epochs=0"]
    return tuple(out)


def _data_key(config: Mapping[str, Any]) -> str:
    """What the prepared data depends on (variants with the same key share it)."""
    d = config["data"]
    return json.dumps([d["preprocess"], d["rescale"], d["t_source"]], sort_keys=True)


def _run_state(run_dir: Path) -> str:
    """"done" (final weights), "partial" (a checkpoint to resume) or "new"."""
    if (run_dir / "model.safetensors").is_file():
        return "done"
    if (run_dir / "checkpoints" / "latest").is_file():
        return "partial"
    return "new"


def run_ablation(
    config: Mapping[str, Any],
    data: Any,
    test: Any,
    out: str | os.PathLike,
    val: Any = None,
    steps: int | None = None,
    variants: Sequence[str] | None = None,
    limit: int | None = None,
    log: Callable[[str], None] | None = print,
) -> AblationResult:
    """Train every variant on the same data and budget, evaluate them, write the table.

    config: the resolved base config; data: training ladders (as for train); test, val:
    simulated ladders for evaluate_denoisers (val tunes the baselines; None: the first
    quarter of the test set does); steps: the shared budget (None: the config's own
    lengths); variants: names from VARIANTS (None: all); limit: evaluate only the first
    `limit` ladders of each set.
    """
    from nmrladder.train.data import BatchSampler, prepare_from_config
    from nmrladder.train.evaluate import evaluate_denoisers
    from nmrladder.train.inference import TorchDenoiser, load_run
    from nmrladder.train.training import Schedule, check_resume_config, train

    names = list(VARIANTS) if variants is None else list(variants)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise InputError(f"unknown ablation variant(s) {unknown}; known: {list(VARIANTS)}")
    out = Path(out)
    say = log or (lambda _line: None)
    configs = {name: with_overrides(config, VARIANTS[name].overrides) for name in names}

    prepared: dict[str, Any] = {}
    runs: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    total_steps = 0
    try:
        for name in names:
            cfg = configs[name]
            key = _data_key(cfg)
            if key not in prepared:
                prepared[key] = prepare_from_config(data, cfg, out / "cache",
                                                    f"train{len(prepared)}")
            train_data = prepared[key]
            per_epoch = BatchSampler(train_data, cfg["data"]["batch_size"],
                                     cfg["data"]["crop_length"], 0).steps_per_epoch
            if steps is not None:
                cfg = with_overrides(cfg, budget_overrides(cfg, steps, per_epoch,
                                                           train_data.rungs))
            total_steps = Schedule(cfg, per_epoch, train_data.rungs).total_steps
            run_dir = out / "runs" / name
            runs[name] = run_dir
            state = _run_state(run_dir)
            if state != "new":
                check_resume_config(run_dir, cfg)
            if state == "done":
                say(f"{name}: reusing the finished run in {run_dir}")
                seconds[name] = 0.0
                continue
            say(f"{name}: {VARIANTS[name].description}")
            started = time.perf_counter()
            result = train(cfg, train_data, run_dir, resume=state == "partial")
            seconds[name] = time.perf_counter() - started
            say(f"{name}: {result.steps} steps in {seconds[name]:.0f} s")
    finally:
        for p in prepared.values():
            if hasattr(p, "close"):
                p.close()

    denoisers = {name: TorchDenoiser(load_run(runs[name])[0]) for name in names}
    report = evaluate_denoisers(denoisers, test, val, limit=limit, log=say)
    report.save(out / "evaluation")
    table = ablation_table(report, names, seconds)
    write_text_atomic(out / "ablation.md", table + "\n")
    return AblationResult(runs, seconds, total_steps, report, table)


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None or value != value else fmt.format(value)


def ablation_table(report: Any, variants: Sequence[str],
                   seconds: Mapping[str, float] | None = None) -> str:
    """Markdown: per test set, one row per variant (then the input and the baselines), the
    metrics against the truth (means over the test ladders)."""
    seconds = seconds or {}
    blocks = []
    for set_name, by_method in report.summary.items():
        ref = report.references[set_name]
        rows = []
        for method, values in by_method.items():
            what = VARIANTS[method].description if method in VARIANTS else "reference"
            train_s = seconds.get(method)
            rows.append([method, *(_cell(values.get(key), fmt) for _, key, fmt in COLUMNS),
                         "-" if not train_s else f"{train_s:.0f}", what])
        order = {name: i for i, name in enumerate(variants)}
        rows.sort(key=lambda row: order.get(row[0], len(order)))
        headers = ["variant", *(title for title, _, _ in COLUMNS), "train s", "what"]
        blocks.append(f"### {set_name}: {ref['n']} ladders, rung-0 SNR {ref['snr_input']:.3g}"
                      "\n\n" + format_table(headers, rows, markdown=True))
    return "\n\n".join(blocks)
