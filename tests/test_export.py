"""ONNX / torch-program export: parity against the torch model, symbolic dims, metadata,
refusal of foreign or mismatched artefacts; TensorRT where it exists."""

import json

import numpy as np
import onnx
import pytest
import torch

from nmrladder.export.mixed_precision import to_mixed_precision
from nmrladder.export.onnx_export import export_onnx, read_onnx_info
from nmrladder.export.parity import compare_runners, onnxruntime_runner, torch_runner
from nmrladder.export.upsampling import (
    PhaseUpsample,
    is_phase_equivalent,
    transposed_parameters,
    with_phase_upsampling,
)
from nmrladder.runtime import Denoiser, ModelError
from nmrladder.runtime.artefact import PREFIX, ArtefactInfo
from nmrladder.runtime.scaling import from_model_output, to_model_input
from nmrladder.train.model import ModelConfig, build_model
from nmrladder.train.simulate import simulate_ladders

SMALL_CONFIGS = {
    "depth3": ModelConfig(depth=3, widths=(8, 16, 32), dilations=(1, 2, 4)),
    "depth4_se": ModelConfig(
        depth=4,
        widths=(8, 16, 32, 32),
        dilations=(1, 2, 4, 8),
        attention="se",
        attention_levels=(0,),
    ),
    "depth5": ModelConfig(depth=5, widths=(8, 8, 16, 16, 16), dilations=(1, 2, 4, 8, 16)),
}


