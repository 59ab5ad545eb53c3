"""Partial int8 quantization for ONNX Runtime on CPUs.

The convolutions whose int8 error is negligible run in int8 (ONNX QDQ: ORT fuses them into
its integer convolution kernels); the rest stay float32. Why partial: in the shipped model,
quantizing one convolution of the first or last level alone moves the output by 0.013-0.1
noise sigmas (the network's own error against the truth is about 0.18 sigma), one of the
deeper levels by 0.0002-0.01 sigma, and every one together by 0.15 sigma
(docs/export.md, "int8 for CPUs").

How the convolutions are chosen: each one is quantized alone and the output's rms departure
from the float32 model is measured, in noise sigmas of the input (the network's input and
output are in those units), on simulated spectra held out from the calibration ones; the
least sensitive are taken while the departures, added in quadrature, fit the budget; the
chosen set is then built and measured together, also at the export's parity lengths, and
its most sensitive member dropped until it fits everywhere.

Activations are unsigned 8-bit, weights signed 8-bit per output channel with 7-bit range
(``reduce_range``): ORT's u8s8 kernels on x86 CPUs without VNNI add products in pairs into
16 bits, which full-range weights can saturate; 7 bits cannot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nmrladder.export.onnx_export import read_onnx_info
from nmrladder.export.parity import onnxruntime_runner, parity_lengths
from nmrladder.runtime.artefact import PREFIX
from nmrladder.runtime.atomic import atomic_path, write_text_atomic
from nmrladder.runtime.errors import InputError, ModelError
from nmrladder.runtime.scaling import to_model_input

#: rms departure from the float32 model allowed by default, in the input's noise sigmas.
DEFAULT_BUDGET_SIGMA = 0.02
QUANTIZED_OPS = ("Conv", "ConvTranspose")
PRECISION = "int8"


@dataclass
class QuantizationReport:
    """What was quantized, why, and how far the result departs from the float32 model."""

    source: str
    destination: str
    budget_sigma: float
    calibration: dict
    sensitivity_sigma: dict[str, float]  # convolution -> rms departure when quantized alone
    quantized: list[str] = field(default_factory=list)
    rms_sigma: float = float("nan")  # all of them together, held-out spectra
    checks: list[dict] = field(default_factory=list)  # the same at the parity lengths

    @property
    def worst_rms_sigma(self) -> float:
        return max([self.rms_sigma] + [c["rms_sigma"] for c in self.checks])

    def summary(self) -> str:
        total = len(self.sensitivity_sigma)
        return (
            f"int8: {len(self.quantized)} of {total} convolutions quantized, rms departure "
            f"from float32 {self.worst_rms_sigma:.4f} noise sigmas (budget {self.budget_sigma})"
        )

    def save(self, path: str | Path) -> Path:
        payload = asdict(self) | {"worst_rms_sigma": self.worst_rms_sigma}
        write_text_atomic(path, json.dumps(payload, indent=2))
        return Path(path)


def quantize_int8(
    source: str | Path,
    destination: str | Path,
    *,
    budget_sigma: float = DEFAULT_BUDGET_SIGMA,
    spectra: int = 16,
    length: int = 4096,
    check_lengths: tuple[int, ...] | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> QuantizationReport:
    """Write ``destination``: the float32 nmrladder ONNX ``source`` with the convolutions that
    fit ``budget_sigma`` in int8. ``spectra`` simulated spectra of ``length`` points calibrate
    the activation ranges and as many others measure the departures; ``check_lengths``
    (default: the export's parity lengths, 256 to 32768 points) are measured too (2 spectra
    each), and the set is trimmed until it fits at all of them. The report is saved beside
    the destination (``<destination>.quant.json``) and returned. Nothing is written when
    nothing fits."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, destination = Path(source), Path(destination)
    info = read_onnx_info(source)
    if info.extra.get("precision") == PRECISION:
        raise InputError(f"{source}: already quantized to int8; quantize the float32 export")
    if not budget_sigma > 0:
        raise InputError(f"budget_sigma={budget_sigma!r}: use a positive rms, in noise sigmas")
    if spectra < 1 or length < info.min_length:
        raise InputError(
            f"calibration of {spectra} spectra of {length} points: use at least 1 spectrum "
            f"of at least the model's minimum length ({info.min_length})"
        )
    multiple = info.length_multiple
    if check_lengths is None:
        check_lengths = parity_lengths(info.min_length, multiple, min(32768, info.max_length))
    calibration = _inputs(spectra, length, multiple, seed=1)
    held_out = _inputs(spectra, length, multiple, seed=2)
    with _quiet_root_logger(), tempfile.TemporaryDirectory(prefix="nmrladder-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        convolutions = _convolutions(prepared, source)
        reference = onnxruntime_runner(prepared, threads)
        expected = reference(held_out)
        checks = []  # (length, inputs, float32 outputs)
        for check_length in check_lengths:
            z = _inputs(2, check_length, multiple, seed=check_length)
            checks.append((check_length, z, reference(z)))

        def quantized(nodes: list[str], path: Path):
            """A runner of the model with ``nodes`` in int8, built at ``path``."""
            _quantize(prepared, path, nodes, calibration)
            return onnxruntime_runner(path, threads)

        candidate = Path(scratch) / "candidate.onnx"
        sensitivity = {}
        for node in _progress(convolutions, progress, "int8 sensitivity"):
            sensitivity[node] = _rms(quantized([node], candidate)(held_out) - expected)
        final = Path(scratch) / "final.onnx"
        chosen = _fitting(sensitivity, budget_sigma)
        while chosen:
            # Departures do not always add in quadrature, nor hold at every length: the
            # chosen set is measured as built, and its most sensitive member dropped until
            # it fits everywhere.
            run = quantized(chosen, final)
            rms = _rms(run(held_out) - expected)
            measured = []
            if rms <= budget_sigma:
                measured = [{"length": n, "rms_sigma": _rms(run(z) - want)}
                            for n, z, want in checks]
                if all(c["rms_sigma"] <= budget_sigma for c in measured):
                    break
            chosen = chosen[:-1]
        if not chosen:
            raise ModelError(
                f"{source}: no convolution fits an rms departure of {budget_sigma} noise sigmas "
                f"(the least sensitive moves the output by {min(sensitivity.values()):.3g})"
            )
        report = QuantizationReport(
            str(source), str(destination), float(budget_sigma),
            {"spectra": spectra, "length": length, "method": "MinMax", "reduce_range": True},
            sensitivity, chosen, rms, measured,
        )
        _record(final, info, report)
        with atomic_path(destination) as tmp:
            tmp.write_bytes(final.read_bytes())
    report.save(destination.with_name(destination.name + ".quant.json"))
    return report


def _inputs(n: int, length: int, multiple: int, seed: int) -> np.ndarray:
    """n simulated spectra, half at rung-0 SNR 5 and half at 50 (both rungs of each ladder:
    weak lines and tall ones set the activation ranges), in the model's input scaling."""
    from nmrladder.train.simulate import simulate_ladders

    rows = []
    for snr, count in ((5.0, (n + 1) // 2), (50.0, n // 2)):
        if count:
            ladders = simulate_ladders(-(-count // 2), 2, length, 2.0, snr, seed)
            rows.append(ladders.x.reshape(-1, length)[:count])
    z, _, _ = to_model_input(np.concatenate(rows), multiple)
    return z


def _convolutions(prepared: Path, source: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(prepared)).graph
    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node):
        raise InputError(f"{source}: already holds quantized nodes; quantize the float32 export")
    nodes = [node.name for node in graph.node if node.op_type in QUANTIZED_OPS]
    if not nodes or not all(nodes):
        raise ModelError(f"{source}: no named convolutions to quantize")
    return nodes


def _quantize(prepared: Path, destination: Path, nodes: list[str], calibration) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{"spectra": calibration[i : i + 4]}
                                  for i in range(0, len(calibration), 4)])

        def get_next(self):
            return next(self._batches, None)

    quantize_static(
        str(prepared), str(destination), Batches(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTIZED_OPS),
        nodes_to_quantize=list(nodes),
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )


def _fitting(sensitivity: dict[str, float], budget: float) -> list[str]:
    """The least sensitive convolutions whose departures, in quadrature, fit the budget
    (least sensitive first)."""
    chosen, total = [], 0.0
    for node, rms in sorted(sensitivity.items(), key=lambda item: item[1]):
        if total + rms**2 > budget**2:
            break
        chosen.append(node)
        total += rms**2
    return chosen


def _record(path: Path, info, report: QuantizationReport) -> None:
    """The artefact's metadata says it is int8, which convolutions, and the departure."""
    import onnx

    model = onnx.load(str(path))
    extra = dict(info.extra) | {
        "precision": PRECISION,
        "int8_convolutions": report.quantized,
        "int8_rms_sigma": round(report.rms_sigma, 6),
        "int8_budget_sigma": report.budget_sigma,
    }
    props = {p.key: p.value for p in model.metadata_props}
    props[PREFIX + "extra"] = json.dumps(extra)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


@contextlib.contextmanager
def _quiet_root_logger():
    # ORT's quantization tools log advice through the root logger on every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))


def _progress(items: list[str], enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="conv", disable=not enabled, dynamic_ncols=True)
