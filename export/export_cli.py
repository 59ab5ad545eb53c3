"""``nmrladder export``: a training run to ONNX (+ parity), a torch program and TensorRT engines."""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = (
    "Export a training run's final weights: ONNX with dynamic batch and length, metadata and a "
    "parity report against torch (ONNX Runtime CPU); an int8 copy for ONNX Runtime on CPUs "
    "(the convolutions that fit an error budget in int8, measured against float32); a "
    "torch.export program (.pt2) for the runtime's torch backend; TensorRT engines "
    "(fp32/fp16/bf16) where TensorRT and a GPU exist."
)
EXAMPLES = """  nmrladder export runs/cpu --out models/cpu
  nmrladder export runs/cpu --out models/cpu --formats onnx --opset 17
  nmrladder export runs/cpu --out models/cpu --formats onnx,onnx-int8 --int8-budget 0.01
  nmrladder export runs/cpu --out models/cpu --formats onnx,pt2,tensorrt --precision fp16,bf16
"""


def add_arguments(parser) -> None:
    from nmrladder.export.onnx_export import DEFAULT_MAX_LENGTH, DEFAULT_MIN_LENGTH, DEFAULT_OPSET

    parser.add_argument(
        "run", type=Path, help="training run folder (config.toml + model.safetensors)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the artefacts")
    parser.add_argument(
        "--formats",
        default="onnx,pt2",
        help="comma list of onnx, onnx-int8, pt2, tensorrt (default: onnx,pt2)",
    )
    parser.add_argument(
        "--int8-budget",
        type=float,
        default=None,
        help="onnx-int8: rms departure from float32 allowed, in the input's noise sigmas "
        "(default: 0.02)",
    )
    parser.add_argument(
        "--precision", default="fp16", help="TensorRT precisions, comma list of fp32, fp16, bf16"
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--min-length", type=int, default=DEFAULT_MIN_LENGTH, help="shortest spectrum accepted"
    )
    parser.add_argument(
        "--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="longest spectrum accepted"
    )
    parser.add_argument(
        "--name", default="model", help="file stem of the artefacts (default: model)"
    )
    parser.add_argument(
        "--no-parity", action="store_true", help="skip the ORT-vs-torch parity check (not advised)"
    )


def run(args) -> int:
    from nmrladder.export.exporter import export_run

    summary = export_run(
        args.run,
        args.out,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
        precisions=tuple(p.strip() for p in args.precision.split(",") if p.strip()),
        opset=args.opset,
        min_length=args.min_length,
        max_length=args.max_length,
        parity=not args.no_parity,
        name=args.name,
        int8_budget=args.int8_budget,
    )
    for line in summary.lines():
        print(line)
    return 0
