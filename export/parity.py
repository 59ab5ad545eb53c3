"""Numeric parity of an exported artefact against the torch model (or another artefact).

One comparator for every pair of runners (a runner is any callable z [B, L] -> y [B, L] on
the model's canonical input): the torch model, an ONNX Runtime session, a TensorRT engine.
Inputs are realistic: simulated spectra scaled the way the runtime scales them.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.runtime.scaling import to_model_input

Runner = Callable[[np.ndarray], np.ndarray]

#: METHOD-scale default: max |difference| <= tolerance x max |reference output|.
DEFAULT_TOLERANCE = 1e-4
DEFAULT_BATCHES = (1, 2, 8)


@dataclass
class ParityCase:
    batch: int
    length: int
    max_abs_error: float
    output_scale: float
    relative_error: float
    correction_relative_error: float  # error / max |output - input|: the part the network adds
    finite: bool
    passed: bool


@dataclass
class ParityReport:
    """Every (batch, length) case, the tolerance and the verdict; saved as JSON."""

    reference: str
    candidate: str
    tolerance: float
    cases: list[ParityCase] = field(default_factory=list)
    environment: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(case.passed for case in self.cases)

    @property
    def worst_relative_error(self) -> float:
        return max((case.relative_error for case in self.cases), default=float("nan"))

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"parity {self.candidate} vs {self.reference}: {verdict}, worst max|diff| = "
            f"{self.worst_relative_error:.2e} x output scale (tolerance {self.tolerance:.0e}) "
            f"over {len(self.cases)} cases"
        )

    def save(self, path: str | Path) -> Path:
        payload = asdict(self) | {
            "passed": self.passed,
            "worst_relative_error": self.worst_relative_error,
        }
        write_text_atomic(path, json.dumps(payload, indent=2))
        return Path(path)


def parity_lengths(min_length: int, multiple: int, largest: int = 32768) -> tuple[int, ...]:
    """The parity lengths: the minimum, a mid length and 32768, padded to the multiple."""

    def up(n: int) -> int:
        return -(-n // multiple) * multiple

    mid = up(int(np.sqrt(min_length * largest)))
    return tuple(sorted({up(min_length), mid, up(largest)}))


def realistic_inputs(batch: int, length: int, multiple: int, seed: int = 0) -> np.ndarray:
    """Simulated rung-0 spectra (SNR 5-50, solvent lines included) in the model's input scaling."""
    from nmrladder.train.simulate import simulate_ladders

    ladders = simulate_ladders(batch, 2, max(length, 256), 2.0, 10.0, seed)
    raw = ladders.x[:, 0, :length]
    z, _, _ = to_model_input(raw, multiple)
    return z


def compare_runners(
    reference: Runner,
    candidate: Runner,
    lengths: Sequence[int],
    batches: Sequence[int] = DEFAULT_BATCHES,
    *,
    multiple: int,
    tolerance: float = DEFAULT_TOLERANCE,
    names: tuple[str, str] = ("torch", "onnxruntime-cpu"),
) -> ParityReport:
    """Run both on the same inputs for every (batch, length); max |diff| <= tolerance x scale."""
    report = ParityReport(
        reference=names[0],
        candidate=names[1],
        tolerance=tolerance,
        environment={"python": platform.python_version(), "machine": platform.machine()},
    )
    for length in lengths:
        inputs = realistic_inputs(max(batches), length, multiple, seed=length)
        for batch in batches:
            z = inputs[:batch]
            expected = np.asarray(reference(z), dtype=np.float64)
            got = np.asarray(candidate(z), dtype=np.float64)
            finite = bool(np.all(np.isfinite(got)))
            scale = float(np.max(np.abs(expected))) or 1.0
            correction = float(np.max(np.abs(expected - z))) or 1.0
            comparable = finite and got.shape == expected.shape
            error = float(np.max(np.abs(got - expected))) if comparable else float("inf")
            report.cases.append(
                ParityCase(
                    batch=batch,
                    length=length,
                    max_abs_error=error,
                    output_scale=scale,
                    relative_error=error / scale,
                    correction_relative_error=error / correction,
                    finite=finite,
                    passed=finite and error <= tolerance * scale,
                )
            )
    return report


def torch_runner(model) -> Runner:
    """The torch model as a runner (float32, no grad, CPU)."""
    import torch

    model = model.eval()

    def run(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))).numpy()

    return run


def onnxruntime_runner(path: str | Path, threads: int | None = None) -> Runner:
    """An ONNX Runtime CPU session on the artefact as a runner."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(z: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: np.ascontiguousarray(z, dtype=np.float32)})[0]

    return run
