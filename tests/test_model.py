"""The residual 1D U-Net: config round-trip, shapes, output modes, FLOP count, ONNX export."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from nmrladder.runtime.errors import InputError  # noqa: E402
from nmrladder.train.model import (  # noqa: E402
    ChannelLayerNorm,
    ModelConfig,
    build_model,
    count_parameters,
    flops_per_spectrum,
)

TINY = ModelConfig(depth=3, widths=(8, 16, 32), dilations=(1, 2, 4))

VARIANTS = {
    "tiny": TINY,
    "layer-cbam-residual-tanh": ModelConfig(
        depth=3,
        widths=(8, 16, 32),
        dilations=(1, 2, 4),
        norm="layer",
        attention="cbam",
        attention_levels=(0, 1),
        output="residual",
        head="tanh",
        head_amplitude=2.0,
    ),
    "se-uncompressed": ModelConfig(
        depth=2,
        widths=(16, 16),
        dilations=(1, 3),
        kernel_size=5,
        groups=4,
        attention="se",
        attention_levels=(0,),
        input_compression=False,
    ),
    "stem4": ModelConfig(depth=3, widths=(8, 16, 32), dilations=(1, 2, 4), stem_stride=4),
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_default_config_is_methods():
    cfg = ModelConfig()
    assert cfg.depth == 4 and cfg.widths == (64, 128, 256, 256)
    assert cfg.kernel_size == 9 and cfg.dilations == (1, 2, 4, 8)
    assert cfg.length_multiple == 16


def test_default_model_size_matches_docs():
    # docs/model.md reports these numbers: keep them in step with the architecture.
    cfg = ModelConfig()
    assert count_parameters(build_model(cfg)) == 4_558_913
    assert flops_per_spectrum(cfg, 16384) == 26_598_178_816


@pytest.mark.parametrize("cfg", VARIANTS.values(), ids=VARIANTS.keys())
def test_config_round_trips_through_json(cfg):
    data = json.loads(json.dumps(cfg.to_dict()))
    assert isinstance(data["widths"], list)
    assert ModelConfig.from_dict(data) == cfg


def test_from_dict_rejects_unknown_keys_by_name():
    with pytest.raises(InputError, match="widht"):
        ModelConfig.from_dict({"depth": 3, "widht": [8, 16, 32]})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"widths": (8, 16, 32)}, "widths"),
        ({"dilations": (1, 2)}, "dilations"),
        ({"kernel_size": 8}, "kernel_size"),
        ({"widths": (64, 128, 256, 12)}, "groups"),
        ({"norm": "batch"}, "norm"),
        ({"attention_levels": (4,)}, "attention_levels"),
        ({"head_amplitude": 0.0}, "head_amplitude"),
    ],
)
def test_invalid_configs_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("cfg", VARIANTS.values(), ids=VARIANTS.keys())
def test_forward_shape_and_gradients(cfg):
    model = build_model(cfg)
    assert model.config == cfg
    x = torch.randn(3, 8 * cfg.length_multiple)
    y = model(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_batch_items_are_independent():
    model = build_model(VARIANTS["layer-cbam-residual-tanh"]).eval()
    x = torch.randn(3, 64)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_output_modes_are_the_same_correction_with_opposite_sign():
    spectrum = build_model(TINY)
    residual = build_model(ModelConfig.from_dict({**TINY.to_dict(), "output": "residual"}))
    residual.load_state_dict(spectrum.state_dict())
    x = torch.randn(2, 64)
    with torch.no_grad():
        h = spectrum.correction(x)
        torch.testing.assert_close(spectrum(x), x + h)
        torch.testing.assert_close(residual(x), x - h)


def test_tanh_head_bounds_the_correction():
    cfg = ModelConfig.from_dict({**TINY.to_dict(), "head": "tanh", "head_amplitude": 0.5})
    model = build_model(cfg)
    with torch.no_grad():
        model.head.weight.mul_(1e3)  # drive the head into saturation
        x = 100 * torch.randn(2, 128)
        correction = model(x) - x
    assert correction.abs().max() <= 0.5 + 1e-4
    assert correction.abs().max() > 0.4


def test_first_conv_sees_compressed_input_and_shortcut_the_raw_one():
    model = build_model(TINY)  # input_compression on, c = 4
    seen = {}

    def record_input(_module, args):
        seen["x"] = args[0]

    model.encoder[0].unit.conv.register_forward_pre_hook(record_input)
    x = torch.tensor([[0.1, -2.0, 5e4, -3e3] * 16])
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(seen["x"][:, 0], 4 * torch.asinh(x / 4))
    torch.testing.assert_close(y - model.correction(x), x)


def test_channel_layer_norm_normalises_over_channels_only():
    norm = ChannelLayerNorm(6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    x = 5 * torch.randn(2, 6, 10) + 3
    ref = torch.nn.functional.layer_norm(
        x.transpose(1, 2), (6,), norm.weight[:, 0], norm.bias[:, 0], eps=norm.eps
    ).transpose(1, 2)
    torch.testing.assert_close(norm(x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [*VARIANTS.values(), ModelConfig(), ModelConfig(attention="cbam", attention_levels=(0,))],
    ids=[*VARIANTS.keys(), "default", "default-cbam"],
)
def test_flops_match_torch_flop_counter(cfg):
    length = 4 * cfg.length_multiple
    model = build_model(cfg)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(2, length))
    measured = counter.get_total_flops() / 2
    assert flops_per_spectrum(cfg, length) == pytest.approx(measured, rel=1e-9)


def test_flops_refuse_lengths_the_model_cannot_take():
    with pytest.raises(InputError, match="multiple of 8"):
        flops_per_spectrum(TINY, 100)


def test_count_parameters():
    model = build_model(TINY)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.slow
def test_onnx_export_with_dynamic_batch_and_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = build_model(TINY).eval()
    mult = TINY.length_multiple
    batch = torch.export.Dim("batch", min=1, max=1024)
    n = torch.export.Dim("n", min=1, max=65536 // mult)
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 32 * mult),),  # neither batch nor length of the checks below
        str(path),
        dynamo=True,
        dynamic_shapes={"x": {0: batch, 1: mult * n}},
        input_names=["x"],
        output_names=["y"],
        opset_version=18,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        for length in (128, 512):
            x = 3 * torch.randn(b, length)
            x[:, length // 3] += 1e3  # a solvent-like line
            with torch.no_grad():
                ref = model(x).numpy()
            out = session.run(None, {"x": x.numpy()})[0]
            assert out.shape == (b, length)
            scale = np.abs(ref).max()
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * scale)
            # The correction alone is O(1): check it too, away from the line where float32
            # rounding of the raw-input shortcut would hide it.
            keep = np.arange(length) != length // 3
            correction = (ref - x.numpy())[:, keep]
            np.testing.assert_allclose(
                (out - x.numpy())[:, keep], correction, rtol=0, atol=1e-4 * np.abs(correction).max()
            )


def test_space_to_depth_stem_is_a_lossless_reshape():
    from nmrladder.train.model import _depth_to_space, _space_to_depth

    x = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 64)
    h = _space_to_depth(x, 4)
    assert h.shape == (2, 4, 16)
    torch.testing.assert_close(h[0, 1], x[0, 1::4])  # channel j holds points j, j + 4, ...
    torch.testing.assert_close(_depth_to_space(h), x)
    assert VARIANTS["stem4"].length_multiple == 4 * 2**3
