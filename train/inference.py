"""Load a trained model and denoise with it in PyTorch (evaluation, tests, training hooks).

A "denoiser" in nmrladder is any object with ``.denoise(x [N, L]) -> [N, L]`` that takes
spectra in ANY normalisation. Here:

- :func:`load_run` reads a RUN directory written by training: ``config.toml`` (its
  ``[model]`` table is ``ModelConfig.to_dict()``) and ``model.safetensors`` (the UNet1d
  state_dict), and returns ``(model, config)``.
- :class:`TorchDenoiser` wraps a UNet1d in the runtime's core (:mod:`nmrladder.runtime.core`:
  ``z = (x - center) / sigma``, zero padding to the length multiple, ``y = center + sigma *
  net(z)``, then the residual step if asked), so it matches every exported backend.
- :func:`load_denoiser` takes a RUN directory (TorchDenoiser) or an ``.onnx`` artefact
  (``nmrladder.runtime.Denoiser``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from nmrladder.runtime.core import Core, CoreDenoiser
from nmrladder.runtime.errors import InputError, ModelError

__all__ = ["TorchDenoiser", "load_denoiser", "load_run"]

CONFIG_NAME = "config.toml"
WEIGHTS_NAME = "model.safetensors"


def _run_dir(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    if path.is_file() and path.name in (CONFIG_NAME, WEIGHTS_NAME):
        path = path.parent  # a file of the run stands for its directory
    if not path.is_dir():
        raise ModelError(f"{run_dir}: no such run directory (expected {CONFIG_NAME} and "
                         f"{WEIGHTS_NAME} from 'nmrladder train')")
    return path


def _read_config(path: Path) -> dict:
    file = path / CONFIG_NAME
    if not file.is_file():
        raise ModelError(f"{path}: {CONFIG_NAME} is missing; not a training run directory")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser under its old name
        import tomli as tomllib
    try:
        with open(file, "rb") as f:
            config = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{file}: not valid TOML ({err})") from None
    if not isinstance(config.get("model"), dict):
        raise ModelError(f"{file}: no [model] table (the ModelConfig of the run)")
    return config


def load_run(run_dir: str | os.PathLike):
    """The trained UNet1d of a RUN directory (eval mode, CPU) and the run's config dict.

    Raises ModelError when config.toml or model.safetensors is missing or unreadable, or when
    the weights do not fit the ``[model]`` config.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nmrladder.train.model import ModelConfig, build_model

    path = _run_dir(run_dir)
    config = _read_config(path)
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except (InputError, TypeError) as err:
        raise ModelError(f"{path / CONFIG_NAME}: bad [model] table: {err}") from None
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{path}: {WEIGHTS_NAME} is missing (was training finished?)")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"{weights}: unreadable safetensors file ({err})") from None
    model = build_model(model_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[:3]
        raise ModelError(
            f"{weights}: the weights do not match the [model] config of {CONFIG_NAME}: "
            + " ".join(first)
        ) from None
    return model.eval(), config


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    import torch

    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TorchDenoiser(CoreDenoiser):
    """A UNet1d behind the project's denoiser API, around it the runtime's core
    (:mod:`nmrladder.runtime.core`: the input scaling and, with ``residual_lb``, the residual
    step), so that it matches every exported backend.

    ``batch_size`` spectra go through the network at a time, on the model's device;
    ``threads`` sets torch's intra-op threads during :meth:`denoise` (None: leave torch's
    setting). The model runs in eval mode and gets its own mode back afterwards, so a model
    in training can be evaluated between epochs.
    """

    def __init__(
        self,
        model,
        batch_size: int = 8,
        threads: int | None = None,
        residual_lb: float | None = None,
    ):
        if batch_size < 1:
            raise InputError(f"batch_size={batch_size} must be >= 1")
        self.model = model
        self.batch_size = int(batch_size)
        self.threads = threads
        self.multiple = int(model.config.length_multiple)
        self.core = Core(self.multiple, residual_lb)

    def denoise(self, x: np.ndarray) -> np.ndarray:
        """Denoised spectra, float32, same shape as x ([N, L] or [L], any normalisation)."""
        arr = np.asarray(x)
        single = arr.ndim == 1
        rows = np.atleast_2d(arr)
        if rows.ndim != 2 or not np.all(np.isfinite(rows)):
            raise InputError(f"spectra: expected finite values of shape [N, L] or [L], "
                             f"got shape {arr.shape}")
        y = self.core.denoise(rows, self._network)
        return y[0] if single else y

    def _network(self, z: np.ndarray) -> np.ndarray:
        """The model on the canonical input z [N, L_pad], in batches, in eval mode."""
        import torch

        out = np.empty_like(z)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), _torch_threads(self.threads):
                for start in range(0, z.shape[0], self.batch_size):
                    batch = torch.from_numpy(z[start:start + self.batch_size]).to(device)
                    out[start:start + self.batch_size] = self.model(batch).cpu().numpy()
        finally:
            self.model.train(was_training)
        return out


def load_denoiser(path: str | os.PathLike, batch_size: int = 8, threads: int | None = None):
    """A denoiser from a RUN directory (:class:`TorchDenoiser`) or an ``.onnx`` artefact
    (``nmrladder.runtime.Denoiser``); ModelError for anything else."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise ModelError(f"{path}: no such ONNX file")
        from nmrladder.runtime import Denoiser

        return Denoiser(path, batch_size=batch_size, threads=threads)
    if path.is_dir() or path.name in (CONFIG_NAME, WEIGHTS_NAME):
        model, _ = load_run(path)
        return TorchDenoiser(model, batch_size=batch_size, threads=threads)
    raise ModelError(
        f"{path}: not a run directory (config.toml + model.safetensors) or an .onnx file"
    )
