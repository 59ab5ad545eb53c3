"""The two-stage training of METHOD 6 (see docs/training.md).

Stage A (supervised on the pseudo-truth s_hat): L_rec + l1 L_deriv + l2 L_curv, plus L_cons
over rung 0 and 1-2 sampled rungs. Stage B (self-supervised across SNR): every rung, larger
l3 (L_cons) and l4 (L_T), an SNR curriculum for the L_cons / L_T pairs (the top two rungs
first, rung 0 last) and, late in the stage, a higher peak weight and a lower l2. One AdamW
with linear warm-up and cosine decay over both stages, gradient clipping.

Everything a step does is a function of (config, step): the batch comes from
``BatchSampler(seed).batch(step)``, the weights and learning rate from :class:`Schedule`.
A checkpoint (weights, AdamW state) is therefore all that resume needs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.runtime.errors import InputError
from nmrladder.train import checkpoint as ckpt
from nmrladder.train import distributed
from nmrladder.train.config import model_config, write_config
from nmrladder.train.data import Batch, BatchSampler, Prepared, RungPlan
from nmrladder.train.losses import (
    line_tops,
    loss_cons,
    loss_curv,
    loss_deriv,
    loss_rec,
    loss_T,
    rec_weight,
    total_loss,
)
from nmrladder.train.model import build_model, count_parameters

TERMS = ("rec", "deriv", "curv", "cons", "T")
LOG_COLUMNS = ("step", "stage", "epoch", "lr", "total", *TERMS, "grad_norm", "peak_weight",
               "pair_min_rung", "rungs", "seconds")
VAL_COLUMNS = ("step", "stage", "total", *TERMS)
# Batches of the validation set come from their own seed, independent of training's.
VAL_SEED_OFFSET = 7919


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class StepPlan:
    """What step number `step` (0-based) does: stage, loss weights, rungs, learning rate.

    weights: total_loss weights (rec 1, deriv l1, curv l2, cons l3, T l4); peak_weight,
    base_weight: L_rec's weights inside M / elsewhere; rec_other: L_rec weight of the rungs
    k > 0; rungs: which rungs the batch holds; pair_min_rung: L_cons and L_T use only the
    rungs >= this one (the SNR curriculum).
    """

    step: int
    stage: str
    epoch: int
    lr: float
    weights: dict[str, float]
    peak_weight: float
    base_weight: float
    rec_other: float
    rungs: RungPlan
    pair_min_rung: int
    rec_loss: str = "l1"
    huber_delta: float = 1.0
    under_weight: float = 1.0
    line_top_points: float = 0.0


class Schedule:
    """Stage lengths, learning rate and loss weights as functions of the step.

    A stage lasts ``steps`` if > 0, else ``epochs * steps_per_epoch``; warm-up lasts
    ``warmup_steps`` if > 0, else ``warmup_epochs * steps_per_epoch`` (at most the whole
    run). The cosine decays from lr (first step after warm-up) to lr * min_lr_ratio (last
    step).
    """

    def __init__(self, config: Mapping[str, Any], steps_per_epoch: int, rungs: int):
        self.config = config
        self.steps_per_epoch = int(steps_per_epoch)
        self.rungs = int(rungs)
        self.stage_steps = {}
        for stage in ("stage_a", "stage_b"):
            s = config[stage]
            by_epochs = s["epochs"] * self.steps_per_epoch
            self.stage_steps[stage] = s["steps"] if s["steps"] > 0 else by_epochs
        self.total_steps = sum(self.stage_steps.values())
        optim = config["optim"]
        warmup = optim["warmup_steps"] or round(optim["warmup_epochs"] * self.steps_per_epoch)
        self.warmup_steps = min(int(warmup), self.total_steps)

    def lr(self, step: int) -> float:
        optim = self.config["optim"]
        base = optim["lr"]
        if step < self.warmup_steps:
            return base * (step + 1) / self.warmup_steps
        if optim["schedule"] == "constant":
            return base
        span = max(self.total_steps - self.warmup_steps - 1, 1)  # the last step gets the floor
        progress = min((step - self.warmup_steps) / span, 1.0)
        floor = optim["min_lr_ratio"]
        return base * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def stage_of(self, step: int) -> tuple[str, int]:
        """(stage name, step within the stage)."""
        a = self.stage_steps["stage_a"]
        return ("stage_a", step) if step < a else ("stage_b", step - a)

    def plan(self, step: int) -> StepPlan:
        stage, local = self.stage_of(step)
        s = self.config[stage]
        length = max(self.stage_steps[stage], 1)
        late = s["late_fraction"] > 0 and local >= (1.0 - s["late_fraction"]) * length
        weights = {"rec": 1.0, "deriv": s["l1"], "curv": s["late_l2"] if late else s["l2"],
                   "cons": s["l3"], "T": s["l4"]}
        pair_min = 0
        if s["curriculum"] and self.rungs > 2:
            # High-SNR pairs first: the pairs start at the top two rungs and reach rung 0
            # after curriculum_fraction of the stage, one rung per equal phase.
            span = s["curriculum_fraction"] * length
            progress = local / span if span > 0 else 1.0
            phase = math.floor(progress * (self.rungs - 1))
            pair_min = max(self.rungs - 2 - phase, 0)
        uses_other_rungs = weights["cons"] > 0 or weights["T"] > 0 or s["rec_other"] > 0
        if not uses_other_rungs:
            rungs = RungPlan("sampled", (0, 0), 1)
        else:
            rungs = RungPlan(s["rungs"], tuple(s["extra_rungs"]), max(pair_min, 1))
        return StepPlan(
            step=step,
            stage=stage,
            epoch=step // self.steps_per_epoch,
            lr=self.lr(step),
            weights=weights,
            peak_weight=s["late_peak_weight"] if late else s["peak_weight"],
            base_weight=s["base_weight"],
            rec_other=s["rec_other"],
            rungs=rungs,
            pair_min_rung=pair_min,
            rec_loss=s["rec_loss"],
            huber_delta=s["huber_delta"],
            under_weight=s["under_weight"],
            line_top_points=s["line_top_points"],
        )


# --------------------------------------------------------------------------- losses


def shift_linear(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Differentiable circular shift by linear interpolation: ``y[..., i] = x[..., i - d]``.

    x [..., L]; shift [...] (one d per row, points, any real). Same convention as
    runtime.preprocess.apply_shift.
    """
    n = x.shape[-1]
    whole = torch.floor(shift)
    a = (shift - whole).unsqueeze(-1).to(x.dtype)
    i = torch.arange(n, device=x.device)
    i0 = torch.remainder(i - whole.long().unsqueeze(-1), n)
    i1 = torch.remainder(i0 - 1, n)
    i0, i1 = i0.expand(x.shape), i1.expand(x.shape)
    return (1 - a) * torch.gather(x, -1, i0) + a * torch.gather(x, -1, i1)


