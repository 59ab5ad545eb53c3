"""ONNX export: dynamo path, dynamic batch and length, metadata, checker, parity.

The length is declared ``length_multiple * Dim("blocks")`` so the graph accepts every
multiple of 2**depth; the example batch is 2 so the batch dimension is not specialised to 1.
After export the file must pass ``onnx.checker`` (full check), keep both input dims symbolic,
carry the nmrladder metadata, and match the torch model in ONNX Runtime (parity report
saved beside it) before it replaces anything at the destination. The decoder's transposed
convolutions go out as the equivalent phase convolutions (export/upsampling.py), which ONNX
Runtime can run in int8; the parity check compares against the model as trained.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from nmrladder.export.parity import (
    DEFAULT_TOLERANCE,
    ParityReport,
    compare_runners,
    onnxruntime_runner,
    parity_lengths,
    torch_runner,
)
from nmrladder.runtime.artefact import (
    FORMAT_VERSION,
    INPUT_NAME,
    OUTPUT_NAME,
    ArtefactInfo,
    current_toolkit_version,
)
from nmrladder.runtime.atomic import atomic_path
from nmrladder.runtime.errors import InputError, ModelError
from nmrladder.runtime.scaling import INPUT_SCALING

DEFAULT_OPSET = 18
DEFAULT_MIN_LENGTH = 256
DEFAULT_MAX_LENGTH = 131072
EXAMPLE_BATCH = 2


@dataclass
class OnnxExport:
    path: Path
    info: ArtefactInfo
    parity: ParityReport | None
    parity_path: Path | None


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefact_info(
    model,
    *,
    opset: int,
    min_length: int,
    max_length: int,
    checkpoint_sha256: str,
    training_data: str,
    extra: dict | None = None,
) -> ArtefactInfo:
    import onnx
    import torch

    config = model.config
    multiple = config.length_multiple
    if max_length % multiple or min_length < 1 or min_length > max_length:
        raise InputError(
            f"export lengths: max_length={max_length} must be a multiple of {multiple} and "
            f">= min_length={min_length} >= 1"
        )
    return ArtefactInfo(
        format_version=FORMAT_VERSION,
        toolkit_version=current_toolkit_version(),
        model_config=config.to_dict(),
        depth=config.depth,
        length_multiple=multiple,
        min_length=min_length,
        max_length=max_length,
        input_scaling=INPUT_SCALING,
        opset=opset,
        torch_version=torch.__version__,
        onnx_version=onnx.__version__,
        checkpoint_sha256=checkpoint_sha256,
        training_data=training_data,
        extra=dict(extra or {}),
    )


def _export_graph(model, path: Path, opset: int, max_length: int) -> None:
    import torch

    from nmrladder.export.upsampling import with_phase_upsampling

    multiple = model.config.length_multiple
    batch = torch.export.Dim("batch", min=1, max=4096)
    blocks = torch.export.Dim("blocks", min=1, max=max_length // multiple)
    example = torch.zeros(EXAMPLE_BATCH, 64 * multiple)
    # The exporter logs a warning per torchvision op it cannot register: noise for a U-Net.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # exporter-internal deprecations
        torch.onnx.export(
            with_phase_upsampling(model).eval(),
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes={"x": {0: batch, 1: multiple * blocks}},
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            external_data=False,
            verbose=False,  # no per-phase progress lines from the exporter
        )


def check_symbolic_dims(onnx_model, source: str = "model.onnx") -> None:
    """Both dims of the input and the output must be symbolic (not fixed numbers)."""
    for value in (onnx_model.graph.input[0], onnx_model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 2 or any(not d.dim_param or d.HasField("dim_value") for d in dims):
            shown = [d.dim_param or d.dim_value for d in dims]
            raise ModelError(
                f"{source}: {value.name} has dims {shown}; batch and length must be symbolic"
            )


def export_onnx(
    model,
    destination: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    min_length: int = DEFAULT_MIN_LENGTH,
    max_length: int = DEFAULT_MAX_LENGTH,
    checkpoint_sha256: str = "",
    training_data: str = "",
    extra: dict | None = None,
    parity: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    parity_largest: int = 32768,
    threads: int | None = None,
) -> OnnxExport:
    """Export ``model`` (a UNet1d with ``.config``) to ``destination`` (.onnx).

    Nothing is written at the destination unless the checker, the symbolic-dims check and
    (when ``parity``) the parity check pass; a failed parity raises ModelError and leaves
    the report beside the destination for inspection.
    """
    import onnx

    destination = Path(destination)
    info = artefact_info(
        model,
        opset=opset,
        min_length=min_length,
        max_length=max_length,
        checkpoint_sha256=checkpoint_sha256,
        training_data=training_data,
        extra=extra,
    )
    with tempfile.TemporaryDirectory(prefix="nmrladder-export-") as scratch:
        raw = Path(scratch) / "raw.onnx"
        _export_graph(model, raw, opset, max_length)
        onnx_model = onnx.load(str(raw))
        for key, value in info.to_props().items():
            entry = onnx_model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(onnx_model, full_check=True)
        check_symbolic_dims(onnx_model, str(destination))
        staged = Path(scratch) / "model.onnx"
        onnx.save(onnx_model, str(staged))

        report = None
        parity_path = destination.with_name(destination.name + ".parity.json")
        if parity:
            report = compare_runners(
                torch_runner(model),
                onnxruntime_runner(staged, threads),
                parity_lengths(min_length, info.length_multiple, min(parity_largest, max_length)),
                multiple=info.length_multiple,
                tolerance=tolerance,
            )
            report.save(parity_path)
            if not report.passed:
                raise ModelError(f"{destination}: {report.summary()}; see {parity_path}")
        with atomic_path(destination) as tmp:
            tmp.write_bytes(staged.read_bytes())
    return OnnxExport(destination, info, report, parity_path if parity else None)


def read_onnx_info(path: str | Path) -> ArtefactInfo:
    """The metadata of an exported file, validated (ModelError on a foreign or corrupt file)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        onnx_model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises several types on garbage
        raise ModelError(f"{path}: not a readable ONNX file ({type(err).__name__}: {err})") from err
    props = {p.key: p.value for p in onnx_model.metadata_props}
    return ArtefactInfo.from_props(props, str(path))
