"""torch's own int8 path, the like-for-like baseline of the int8 copy ONNX Runtime runs.

PT2E static quantization with the x86 inductor quantizer (torchao; it left torch.ao in
torch 2.x), then ``torch.compile`` with inductor, which lowers the quantized convolutions to
oneDNN's int8 kernels. Two things make it the same model as the int8 ONNX copy:

- the decoder's transposed convolutions become the phase convolutions the exporter writes
  (export/upsampling.py), so the network has the ONNX file's 25 convolutions;
- every Conv1d runs as a Conv2d of height 1: the x86 inductor quantizer annotates 2D
  convolutions only (a lone conv1d is left in float32), and
- only the convolutions the ONNX copy holds in int8 are quantized (its ``int8_convolutions``
  metadata, matched by weight name), with the same calibration spectra
  (export/quantize.py), per-channel int8 weights and uint8 activations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WHY_NOT = (
    "torchao is not installed (PT2E quantization left torch.ao.quantization for torchao; "
    "pip install torchao)"
)


def available() -> str | None:
    """None when the int8 torch path can be built here, else why not (one line)."""
    import logging

    # torchao warns on import about each of its CUDA kernel libraries a CPU build of torch
    # cannot load; none of them is used here
    logging.getLogger("torchao").setLevel(logging.ERROR)
    try:
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer  # noqa: F401
    except ImportError as err:
        return f"{WHY_NOT}: {err}"
    return None


def _as_conv2d(module):
    """``module`` with every Conv1d replaced by the same map as a Conv2d of height 1."""
    import torch
    from torch import nn

    class Conv1dAs2d(nn.Module):
        def __init__(self, conv: nn.Conv1d):
            super().__init__()
            self.conv = nn.Conv2d(
                conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
                dilation=(1, conv.dilation[0]), groups=conv.groups, bias=conv.bias is not None,
                padding_mode=conv.padding_mode,
            )
            with torch.no_grad():
                self.conv.weight.copy_(conv.weight.unsqueeze(2))
                if conv.bias is not None:
                    self.conv.bias.copy_(conv.bias)

        def forward(self, x):
            return self.conv(x.unsqueeze(2)).squeeze(2)

    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv1d):
                setattr(parent, name, Conv1dAs2d(child))
    return module


def _int8_modules(int8_onnx: Path) -> list[str]:
    """Module paths of the convolutions the ONNX copy holds in int8.

    The int8 nodes are named in the copy's metadata; each one's weight initializer keeps
    the torch state_dict name (``<module>.weight``) in the float32 graph it came from.
    """
    import onnx

    from nmrladder.export.onnx_export import read_onnx_info

    chosen = set(read_onnx_info(int8_onnx).extra.get("int8_convolutions", []))
    if not chosen:
        raise ValueError(f"{int8_onnx}: no int8_convolutions in its metadata")
    graph = onnx.load(str(int8_onnx)).graph
    weights = {}
    produced_by = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.name not in chosen:
            continue
        # QDQ format: the weight reaches the convolution through DequantizeLinear (and a
        # QuantizeLinear of the float initializer, or an already-quantized initializer).
        name = node.input[1]
        while name in produced_by:
            name = produced_by[name].input[0]
        weights[node.name] = name.removesuffix("_quantized")
    missing = chosen - set(weights)
    if missing:
        raise ValueError(f"{int8_onnx}: int8 convolutions {sorted(missing)} not in the graph")
    return sorted(w.removesuffix(".weight") for w in weights.values())


def quantize(module, int8_onnx: Path, calibration: np.ndarray, multiple: int):
    """An int8 copy of the float32 torch ``module`` with the same convolutions in int8 as
    ``int8_onnx``, calibrated on ``calibration`` [N, L] (model input units), not compiled.

    Returns (the converted graph module, the number of convolutions it runs in int8).
    """
    import copy

    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    from nmrladder.export.upsampling import with_phase_upsampling

    names = _int8_modules(int8_onnx)
    model = _as_conv2d(with_phase_upsampling(copy.deepcopy(module)).eval())
    known = {name for name, _ in model.named_modules()}
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(f"{int8_onnx}: int8 convolutions {missing} are not modules of the model")
    x = torch.from_numpy(np.ascontiguousarray(calibration[:2]))
    batch = torch.export.Dim("batch", min=1, max=4096)
    blocks = torch.export.Dim("blocks", min=1, max=1 << 20)
    graph = torch.export.export(
        model, (x,), dynamic_shapes={"x": {0: batch, 1: multiple * blocks}}
    ).module()
    quantizer = xiq.X86InductorQuantizer()
    config = xiq.get_default_x86_inductor_quantization_config()
    for name in names:  # the rest stays float32, as in the ONNX copy
        quantizer.set_module_name_qconfig(name, config)
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for start in range(0, len(calibration), 4):
            prepared(torch.from_numpy(np.ascontiguousarray(calibration[start:start + 4])))
    converted = convert_pt2e(prepared)
    quantized = sum(
        node.target == torch.ops.aten.conv2d.default
        and "dequantize" in str(getattr(node.args[1], "target", ""))
        for node in converted.graph.nodes
    )
    return converted, quantized


def compiled(converted, example, backend: str = "inductor"):
    """``converted`` (from quantize) compiled for the shape of the torch tensor ``example``,
    which is run once here: compilation happens then, outside any timing. Call it under
    ``torch.inference_mode()``, as here: another grad mode would compile it again."""
    import torch

    program = torch.compile(converted, backend=backend, dynamic=False)
    # freezing folds the int8 weights into oneDNN's packed layout while compiling (without
    # it the compiled graph re-quantizes them on every call)
    with torch._inductor.config.patch(freezing=True), torch.inference_mode():
        program(example)
    return program