def to_tensors(batch: Batch, device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The batch as torch tensors (float32 spectra, bool masks, float64 shifts and T), on
    device when given."""
    tensors = {
        "inputs": torch.from_numpy(batch.inputs),
        "targets": torch.from_numpy(batch.targets),
        "peak_mask": torch.from_numpy(batch.peak_mask),
        "base_mask": torch.from_numpy(batch.base_mask),
        "centers": torch.from_numpy(batch.centers),
        "sigmas": torch.from_numpy(batch.sigmas),
        "frac": torch.from_numpy(np.asarray(batch.frac, dtype=np.float64)),
        "rungs": torch.from_numpy(batch.rungs),
        "T": torch.from_numpy(np.asarray(batch.T, dtype=np.float32)),
    }
    if device is None or device.type == "cpu":
        return tensors
    return {k: v.to(device, non_blocking=True) for k, v in tensors.items()}


def denoise_rows(model: torch.nn.Module, inputs: torch.Tensor, centers: torch.Tensor,
                 sigmas: torch.Tensor) -> torch.Tensor:
    """y = center + sigma * net((x - center) / sigma), the runtime's canonical scaling
    (runtime/scaling.py) on crops: inputs [B, K, C], centers and sigmas [B, K]."""
    b, k, c = inputs.shape
    center, sigma = centers.unsqueeze(-1), sigmas.unsqueeze(-1)
    z = (inputs - center) / sigma
    return center + sigma * model(z.reshape(b * k, c)).float().reshape(b, k, c)


def reconstruction(y: torch.Tensor, target: torch.Tensor, peak_mask: torch.Tensor,
                   plan: StepPlan) -> torch.Tensor:
    """L_rec of the plan: METHOD's peak-weighted L1 (losses.loss_rec), or with
    rec_loss = "smooth_l1" the same weights on a smooth L1 (Huber / delta: quadratic below
    delta, |e| - delta/2 above, in rung-0 noise sigmas).

    Why the option: L1 regresses to the conditional median, which sets a weak feature the
    network is not sure of (a line's skirt, a small line at rung-0 SNR 5) to zero; the
    squared error (what error-based SNR measures) wants the conditional mean. Below delta
    the smooth L1 is a squared error, above it stays robust to the few large target errors
    (e.g. on a solvent line).

    Both use the weights of losses.rec_weight (peak weight, under_weight). With
    line_top_points > 0, the top of each weak line (losses.line_tops) that the output falls
    short of counts line_top_points more points of M's shortfall weight: each line once,
    whatever its width, so narrow lines weigh as much as broad ones.
    """
    if plan.rec_loss == "l1" and plan.line_top_points == 0:
        return loss_rec(y, target, peak_mask, plan.peak_weight, plan.base_weight,
                        plan.under_weight)
    if plan.rec_loss == "l1":
        error = (y - target).abs()
    else:
        error = torch.nn.functional.smooth_l1_loss(y, target, reduction="none",
                                                   beta=plan.huber_delta)
    weight = rec_weight(y, target, peak_mask, plan.peak_weight, plan.base_weight,
                        plan.under_weight)
    if plan.line_top_points > 0:
        short_tops = line_tops(target, peak_mask) & (y < target)
        top_weight = plan.line_top_points * plan.peak_weight * plan.under_weight
        weight = weight + top_weight * short_tops
    return (weight * error).mean()


def loss_terms(model: torch.nn.Module, t: Mapping[str, torch.Tensor], plan: StepPlan
               ) -> dict[str, torch.Tensor]:
    """The loss terms of one batch (tensors from :func:`to_tensors`); a term whose weight is
    0 is not computed. Units: rung-0 noise sigmas (L1 terms), dimensionless (L_T)."""
    y = denoise_rows(model, t["inputs"], t["centers"], t["sigmas"])
    peak, base = t["peak_mask"], t["base_mask"]
    y0, t0 = y[:, 0], t["targets"][:, 0]
    rec = reconstruction(y0, t0, peak, plan)
    if plan.rec_other > 0 and y.shape[1] > 1:
        others = [reconstruction(y[:, j], t["targets"][:, j], peak, plan)
                  for j in range(1, y.shape[1])]
        rec = rec + plan.rec_other * torch.stack(others).mean()
    terms = {"rec": rec}
    if plan.weights["deriv"] > 0:
        terms["deriv"] = loss_deriv(y0, t0)
    if plan.weights["curv"] > 0:
        terms["curv"] = loss_curv(y0, base)
    rungs = t["rungs"]
    cols = [j for j in range(rungs.shape[1]) if bool((rungs[:, j] >= plan.pair_min_rung).all())]
    if plan.weights["cons"] > 0:
        # Outputs back into the common frame (each input sits f_k off it); the end points
        # wrapped by the shift are left out.
        common = shift_linear(y[:, cols], -t["frac"][:, cols])
        terms["cons"] = loss_cons(common[..., 1:-1])
    if plan.weights["T"] > 0:
        residuals = t["inputs"][:, cols] - y[:, cols]
        terms["T"] = loss_T(residuals, rungs[:, cols], t["T"], base)
    return terms


# --------------------------------------------------------------------------- logs


class CsvLog:
    """A CSV log with fixed columns, flushed every row. Opening an existing log keeps the
    rows up to ``keep_until`` (a resumed run rewrites what came after its checkpoint)."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_until: int | None = None):
        self.path, self.columns = path, columns
        rows = []
        if keep_until is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= keep_until]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(path, buffer.getvalue())
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, columns, lineterminator="\n",
                                     extrasaction="ignore")

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow({k: _fmt(v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _fmt(value: Any) -> Any:
    return repr(float(value)) if isinstance(value, (float, np.floating)) else value


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a log.csv / val.csv, numbers as floats (empty cells: terms not computed)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value) if value != "" else None
            except ValueError:
                parsed[key] = value
        out.append(parsed)
    return out


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What train() leaves: the run folder, steps done, seconds spent (this call), the last
    logged loss terms and the last validation terms (when validated)."""

    run_dir: Path
    steps: int
    seconds: float
    last: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)


def configure_torch(config: Mapping[str, Any]) -> None:
    """Threads, seed and determinism of [run]."""
    run = config["run"]
    torch.set_num_threads(run["threads"])
    torch.manual_seed(run["seed"])
    if run["deterministic"]:
        if run["device"] == "cuda":
            # cuBLAS is deterministic only with a fixed workspace (torch's reproducibility notes).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def _optimizer(model: torch.nn.Module, config: Mapping[str, Any]) -> torch.optim.AdamW:
    o = config["optim"]
    return torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]),
                             eps=o["eps"], weight_decay=o["weight_decay"])


def validation_losses(model: torch.nn.Module, sampler: BatchSampler, n_batches: int,
                      plan: StepPlan, device: torch.device | None = None) -> dict[str, float]:
    """Mean loss terms over the fixed validation batches 0..n_batches-1 (all rungs, no
    curriculum), with the weights of plan for the total."""
    plan = dataclasses.replace(plan, rungs=RungPlan("all"), pair_min_rung=0)
    sums: dict[str, float] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(n_batches):
            terms = loss_terms(model, to_tensors(sampler.batch(i, plan.rungs), device), plan)
            _, log = total_loss(terms, plan.weights)
            for key, value in log.items():
                sums[key] = sums.get(key, 0.0) + value / n_batches
    model.train(was_training)
    return sums


def train(
    config: Mapping[str, Any],
    data: Prepared,
    run_dir: str | os.PathLike,
    val_data: Prepared | None = None,
    resume: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train on prepared ladders; write the RUN layout (see checkpoint.py) into run_dir.

    config: the resolved config (config.load_config). resume: continue from
    RUN/checkpoints/latest (the run's config.toml must equal config, but for [run]
    progress and threads). on_step(step, log) is called after every step (1-based count).
    Under torchrun every rank calls this with the same arguments; each trains on its rows of
    the global batch (distributed.py) and only rank 0 writes to run_dir.
    Returns a TrainResult.
    """
    run_dir = Path(run_dir)
    configure_torch(config)
    run = config["run"]
    data_cfg = config["data"]
    ctx = distributed.context(run["device"], data_cfg["batch_size"])
    try:
        return _train(config, data, run_dir, val_data, resume, on_step, ctx)
    finally:
        distributed.close(ctx)


def _train(config: Mapping[str, Any], data: Prepared, run_dir: Path, val_data: Prepared | None,
           resume: bool, on_step: Callable[[int, dict[str, float]], None] | None,
           ctx: distributed.Context) -> TrainResult:
    run = config["run"]
    data_cfg = config["data"]
    sampler = BatchSampler(data, data_cfg["batch_size"], data_cfg["crop_length"], run["seed"],
                           data_cfg["peak_crop_fraction"])
    schedule = Schedule(config, sampler.steps_per_epoch, data.rungs)
    if schedule.total_steps < 1:
        raise InputError("the stages add up to 0 steps: set stage_a/stage_b epochs or steps")
    # On its device before the optimizer exists, so a resumed AdamW state lands there too.
    model = build_model(model_config(config)).to(ctx.device)
    optimizer = _optimizer(model, config)

    start = 0
    if resume:
        folder = ckpt.latest_checkpoint(run_dir)
        if folder is None:
            raise InputError(f"{run_dir}: --resume, but the run has no checkpoint")
        state = ckpt.load_checkpoint(folder, model, optimizer)
        start = int(state["step"])
        elapsed = float(state.get("seconds", 0.0))
    else:
        elapsed = 0.0
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_config(config, run_dir / "config.toml")
    net = distributed.wrap(model, ctx)

    keep = start if resume else None
    log = CsvLog(run_dir / "log.csv", LOG_COLUMNS, keep_until=keep) if ctx.is_main else None
    val_log = None
    val_sampler = None
    if val_data is not None and ctx.is_main:
        val_log = CsvLog(run_dir / "val.csv", VAL_COLUMNS, keep_until=keep)
        val_sampler = BatchSampler(val_data, data_cfg["batch_size"],
                                   min(data_cfg["crop_length"], val_data.length),
                                   run["seed"] + VAL_SEED_OFFSET, data_cfg["peak_crop_fraction"])

    from tqdm.auto import tqdm

    say = print if ctx.is_main else (lambda *_: None)
    ranks = f", {ctx.world_size} ranks x {data_cfg['batch_size'] // ctx.world_size} ladders" \
        if ctx.distributed else ""
    say(f"train: {len(data)} ladders x {data.rungs} rungs x {data.length} points, "
          f"{count_parameters(model) / 1e6:.3f} M parameters, {schedule.total_steps} steps "
          f"({schedule.stage_steps['stage_a']} stage A + {schedule.stage_steps['stage_b']} "
          f"stage B, {sampler.steps_per_epoch} per epoch)" + (f", resuming at {start}"
                                                               if start else "") + ranks)
    bar = tqdm(total=schedule.total_steps, initial=start, unit="step", desc="train",
               disable=not (run["progress"] and ctx.is_main), dynamic_ncols=True)
    clip = config["optim"]["grad_clip"]
    last: dict[str, float] = {}
    val_terms: dict[str, float] = {}
    began = time.perf_counter()
    net.train()
    try:
        for step in range(start, schedule.total_steps):
            plan = schedule.plan(step)
            for group in optimizer.param_groups:
                group["lr"] = plan.lr
            batch = distributed.shard(sampler.batch(step, plan.rungs), ctx)
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16,
                                enabled=config["run"]["autocast"] == "bf16"):
                terms = loss_terms(net, to_tensors(batch, ctx.device), plan)
            loss, values = total_loss(terms, plan.weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # under DDP: gradients averaged over the ranks here
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), clip if clip > 0 else math.inf)
            optimizer.step()
            done = step + 1
            seconds = elapsed + time.perf_counter() - began
            last = {**ctx.mean(values), "grad_norm": float(grad_norm)}
            if not ctx.is_main:
                bar.update(1)
                continue
            log.write({"step": done, "stage": plan.stage, "epoch": plan.epoch, "lr": plan.lr,
                       **last, "peak_weight": plan.peak_weight,
                       "pair_min_rung": plan.pair_min_rung, "rungs": batch.rungs.shape[1],
                       "seconds": seconds})
            bar.update(1)
            if done % 10 == 0 or done == schedule.total_steps:
                bar.set_postfix({k: f"{v:.3g}" for k, v in last.items()}, refresh=False)
            if on_step is not None:
                on_step(done, last)
            final = done == schedule.total_steps
            if val_sampler is not None and (final or (run["val_every"]
                                                      and done % run["val_every"] == 0)):
                val_terms = validation_losses(model, val_sampler, data_cfg["val_batches"], plan,
                                              ctx.device)
                val_log.write({"step": done, "stage": plan.stage, **val_terms})
            if final or (run["checkpoint_every"] and done % run["checkpoint_every"] == 0):
                ckpt.save_checkpoint(run_dir, done, model, optimizer,
                                     {"stage": plan.stage, "epoch": plan.epoch,
                                      "total_steps": schedule.total_steps, "seconds": seconds,
                                      "seed": run["seed"]},
                                     keep=run["keep_checkpoints"])
    finally:
        bar.close()
        if log is not None:
            log.close()
        if val_log is not None:
            val_log.close()
    if ctx.is_main:
        ckpt.save_weights(model, run_dir / ckpt.MODEL_FILE, schedule.total_steps)
    ctx.barrier()  # the other ranks return once the final weights exist
    spent = time.perf_counter() - began
    return TrainResult(run_dir, schedule.total_steps, spent, last, val_terms)


def check_resume_config(run_dir: str | os.PathLike, config: Mapping[str, Any]) -> None:
    """Raise InputError when config differs from RUN/config.toml beyond [run] progress and
    threads (a resumed run must train exactly as it started)."""
    from nmrladder.train.config import load_config

    saved = load_config(Path(run_dir) / "config.toml")
    ignore = ("progress", "threads", "device")
    a = {**saved, "run": {k: v for k, v in saved["run"].items() if k not in ignore}}
    b = {**config, "run": {k: v for k, v in config["run"].items() if k not in ignore}}
    if a != b:
        diff = sorted(f"{section}.{key}" for section in a for key in a[section]
                      if a[section].get(key) != b.get(section, {}).get(key))
        raise InputError(f"{run_dir}/config.toml differs from the config given ({diff}); "
                         "resume with the run's own config (omit --config and --set)")
