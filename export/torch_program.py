"""A torch.export program (.pt2) beside the ONNX file.

The runtime's optional torch backend loads it with ``torch.export.load`` and runs
``program.module()``: the network runs without importing nmrladder.train. The same dynamic
batch and length (a multiple of 2**depth) as the ONNX export.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from nmrladder.runtime.atomic import atomic_path


def export_program(model, destination: str | Path, info, max_length: int) -> Path:
    """Save ``torch.export.export(model)`` to ``destination`` with the artefact metadata."""
    import torch

    multiple = model.config.length_multiple
    batch = torch.export.Dim("batch", min=1, max=4096)
    blocks = torch.export.Dim("blocks", min=1, max=max_length // multiple)
    example = torch.zeros(2, 64 * multiple)
    program = torch.export.export(
        model.eval(), (example,), dynamic_shapes={"x": {0: batch, 1: multiple * blocks}}
    )
    destination = Path(destination)
    extra = {"nmrladder.json": json.dumps(info.to_props())}
    with tempfile.TemporaryDirectory(prefix="nmrladder-pt2-") as scratch:
        staged = Path(scratch) / "model.pt2"
        torch.export.save(program, str(staged), extra_files=extra)
        with atomic_path(destination) as tmp:
            tmp.write_bytes(staged.read_bytes())
    return destination
