"""The residual 1D U-Net of METHOD section 4 (see docs/model.md).

Input and output are real spectra of shape [B, L] (float32); the forward always returns the
denoised spectrum, whatever the head predicts, so every exported artefact has the same meaning.
L must be a multiple of ``2 ** depth``: padding is the runtime's job, and the forward has no
Python control flow on shapes, so it exports to ONNX with a dynamic batch and length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nmrladder.runtime.errors import InputError

NORMS = ("group", "layer")
ATTENTIONS = ("none", "se", "cbam")
OUTPUTS = ("spectrum", "residual")
HEADS = ("linear", "tanh")

# Down- and up-sampling geometry (fixed, not configurable): a stride-2 conv of kernel 4 and
# padding 1 halves an even length exactly, and the transposed conv of the same geometry doubles
# it exactly, so every level's length is L / 2**level with no cropping.
RESAMPLE_KERNEL = 4
# Kernel of CBAM's spatial-attention conv over [mean, max] of the channels.
CBAM_SPATIAL_KERNEL = 7


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the U-Net; a plain dict round-trips through ``to_dict``/``from_dict``.

    widths and dilations hold one entry per encoder level (``len == depth``); the bottleneck,
    at length L / 2**depth, runs at the deepest level's width and dilation. The defaults are
    METHOD 4's: channels 64 -> 128 -> 256 -> 256 (bottleneck), kernel 9, dilations 1/2/4/8.
    """

    depth: int = 4
    widths: tuple[int, ...] = (64, 128, 256, 256)
    kernel_size: int = 9
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    norm: str = "group"  # "group": GroupNorm(groups, C); "layer": LayerNorm over channels
    groups: int = 8
    attention: str = "none"  # "none" | "se" | "cbam"
    attention_levels: tuple[int, ...] = ()  # encoder/decoder levels that get attention
    attention_bottleneck: bool = True  # whether the bottleneck gets attention
    attention_reduction: int = 8  # channel reduction of the SE / CBAM MLP
    output: str = "spectrum"  # "spectrum": y = x + head(f); "residual": y = x - head(f)
    head: str = "linear"  # "linear" | "tanh" (A * tanh(h / A))
    head_amplitude: float = 10.0  # A of the tanh head, in units of the model's input
    input_compression: bool = True  # first conv sees c * asinh(x / c)
    compression_scale: float = 4.0  # c, in units of the model's input
    stem_stride: int = 1  # s > 1: the U-Net runs on [B, s, L/s] (space-to-depth), s x cheaper

    def __post_init__(self) -> None:
        # TOML and JSON give lists: store tuples so the config stays hashable and immutable.
        for name in ("widths", "dilations", "attention_levels"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        problems = []
        if self.depth < 1:
            problems.append(f"depth must be >= 1, got {self.depth}")
        if len(self.widths) != self.depth:
            problems.append(f"widths needs one entry per level ({self.depth}), got {self.widths}")
        if len(self.dilations) != self.depth:
            problems.append(
                f"dilations needs one entry per level ({self.depth}), got {self.dilations}"
            )
        if any(w < 1 for w in self.widths) or any(d < 1 for d in self.dilations):
            problems.append("widths and dilations must be positive")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(f"kernel_size must be odd and positive, got {self.kernel_size}")
        for name, value, allowed in (
            ("norm", self.norm, NORMS),
            ("attention", self.attention, ATTENTIONS),
            ("output", self.output, OUTPUTS),
            ("head", self.head, HEADS),
        ):
            if value not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {value!r}")
        if self.norm == "group" and (self.groups < 1 or any(w % self.groups for w in self.widths)):
            problems.append(f"groups={self.groups} must divide every width {self.widths}")
        if any(not 0 <= level < self.depth for level in self.attention_levels):
            problems.append(
                f"attention_levels must lie in 0..{self.depth - 1}, got {self.attention_levels}"
            )
        if self.attention_reduction < 1:
            problems.append(f"attention_reduction must be >= 1, got {self.attention_reduction}")
        if self.stem_stride < 1:
            problems.append(f"stem_stride must be >= 1, got {self.stem_stride}")
        if self.head_amplitude <= 0 or self.compression_scale <= 0:
            problems.append("head_amplitude and compression_scale must be > 0")
        if problems:
            raise InputError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def length_multiple(self) -> int:
        """Every input length must be a multiple of this (the stem, then one halving per level)."""
        return self.stem_stride * 2**self.depth

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of builtins (lists for tuples), for TOML, JSON and ONNX metadata."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of ``to_dict``; missing keys take their defaults, unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown ModelConfig key(s) {unknown}; valid keys are {sorted(known)}"
            )
        return cls(**data)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of [B, C, L], separately at every position.

    (GroupNorm(1, C) would normalise over channels *and* length, which is not this.)
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).square().mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def _norm(config: ModelConfig, channels: int) -> nn.Module:
    if config.norm == "group":
        return nn.GroupNorm(config.groups, channels)
    return ChannelLayerNorm(channels)


