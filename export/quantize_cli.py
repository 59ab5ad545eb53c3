"""``nmrladder quantize``: an exported float32 ONNX model to its int8 copy for CPUs."""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = (
    "Quantize an exported float32 ONNX model for ONNX Runtime on CPUs: each convolution is "
    "quantized alone and its departure from float32 measured on simulated spectra; the least "
    "sensitive ones go to int8 while the output stays within the budget (rms, in the input's "
    "noise sigmas). Writes MODEL.int8.onnx and a .quant.json report beside it."
)
EXAMPLES = """  nmrladder quantize models/cpu/model.onnx
  nmrladder quantize models/cpu/model.onnx --budget 0.01 --out models/cpu/model.int8.onnx
"""


def add_arguments(parser) -> None:
    parser.add_argument("model", type=Path, help="float32 ONNX model exported by nmrladder")
    parser.add_argument(
        "--out", type=Path, default=None, help="destination (default: MODEL with .int8.onnx)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="rms departure from float32 allowed, in the input's noise sigmas (default: 0.02)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from nmrladder.export.quantize import DEFAULT_BUDGET_SIGMA, quantize_int8

    out = args.out or args.model.with_name(args.model.name.removesuffix(".onnx") + ".int8.onnx")
    report = quantize_int8(
        args.model,
        out,
        budget_sigma=DEFAULT_BUDGET_SIGMA if args.budget is None else args.budget,
        progress=not args.no_progress,
    )
    print(f"{out}: {report.summary()}")
    return 0
