"""Checkpoints and final weights of a training run (the RUN directory layout).

    RUN/config.toml                        the resolved config ([model] = ModelConfig.to_dict())
    RUN/model.safetensors                  final weights (UNet1d state_dict), metadata
                                           {"step", "nmrladder_version"}
    RUN/checkpoints/step_0001000/          model.safetensors, optimizer.pt, state.json
    RUN/checkpoints/latest                 text: the newest checkpoint folder's name
    RUN/log.csv                            one row per optimizer step (every loss term, lr)

optimizer.pt holds the AdamW state and torch's RNG state as plain tensors and dicts, so it
loads with ``torch.load(weights_only=True)``. Every file and folder appears complete or not
at all (temporary name, then rename).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

from nmrladder import __version__
from nmrladder.runtime.atomic import atomic_path, write_text_atomic
from nmrladder.runtime.errors import InputError

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def save_weights(model: torch.nn.Module, path: str | os.PathLike, step: int) -> Path:
    """The model's state_dict as safetensors (atomically), metadata step and version."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"step": str(int(step)), "nmrladder_version": __version__}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state_dict, metadata) of a safetensors weights file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such weights file")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    return load_file(str(path)), metadata


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int = 0,
) -> Path:
    """Write RUN/checkpoints/step_XXXXXXX/ and point RUN/checkpoints/latest at it.

    state: JSON-able training state (step, stage, ...); keep > 0 deletes all but the newest
    `keep` checkpoints. Returns the checkpoint folder.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".{final.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(model, tmp / MODEL_FILE, step)
    torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
               tmp / OPTIMIZER_FILE)
    write_text_atomic(tmp / STATE_FILE, json.dumps({**state, "step": int(step)}, indent=2))
    if final.exists():  # a re-run over an older run's folder: replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(root / LATEST, final.name + "\n")
    if keep > 0:
        for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The folder RUN/checkpoints/latest names, or None when the run has no checkpoint."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text().strip()
    if not (folder / STATE_FILE).is_file():
        raise InputError(f"{pointer} names {folder.name}, which is missing or incomplete")
    return folder


def load_checkpoint(
    folder: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Load a checkpoint's weights into model (and its state into optimizer, restoring
    torch's RNG); returns its state.json."""
    folder = Path(folder)
    weights, _ = load_weights(folder / MODEL_FILE)
    model.load_state_dict(weights)
    if optimizer is not None:
        saved = torch.load(folder / OPTIMIZER_FILE, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
    return json.loads((folder / STATE_FILE).read_text())