def _mlp(channels: int, hidden: int) -> nn.Module:
    """The channel MLP of SE and CBAM: C -> hidden -> C."""
    return nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))


def _hidden(config: ModelConfig, channels: int) -> int:
    """Width of the attention MLP."""
    return max(1, channels // config.attention_reduction)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel gains from the mean over the length."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.mlp = _mlp(channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mlp(x.mean(dim=-1))).unsqueeze(-1)


class CBAM1d(nn.Module):
    """CBAM in 1D: channel gains from mean- and max-pooling (shared MLP), then a gain per
    position from a conv over the channel mean and max."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.mlp = _mlp(channels, hidden)
        self.spatial = nn.Conv1d(2, 1, CBAM_SPATIAL_KERNEL, padding=CBAM_SPATIAL_KERNEL // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(x.mean(dim=-1)) + self.mlp(x.amax(dim=-1))
        x = x * torch.sigmoid(gate).unsqueeze(-1)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def _attention(config: ModelConfig, channels: int, enabled: bool) -> nn.Module:
    if not enabled or config.attention == "none":
        return nn.Identity()
    if config.attention == "se":
        return SqueezeExcite(channels, _hidden(config, channels))
    return CBAM1d(channels, _hidden(config, channels))


class ResUnit(nn.Module):
    """shortcut(x) + attention(GELU(norm(conv_k,d(x)))); the shortcut is a 1x1 conv when the
    channel count changes, else the identity (attention on the branch, as in SE-ResNet)."""

    def __init__(self, config: ModelConfig, c_in: int, c_out: int, dilation: int, attention: bool):
        super().__init__()
        k = config.kernel_size
        self.conv = nn.Conv1d(c_in, c_out, k, dilation=dilation, padding=dilation * (k - 1) // 2)
        self.norm = _norm(config, c_out)
        self.act = nn.GELU()
        self.attention = _attention(config, c_out, attention)
        self.shortcut = nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.attention(self.act(self.norm(self.conv(x))))


class EncoderLevel(nn.Module):
    """A residual unit at this level's length, then a stride-2 conv to the next level."""

    def __init__(self, config: ModelConfig, level: int, c_in: int):
        super().__init__()
        c = config.widths[level]
        with_attention = level in config.attention_levels
        self.unit = ResUnit(config, c_in, c, config.dilations[level], with_attention)
        self.down = nn.Conv1d(c, c, RESAMPLE_KERNEL, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (skip at this level, input of the next level)."""
        skip = self.unit(x)
        return skip, self.down(skip)


class DecoderLevel(nn.Module):
    """Transposed-conv upsampling, concat with the encoder skip, a 1x1 merge back to the
    level's width, then a residual unit."""

    def __init__(self, config: ModelConfig, level: int, c_below: int):
        super().__init__()
        c = config.widths[level]
        with_attention = level in config.attention_levels
        self.up = nn.ConvTranspose1d(c_below, c, RESAMPLE_KERNEL, stride=2, padding=1)
        self.merge = nn.Conv1d(2 * c, c, 1)
        self.unit = ResUnit(config, c, c, config.dilations[level], with_attention)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.unit(self.merge(torch.cat([self.up(x), skip], dim=1)))


def _space_to_depth(x: torch.Tensor, stride: int) -> torch.Tensor:
    """[B, L] -> [B, stride, L / stride]: channel j holds the points j, j + stride, ...

    Lossless (a reshape), so narrow lines keep their full resolution, while every layer of
    the U-Net runs on stride x fewer positions.
    """
    return x.reshape(x.shape[0], -1, stride).transpose(1, 2)


def _depth_to_space(h: torch.Tensor) -> torch.Tensor:
    """[B, stride, L / stride] -> [B, L], the inverse of _space_to_depth."""
    return h.transpose(1, 2).reshape(h.shape[0], -1)


class UNet1d(nn.Module):
    """Residual 1D U-Net: [B, L] -> denoised [B, L]; see ModelConfig and docs/model.md."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = config.widths
        self.encoder = nn.ModuleList(
            EncoderLevel(config, level, widths[level - 1] if level else config.stem_stride)
            for level in range(config.depth)
        )
        self.bottleneck = ResUnit(
            config, widths[-1], widths[-1], config.dilations[-1], config.attention_bottleneck
        )
        # Deepest level first, the order in which the forward visits them; the deepest one
        # upsamples the bottleneck, which has widths[-1] channels.
        self.decoder = nn.ModuleList(
            DecoderLevel(config, level, widths[min(level + 1, config.depth - 1)])
            for level in reversed(range(config.depth))
        )
        self.head = nn.Conv1d(widths[0], config.stem_stride, 1)

    def correction(self, x: torch.Tensor) -> torch.Tensor:
        """What the head predicts for x [B, L]: the added correction ("spectrum") or the
        noise estimate ("residual"), [B, L]."""
        h = _space_to_depth(x, self.config.stem_stride)
        if self.config.input_compression:
            # Huge solvent lines would dominate the norm statistics; asinh keeps values
            # below ~c linear (the noise) and compresses the rest logarithmically.
            c = self.config.compression_scale
            h = c * torch.asinh(h / c)
        skips = []
        for level in self.encoder:
            skip, h = level(h)
            skips.append(skip)
        h = self.bottleneck(h)
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            h = level(h, skip)
        h = _depth_to_space(self.head(h))
        if self.config.head == "tanh":
            a = self.config.head_amplitude
            h = a * torch.tanh(h / a)  # slope 1 near 0, bounded by +-a
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L] float32 (L a multiple of 2**depth) -> denoised spectrum [B, L]."""
        h = self.correction(x)
        # The shortcut uses the raw input, never the compressed one.
        return x + h if self.config.output == "spectrum" else x - h


def build_model(config: ModelConfig | None = None) -> UNet1d:
    """The U-Net for config (METHOD's defaults when None); the model keeps it as ``.config``."""
    return UNet1d(config if config is not None else ModelConfig())


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of model (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def _unit_macs(config: ModelConfig, c_in: int, c_out: int, n: int, attention: bool) -> int:
    """Multiply-accumulates of one ResUnit at length n."""
    macs = c_in * c_out * config.kernel_size * n
    if c_in != c_out:
        macs += c_in * c_out * n  # 1x1 shortcut
    if attention and config.attention != "none":
        mlp = 2 * c_out * _hidden(config, c_out)
        if config.attention == "se":
            macs += mlp
        else:  # CBAM: the MLP runs on the mean and on the max, plus the spatial conv
            macs += 2 * mlp + 2 * CBAM_SPATIAL_KERNEL * n
    return macs


def flops_per_spectrum(config: ModelConfig, length: int) -> int:
    """Analytic FLOPs of one forward pass on one spectrum of the given length.

    Counts 2 x the multiply-accumulates of every conv, transposed conv and linear layer, the
    way torch.utils.flop_counter does (a transposed conv costs C_in * C_out * k per *input*
    point; biases, norms, activations, attention gates and the shortcut additions are not
    counted: they are O(C * L), well under 1 % of the total at the default widths).
    """
    if length < 1 or length % config.length_multiple:
        raise InputError(f"length {length} is not a positive multiple of {config.length_multiple}")
    widths, k_res = config.widths, RESAMPLE_KERNEL
    macs, n, c_in = 0, length // config.stem_stride, config.stem_stride
    for level, c in enumerate(widths):
        macs += _unit_macs(config, c_in, c, n, level in config.attention_levels)
        n //= 2
        macs += c * c * k_res * n  # stride-2 conv, output length n
        c_in = c
    macs += _unit_macs(config, c_in, c_in, n, config.attention_bottleneck)
    for level in reversed(range(config.depth)):
        c, c_below = widths[level], widths[min(level + 1, config.depth - 1)]
        macs += c_below * c * k_res * n  # transposed conv, input length n
        n *= 2
        macs += 2 * c * c * n  # 1x1 merge of [up, skip]
        macs += _unit_macs(config, c, c, n, level in config.attention_levels)
    macs += widths[0] * config.stem_stride * n  # head
    return 2 * macs
