"""Shared fixtures: a tiny exported model for runtime tests (built once per session)."""

import pytest
import torch

TINY_ONNX_MAX_LENGTH = 65536


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder with model.onnx and model.pt2 of a tiny untrained U-Net (depth 3)."""
    from nmrladder.export.onnx_export import export_onnx
    from nmrladder.export.torch_program import export_program
    from nmrladder.train.model import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=3, widths=(8, 16, 16), dilations=(1, 2, 4))).eval()
    folder = tmp_path_factory.mktemp("tiny_model")
    result = export_onnx(
        model, folder / "model.onnx", max_length=TINY_ONNX_MAX_LENGTH, parity=False
    )
    export_program(model, folder / "model.pt2", result.info, TINY_ONNX_MAX_LENGTH)
    return folder
