"""The decoder's transposed convolutions, exported as ordinary convolutions.

ONNX Runtime has no int8 kernel for ConvTranspose on CPUs: in the quantized copy the four
upsampling layers ran dequantized, in float32, and took a large share of its time
(benchmarks/README.md, "Efficiency", has the share). A ConvTranspose1d with kernel 4,
stride 2 and padding 1 is the same map as a 3-tap convolution that computes both output
phases at once, followed by an interleave:

    out[2m]     = W[:, :, 1]^T x[m] + W[:, :, 3]^T x[m - 1]
    out[2m + 1] = W[:, :, 2]^T x[m] + W[:, :, 0]^T x[m + 1]

so the export swaps it in (the trained weights are rearranged, nothing is re-trained). The
quantizer then turns these convolutions into int8 QLinearConv like the others.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

#: Kernel position k of the transposed convolution -> (output phase, tap of the phase
#: convolution); tap t reads x[m + t - 1], phase 0 writes out[2m], phase 1 out[2m + 1].
PHASE_TAPS = {3: (0, 0), 1: (0, 1), 2: (1, 1), 0: (1, 2)}


class PhaseUpsample(nn.Module):
    """The map of ``transposed`` (ConvTranspose1d, kernel 4, stride 2, padding 1): [B, C_in,
    L] -> [B, C_out, 2 L], as Conv1d(C_in, 2 C_out, 3, padding 1) and an interleave."""

    def __init__(self, transposed: nn.ConvTranspose1d):
        super().__init__()
        if not is_phase_equivalent(transposed):
            raise ValueError(f"not a kernel-4, stride-2, padding-1 ConvTranspose1d: {transposed}")
        weight = transposed.weight.detach()  # [C_in, C_out, 4]
        c_in, c_out, _ = weight.shape
        self.out_channels = c_out
        self.conv = nn.Conv1d(c_in, 2 * c_out, 3, padding=1)
        # The even phase's output channels first, the odd phase's next; the taps no kernel
        # position maps to stay zero.
        taps = torch.zeros(2 * c_out, c_in, 3, dtype=weight.dtype)
        for k, (phase, tap) in PHASE_TAPS.items():
            taps[phase * c_out : (phase + 1) * c_out, :, tap] = weight[:, :, k].T
        bias = transposed.bias.detach() if transposed.bias is not None else torch.zeros(c_out)
        with torch.no_grad():
            self.conv.weight.copy_(taps)
            self.conv.bias.copy_(torch.cat([bias, bias]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = self.conv(x)  # [B, 2 C_out, L]: even phase, then odd phase
        batch, _, length = phases.shape
        interleaved = phases.reshape(batch, 2, self.out_channels, length).permute(0, 2, 3, 1)
        return interleaved.reshape(batch, self.out_channels, 2 * length)


def transposed_parameters(taps, bias):
    """The ConvTranspose1d weight [C_in, C_out, 4] and bias [C_out] that a PhaseUpsample's
    convolution (``taps`` [2 C_out, C_in, 3], ``bias`` [2 C_out]; torch tensors or NumPy
    arrays) was made from: the way back from an exported file to the trained module."""
    c_out = taps.shape[0] // 2
    # [C_out, C_in] of each kernel position, transposed to the transposed convolution's layout
    kernel = [
        taps[PHASE_TAPS[k][0] * c_out : (PHASE_TAPS[k][0] + 1) * c_out, :, PHASE_TAPS[k][1]]
        for k in range(4)
    ]
    if isinstance(taps, torch.Tensor):
        return torch.stack([k.T for k in kernel], dim=-1), bias[:c_out]
    return np.stack([k.T for k in kernel], axis=-1), bias[:c_out]


def is_phase_equivalent(module: nn.Module) -> bool:
    """Whether ``module`` is a ConvTranspose1d that PhaseUpsample reproduces."""
    return (
        isinstance(module, nn.ConvTranspose1d)
        and module.kernel_size == (4,)
        and module.stride == (2,)
        and module.padding == (1,)
        and module.output_padding == (0,)
        and module.dilation == (1,)
        and module.groups == 1
    )


def with_phase_upsampling(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ConvTranspose1d that PhaseUpsample reproduces replaced
    by one (the model itself is left as it is)."""
    exported = copy.deepcopy(model)
    for module in list(exported.modules()):
        for child_name, child in list(module.named_children()):
            if is_phase_equivalent(child):
                setattr(module, child_name, PhaseUpsample(child))
    return exported