def _model(config: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(config).eval()


@pytest.fixture(scope="module")
def exported_depth4(tmp_path_factory):
    model = _model(SMALL_CONFIGS["depth4_se"])
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    result = export_onnx(
        model, path, max_length=65536, checkpoint_sha256="ab" * 32, training_data="unit test"
    )
    return model, result


@pytest.mark.parametrize("name", ["depth3", "depth5"])
def test_small_configs_export_with_parity(tmp_path, name):
    model = _model(SMALL_CONFIGS[name])
    result = export_onnx(model, tmp_path / "m.onnx", max_length=65536)
    assert result.parity.passed, result.parity.summary()
    lengths = {case.length for case in result.parity.cases}
    assert max(lengths) == 32768 and len(lengths) == 3
    assert {case.batch for case in result.parity.cases} == {1, 2, 8}
    report = json.loads((tmp_path / "m.onnx.parity.json").read_text())
    assert report["passed"] and len(report["cases"]) == 9


def test_default_config_exports_with_parity(tmp_path):
    model = _model(ModelConfig())
    result = export_onnx(model, tmp_path / "default.onnx", max_length=32768)
    assert result.parity.passed, result.parity.summary()
    assert result.parity.worst_relative_error <= 1e-4


def test_parity_report_and_dims(exported_depth4):
    _, result = exported_depth4
    assert result.parity.passed and result.parity.worst_relative_error < 1e-4
    graph = onnx.load(str(result.path)).graph
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert all(d.dim_param and not d.HasField("dim_value") for d in dims)
    onnx.checker.check_model(onnx.load(str(result.path)), full_check=True)


@pytest.mark.parametrize(("c_in", "c_out", "length"), [(16, 8, 37), (8, 16, 1), (3, 5, 64)])
def test_phase_upsampling_computes_what_the_transposed_convolution_does(c_in, c_out, length):
    torch.manual_seed(c_in + length)
    transposed = torch.nn.ConvTranspose1d(c_in, c_out, 4, stride=2, padding=1)
    x = torch.randn(3, c_in, length)
    with torch.no_grad():
        expected, got = transposed(x), PhaseUpsample(transposed)(x)
    assert got.shape == expected.shape == (3, c_out, 2 * length)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # and the way back, from an exported file's phase weights to the trained module's
    taps = PhaseUpsample(transposed).conv.weight.detach()
    bias = PhaseUpsample(transposed).conv.bias.detach()
    for phase_weight, phase_bias in ((taps, bias), (taps.numpy(), bias.numpy())):
        weight, back = transposed_parameters(phase_weight, phase_bias)
        np.testing.assert_array_equal(np.asarray(weight), transposed.weight.detach().numpy())
        np.testing.assert_array_equal(np.asarray(back), transposed.bias.detach().numpy())


def test_only_the_decoders_transposed_convolutions_are_swapped(exported_depth4):
    model, result = exported_depth4
    swapped = with_phase_upsampling(model)
    assert sum(isinstance(m, PhaseUpsample) for m in swapped.modules()) == model.config.depth
    assert not any(isinstance(m, torch.nn.ConvTranspose1d) for m in swapped.modules())
    assert any(isinstance(m, torch.nn.ConvTranspose1d) for m in model.modules())  # untouched
    assert not is_phase_equivalent(torch.nn.ConvTranspose1d(4, 4, 3, stride=2, padding=1))
    with pytest.raises(ValueError, match="kernel-4"):
        PhaseUpsample(torch.nn.ConvTranspose1d(4, 4, 2, stride=2))
    # The artefact holds plain convolutions only, and its parity is against the model as
    # trained (test_parity_report_and_dims).
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "Conv" in ops and "ConvTranspose" not in ops


def test_metadata_round_trips(exported_depth4):
    model, result = exported_depth4
    info = read_onnx_info(result.path)
    assert info == result.info
    assert ModelConfig.from_dict(info.model_config) == model.config
    assert info.length_multiple == 16 and info.max_length == 65536 and info.opset == 18
    assert info.checkpoint_sha256 == "ab" * 32 and info.training_data == "unit test"
    assert info.torch_version == torch.__version__ and info.onnx_version == onnx.__version__


def test_parity_catches_a_different_model(exported_depth4, tmp_path):
    model, result = exported_depth4
    other = _model(model.config, seed=1)
    report = compare_runners(
        torch_runner(other), onnxruntime_runner(result.path), (256,), (1,), multiple=16
    )
    assert not report.passed


def test_denoiser_equals_torch_model(exported_depth4):
    model, result = exported_depth4
    x = simulate_ladders(3, 2, 3000, 2.0, 8.0, seed=4).x[:, 0]  # any normalisation, odd length
    den = Denoiser(result.path, batch_size=2, threads=2)
    got = den.denoise(x)
    z, centers, sigmas = to_model_input(x, 16)
    with torch.no_grad():
        expected = from_model_output(
            model(torch.from_numpy(z)).numpy(), centers, sigmas, x.shape[1]
        )
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(den.denoise(x[1]), got[1], rtol=0, atol=1e-6 * scale)


def test_corrupt_and_foreign_artefacts_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelError, match="corrupt.onnx"):
        read_onnx_info(corrupt)
    with pytest.raises(ModelError, match="corrupt.onnx"):
        Denoiser(corrupt)
    # a valid ONNX file that nmrladder did not make
    node = onnx.helper.make_node("Identity", ["spectra"], ["denoised"])
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [node], "foreign", [tensor("spectra", 1, ["b", "n"])], [tensor("denoised", 1, ["b", "n"])]
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(ModelError, match="not an nmrladder artefact"):
        Denoiser(foreign)
    with pytest.raises(ModelError, match="no such model"):
        Denoiser(tmp_path / "missing.onnx")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("input_scaling", "robust_noise_v9", "input scaling"), ("format_version", "7", "format 7")],
)
def test_mismatched_metadata_is_refused(exported_depth4, tmp_path, key, value, message):
    _, result = exported_depth4
    edited = onnx.load(str(result.path))
    for prop in edited.metadata_props:
        if prop.key == PREFIX + key:
            prop.value = value
    path = tmp_path / "edited.onnx"
    onnx.save(edited, str(path))
    with pytest.raises(ModelError, match=message) as err:
        Denoiser(path)
    assert "re-export" in str(err.value)


