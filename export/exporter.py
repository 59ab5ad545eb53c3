"""``export_run``: a trained RUN folder to self-describing, parity-checked artefacts.

One table of formats, one function per format (Polygraphy/Ultralytics style), metadata in
every artefact, and nothing silently changed: an option a format cannot honour is an error.

| format   | file                     | needs                    |
| -------- | ------------------------ | ------------------------ |
| onnx     | model.onnx (+ .parity.json) | torch, onnx, onnxscript, onnxruntime |
| onnx-int8 | model.int8.onnx (+ .quant.json) | the onnx format's, for ORT on CPUs |
| pt2      | model.pt2                | torch                    |
| tensorrt | model.<precision>.plan (+ .json) | tensorrt, cuda-python, a GPU |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmrladder.export.onnx_export import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MIN_LENGTH,
    DEFAULT_OPSET,
    export_onnx,
    sha256_of,
)
from nmrladder.runtime.errors import InputError

FORMATS = ("onnx", "onnx-int8", "pt2", "tensorrt")


@dataclass
class ExportSummary:
    onnx: Path | None = None
    parity: object = None
    pt2: Path | None = None
    engines: list = field(default_factory=list)
    int8: Path | None = None
    quantization: object = None

    def lines(self) -> list[str]:
        out = []
        if self.onnx:
            out.append(f"onnx: {self.onnx}")
        if self.parity is not None:
            out.append(self.parity.summary())
        if self.int8:
            out.append(f"onnx-int8: {self.int8}")
            out.append(self.quantization.summary())
        if self.pt2:
            out.append(f"pt2:  {self.pt2}")
        out += [f"tensorrt: {plan} (+ {sidecar.name})" for plan, sidecar in self.engines]
        return out


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    formats: tuple[str, ...] = ("onnx", "pt2"),
    precisions: tuple[str, ...] = ("fp16",),
    opset: int = DEFAULT_OPSET,
    min_length: int = DEFAULT_MIN_LENGTH,
    max_length: int = DEFAULT_MAX_LENGTH,
    parity: bool = True,
    name: str = "model",
    training_data: str | None = None,
    int8_budget: float | None = None,
) -> ExportSummary:
    """Export the final weights of a training run (see docs/export.md)."""
    from nmrladder.train.inference import load_run
    from nmrladder.train.provenance import read_provenance

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"export formats {unknown}: use some of {FORMATS}")
    for derived in ("tensorrt", "onnx-int8"):
        if derived in formats and "onnx" not in formats:
            raise InputError(f"{derived} is made from the ONNX export: add 'onnx' to the formats")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, config = load_run(run_dir)
    checkpoint = run_dir / "model.safetensors"
    description = training_data if training_data is not None else _describe_training(config)
    provenance = {"provenance": {**read_provenance(run_dir), "config": config}}
    summary = ExportSummary()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_result = None
    if "onnx" in formats:
        onnx_result = export_onnx(
            model,
            out_dir / f"{name}.onnx",
            opset=opset,
            min_length=min_length,
            max_length=max_length,
            checkpoint_sha256=sha256_of(checkpoint),
            training_data=description,
            extra=provenance,
            parity=parity,
        )
        summary.onnx, summary.parity = onnx_result.path, onnx_result.parity
    if "onnx-int8" in formats:
        from nmrladder.export.quantize import DEFAULT_BUDGET_SIGMA, quantize_int8

        summary.int8 = out_dir / f"{name}.int8.onnx"
        summary.quantization = quantize_int8(
            summary.onnx,
            summary.int8,
            budget_sigma=DEFAULT_BUDGET_SIGMA if int8_budget is None else int8_budget,
        )
    if "pt2" in formats:
        from nmrladder.export.onnx_export import artefact_info
        from nmrladder.export.torch_program import export_program

        info = (
            onnx_result.info
            if onnx_result
            else artefact_info(
                model,
                opset=opset,
                min_length=min_length,
                max_length=max_length,
                checkpoint_sha256=sha256_of(checkpoint),
                training_data=description,
                extra=provenance,
            )
        )
        summary.pt2 = export_program(model, out_dir / f"{name}.pt2", info, max_length)
    if "tensorrt" in formats:
        from nmrladder.export.tensorrt_build import build_engines

        summary.engines = build_engines(summary.onnx, out_dir, precisions)
    return summary


def _describe_training(config: dict) -> str:
    data = config.get("data", {}) if isinstance(config, dict) else {}
    source = data.get("path") or data.get("source") or "see the run's config.toml"
    return f"nmrladder train; data: {source}"
