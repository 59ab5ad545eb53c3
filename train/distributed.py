"""Data-parallel training under torchrun (docs/scale-out.md, "Training with torchrun").

torchrun starts one process per worker and sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; :func:`context` joins them into one process group (gloo on CPU, nccl on
CUDA). The global batch of step s stays what one process would draw
(``BatchSampler.batch(s)``, a function of the seed and the step), and each rank trains on
its own rows of it, so the ladders are split across ranks, DDP averages the gradients, and a
checkpoint (written by rank 0 only) resumes exactly on any number of ranks that divides the
batch.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from nmrladder.runtime.errors import InputError


@dataclass(frozen=True)
class Context:
    """This process's place in the run: rank, world size, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes the run folder and prints."""
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of batch_size ladders (contiguous, equal)."""
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each logged value (what the global batch would log)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        if self.device.type == "cuda":
            t = t.to(self.device)
        dist.all_reduce(t)
        return dict(zip(keys, (t / self.world_size).tolist(), strict=True))


def launched() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun set them; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def context(device: str = "cpu", batch_size: int = 1) -> Context:
    """Join torchrun's process group if this process was started by it, else one process.

    device: the config's run.device ("cpu" or "cuda"); under torchrun with CUDA each rank
    takes GPU LOCAL_RANK and nccl, on CPU gloo. batch_size must be divisible by the world
    size so every rank gets the same number of ladders (the gradient average is then the
    global batch's).
    """
    rank, world_size = launched()
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("run.device = 'cuda', but torch sees no CUDA device")
    if world_size <= 1:
        return Context(device=torch.device("cuda" if device == "cuda" else "cpu"))
    if batch_size % world_size:
        raise InputError(f"data.batch_size {batch_size} is not divisible by the {world_size} "
                         "torchrun processes; every rank needs the same share of the batch")
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        target, backend = torch.device("cuda", local), "nccl"
    else:
        target, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return Context(rank, world_size, target)


def close(ctx: Context) -> None:
    """Leave the process group (after the last collective)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch, ctx: Context):
    """This rank's rows of a global batch (every per-ladder array of the Batch dataclass)."""
    if not ctx.distributed:
        return batch
    rows = ctx.rows(len(batch.inputs))
    return dataclasses.replace(batch, **{
        f.name: getattr(batch, f.name)[rows]
        for f in dataclasses.fields(batch)
        if isinstance(getattr(batch, f.name), np.ndarray)
    })


def wrap(model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """The model on its device, in DistributedDataParallel when there are several ranks."""
    model = model.to(ctx.device)
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper (what checkpoints and validation use)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