def test_length_outside_range_is_refused(exported_depth4):
    from nmrladder.runtime import InputError

    _, result = exported_depth4
    den = Denoiser(result.path)
    with pytest.raises(InputError, match="outside this model's range"):
        den.denoise(np.random.default_rng(0).normal(size=(1, 100)))


def test_torch_program_matches_the_model(exported_depth4, tmp_path):
    from nmrladder.export.torch_program import export_program
    from nmrladder.runtime.sessions import TorchProgramSession

    model, result = exported_depth4
    path = export_program(model, tmp_path / "model.pt2", result.info, 65536)
    session = TorchProgramSession(path)
    assert session.info == result.info
    z = np.random.default_rng(2).normal(size=(3, 2048)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(session.run(z), expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_mixed_precision_graph_keeps_norms_in_fp32(exported_depth4):
    import onnxruntime as ort

    _, result = exported_depth4
    fp32 = onnx.load(str(result.path))
    for precision in ("fp16", "bf16"):
        mixed = to_mixed_precision(fp32, precision)
        onnx.checker.check_model(mixed, full_check=True)
        casts = [n for n in mixed.graph.node if n.op_type == "Cast"]
        convs = [n for n in mixed.graph.node if n.op_type in ("Conv", "ConvTranspose")]
        assert len(casts) >= 2 * len(convs)
        norms = [n for n in mixed.graph.node if n.op_type == "InstanceNormalization"]
        assert norms and all("__to_" not in name for n in norms for name in n.input)
    # fp16 runs in ONNX Runtime's CPU provider: close to fp32 on the network's correction
    mixed = to_mixed_precision(fp32, "fp16")
    session = ort.InferenceSession(mixed.SerializeToString(), providers=["CPUExecutionProvider"])
    z = 3 * np.random.default_rng(3).normal(size=(2, 1024)).astype(np.float32)
    reference = onnxruntime_runner(result.path)(z)
    got = session.run(None, {"spectra": z})[0]
    assert np.abs(got - reference).max() <= 5e-3 * np.abs(reference - z).max()


def test_artefact_info_refuses_missing_fields():
    with pytest.raises(ModelError, match="format_version"):
        ArtefactInfo.from_props({PREFIX + "toolkit_version": "0.1.0"}, "x.onnx")


def _tensorrt_and_gpu():
    try:
        import tensorrt  # noqa: F401

        from nmrladder.runtime.cuda import device_count
        count = device_count()
    except ImportError:
        return "tensorrt is not installed (pip install 'nmrladder[gpu]')"
    except Exception as err:  # a broken driver: the test cannot run, and says why
        return f"CUDA is not usable here ({type(err).__name__}: {err})"
    if count == 0:
        return "no CUDA GPU on this machine"
    return None


@pytest.mark.skipif(_tensorrt_and_gpu() is not None, reason=str(_tensorrt_and_gpu()))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_onnxruntime(exported_depth4, tmp_path, precision):
    from nmrladder.export.tensorrt_build import Profile, build_engine
    from nmrladder.runtime.sessions import TensorRTSession

    _, result = exported_depth4
    plan, sidecar = build_engine(
        result.path,
        tmp_path / f"m.{precision}.plan",
        precision=precision,
        profiles=(Profile(256, 2048, 8192, 1, 4, 8),),
        timing_cache=tmp_path / "cache",
    )
    meta = json.loads(sidecar.read_text())
    assert meta["precision"] == precision and meta["onnx_sha256"]
    session = TensorRTSession(plan)
    z = 3 * np.random.default_rng(5).normal(size=(4, 4096)).astype(np.float32)
    reference = onnxruntime_runner(result.path)(z)
    tolerance = 1e-3 if precision == "fp32" else 2e-2
    assert np.abs(session.run(z) - reference).max() <= tolerance * np.abs(reference).max()
