"""The GPU code paths on a machine without a GPU: cuda-python, TensorRT and ONNX Runtime's
answers are faked (tests/gpu_fakes.py) or, for ONNX Runtime's fall-back to the CPU, real.

Oracles: the documented behaviour of the libraries (ORT's get_providers() names the providers
a session really got, TensorRT 10's setters return bool, get_timing_cache() may be None,
cuda-python returns a status first), the engine's declared output dtype, and ONNX Runtime's
CPU output of the same model.
"""

import json
import threading
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from gpu_fakes import DataType, FakeCudart, cudaError_t, fake_tensorrt, install
from packaging.requirements import Requirement

from nmrladder.export.tensorrt_build import Profile, build_engine
from nmrladder.runtime import cuda
from nmrladder.runtime.errors import BackendUnavailable, ModelError
from nmrladder.runtime.sessions import (
    ORT_GPU_FIX,
    ORT_GPU_REQUIREMENT,
    OrtSession,
    TensorRTSession,
    ort_packages,
)
from nmrladder.train.config import tomllib

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "runtime" / "models" / "default.onnx"
PROFILE = Profile(256, 1024, 4096, 1, 2, 4)


def _z(batch=2, length=1024, seed=0):
    z = np.random.default_rng(seed).normal(size=(batch, length)).astype(np.float32)
    z[:, length // 3] += 50.0
    return z


def _ort_cpu(z):
    session = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: z})[0]


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA runtime (two devices) and TensorRT 10 in sys.modules."""
    cudart, trt = FakeCudart(devices=2), fake_tensorrt()
    install(monkeypatch, cudart=cudart, tensorrt=trt)
    return cudart, trt


def _engine(tmp_path, **kwargs):
    return build_engine(
        MODEL, tmp_path / "m.fp32.plan", precision="fp32", profiles=(PROFILE,), **kwargs
    )


# --- CUDA runtime calls ------------------------------------------------------------------


def test_device_count_reports_a_cuda_error_as_an_error_not_as_no_device(monkeypatch):
    install(monkeypatch, cudart=FakeCudart(count_status=cudaError_t.cudaErrorInitializationError))
    with pytest.raises(cuda.CudaError, match="cudaErrorInitializationError"):
        cuda.device_count()


def test_device_count_no_device_and_no_driver(monkeypatch):
    install(monkeypatch, cudart=FakeCudart(count_status=cudaError_t.cudaErrorNoDevice))
    assert cuda.device_count() == 0
    install(monkeypatch, cudart=FakeCudart(count_status=cudaError_t.cudaErrorInsufficientDriver))
    with pytest.raises(BackendUnavailable, match="driver"):
        cuda.device_count()


def test_a_failed_cuda_call_is_a_cuda_error_not_a_missing_backend(monkeypatch):
    install(monkeypatch, cudart=FakeCudart(malloc_status=cudaError_t.cudaErrorMemoryAllocation))
    with pytest.raises(cuda.CudaError, match="cudaMalloc.*cudaErrorMemoryAllocation") as err:
        cuda.DeviceBuffer(1024)
    assert not isinstance(err.value, ImportError)  # ImportError reads as "not installed"


# --- native TensorRT runner ----------------------------------------------------------------


def test_tensorrt_session_matches_onnxruntime_through_the_fakes(gpu, tmp_path):
    plan, _ = _engine(tmp_path)
    z = _z()
    with TensorRTSession(plan) as session:
        got = session.run(z)
    np.testing.assert_allclose(got, _ort_cpu(z), rtol=0, atol=1e-6 * np.abs(got).max())


def test_tensorrt_output_buffer_takes_the_engines_output_dtype(gpu, tmp_path):
    cudart, trt = gpu
    plan, _ = _engine(tmp_path)
    trt.output_dtype = DataType.HALF  # e.g. a strongly typed engine with a half output
    z = _z()
    with TensorRTSession(plan) as session:
        got = session.run(z)
    assert got.dtype == np.float32 and got.shape == z.shape
    np.testing.assert_array_equal(got, _ort_cpu(z).astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(
    ("refusal", "message"),
    [("refuse_shapes", "input shape"), ("refuse_addresses", "address")],
)
def test_tensorrt_refused_shape_or_address_is_an_error(gpu, tmp_path, refusal, message):
    _, trt = gpu
    plan, _ = _engine(tmp_path)
    setattr(trt, refusal, True)
    with TensorRTSession(plan) as session, pytest.raises(ModelError, match=message):
        session.run(_z())


def test_tensorrt_session_lives_on_its_device_in_every_thread(gpu, tmp_path):
    cudart, _ = gpu
    plan, _ = _engine(tmp_path, device_id=1)
    assert json.loads(plan.with_name(plan.name + ".json").read_text())["gpu_name"] == "Fake GPU 1"
    session = TensorRTSession(plan, device_id=1)
    results = []
    worker = threading.Thread(target=lambda: results.append(session.run(_z())))
    worker.start()  # a new thread starts on device 0 (CUDA's current device is per thread)
    worker.join()
    assert len(results) == 1
    assert session.context.devices == [1]  # executed on device 1
    assert {device for _, _, device in cudart.allocations.values()} == {1}
    session.close()


def test_tensorrt_close_frees_buffers_and_destroys_the_stream(gpu, tmp_path):
    cudart, _ = gpu
    plan, _ = _engine(tmp_path)
    session = TensorRTSession(plan)
    session.run(_z())
    stream = session.stream.handle
    assert cudart.allocations and stream in cudart.streams
    session.close()
    assert not cudart.allocations
    assert cudart.streams == set() and cudart.destroyed == [stream]


# --- TensorRT engine build: timing cache, plan + sidecar -----------------------------------


def test_engine_build_survives_a_timing_cache_from_another_gpu(gpu, tmp_path, caplog):
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"CACHE:gpu-B:")  # TensorRT refuses it on this GPU (gpu-A)
    plan, sidecar = _engine(tmp_path, timing_cache=cache)
    assert json.loads(sidecar.read_text())["precision"] == "fp32"
    assert plan.read_bytes().startswith(b"FAKEPLAN")
    assert cache.read_bytes().startswith(b"CACHE:gpu-A:")  # replaced by this GPU's
    assert "refused this timing cache" in caplog.text


def test_engine_build_saves_no_cache_when_tensorrt_returns_none(gpu, tmp_path):
    _, trt = gpu
    trt.keep_cache = False  # get_timing_cache() answers None
    cache = tmp_path / "timing.cache"
    plan, sidecar = _engine(tmp_path, timing_cache=cache)
    assert plan.is_file() and sidecar.is_file() and not cache.exists()


def test_engine_build_fails_when_no_timing_cache_can_be_set(gpu, tmp_path):
    _, trt = gpu
    trt.refuse_caches = True
    with pytest.raises(ModelError, match="timing cache"):
        _engine(tmp_path)
    assert not (tmp_path / "m.fp32.plan").exists()


def test_engine_and_sidecar_are_written_as_a_pair(gpu, tmp_path):
    _, trt = gpu
    plan = tmp_path / "m.fp32.plan"
    sidecar = tmp_path / "m.fp32.plan.json"
    plan.write_bytes(b"an older engine")
    sidecar.write_text(json.dumps({"precision": "fp16", "built_at": "older"}))
    trt.serialize_error = True  # fails after the build, while saving the timing cache
    with pytest.raises(RuntimeError, match="timing cache"):
        _engine(tmp_path, timing_cache=tmp_path / "timing.cache")
    assert plan.read_bytes().startswith(b"FAKEPLAN")  # the new plan beside its own sidecar
    assert json.loads(sidecar.read_text())["precision"] == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fp32.plan", "m.fp32.plan.json"]


def test_a_failed_plan_write_leaves_the_old_pair(gpu, tmp_path, monkeypatch):
    plan = tmp_path / "m.fp32.plan"
    sidecar = tmp_path / "m.fp32.plan.json"
    plan.write_bytes(b"an older engine")
    sidecar.write_text('{"precision": "fp16"}')

    def disk_full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError, match="No space"):
        _engine(tmp_path)
    monkeypatch.undo()
    assert plan.read_bytes() == b"an older engine"
    assert json.loads(sidecar.read_text()) == {"precision": "fp16"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.fp32.plan", "m.fp32.plan.json"]


# --- ONNX Runtime GPU sessions -------------------------------------------------------------


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_ort_session_that_fell_back_to_the_cpu_is_refused(monkeypatch, tmp_path, provider):
    # ORT here is a CPU build: asked for a GPU provider it really falls back to the CPU, as
    # onnxruntime-gpu does when the provider's libraries fail to load. Only the list that
    # says which providers the build has is faked.
    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    with pytest.raises(BackendUnavailable, match="fell back to \\['CPUExecutionProvider'\\]"):
        OrtSession(MODEL, provider=provider, cache_dir=tmp_path)


def test_ort_gpu_refuses_both_onnxruntime_packages_with_the_exact_fix(monkeypatch):
    from importlib import metadata

    real = metadata.version
    both = {"onnxruntime": "1.22.0", "onnxruntime-gpu": "1.22.0"}
    monkeypatch.setattr(metadata, "version", lambda name: both.get(name) or real(name))
    assert ort_packages() == ["onnxruntime", "onnxruntime-gpu"]
    with pytest.raises(BackendUnavailable, match="both installed") as err:
        OrtSession(MODEL, provider="cuda")
    assert ORT_GPU_FIX in str(err.value)
    assert ORT_GPU_FIX == (
        "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu>=1.19,<1.23'"
    )


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_ort_cuda_provider_computes_in_fp32_not_tf32(monkeypatch, tmp_path, provider):
    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    providers = OrtSession._providers(onnxruntime, provider, tmp_path, 1)
    options = dict(p for p in providers if isinstance(p, tuple))
    assert options["CUDAExecutionProvider"] == {"device_id": 1, "use_tf32": 0}


def test_ort_gpu_output_is_bound_to_the_sessions_device():
    calls = []

    class Binding:
        def bind_cpu_input(self, name, array):
            calls.append(("input", name))

        def bind_output(self, name, device_type="cpu", device_id=0, *rest):
            calls.append(("output", name, device_type, device_id))

        def copy_outputs_to_cpu(self):
            return [np.zeros((1, 64), np.float32)]

    class Session:  # an ORT session on device 1 (IO binding API)
        def io_binding(self):
            return Binding()

        def run_with_iobinding(self, binding):
            calls.append("run")

    session = OrtSession.__new__(OrtSession)
    session.provider, session.device_id, session.session = "cuda", 1, Session()
    session.input_name, session.output_name = "spectra", "denoised"
    session.run(np.zeros((1, 64), np.float32))
    assert ("output", "denoised", "cuda", 1) in calls


# --- packaging: one ONNX Runtime package ---------------------------------------------------


def test_each_extra_brings_exactly_one_onnxruntime_and_gpu_pairs_tensorrt_10():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {Requirement(r).name for r in project["dependencies"]}
    # The two ONNX Runtime packages share one module: neither may come with the base install,
    # or `[gpu]` would install both and lose the CUDA provider.
    assert not {"onnxruntime", "onnxruntime-gpu"} & base
    extras = {
        name: {Requirement(r).name: Requirement(r) for r in requirements}
        for name, requirements in project["optional-dependencies"].items()
    }
    assert {"onnxruntime", "onnxruntime-gpu"} & set(extras["cpu"]) == {"onnxruntime"}
    assert {"onnxruntime", "onnxruntime-gpu"} & set(extras["gpu"]) == {"onnxruntime-gpu"}
    for name in set(extras) - {"cpu", "gpu"}:
        assert not {"onnxruntime", "onnxruntime-gpu"} & set(extras[name]), name
    assert str(extras["gpu"]["onnxruntime-gpu"].specifier) == \
        str(Requirement(ORT_GPU_REQUIREMENT).specifier)
    tensorrt = extras["gpu"]["tensorrt-cu12"]
    # onnxruntime-gpu 1.19-1.22 build their TensorRT provider against TensorRT 10, CUDA 12
    assert "10.0" in tensorrt.specifier and "11.0" not in tensorrt.specifier
    gpu_ort = Requirement(ORT_GPU_REQUIREMENT)
    assert "1.19.0" in gpu_ort.specifier and "1.22.9" in gpu_ort.specifier
    assert "1.18.0" not in gpu_ort.specifier and "1.23.0" not in gpu_ort.specifier
    assert "12.9" in extras["gpu"]["cuda-python"].specifier
    assert "13.0" not in extras["gpu"]["cuda-python"].specifier


def test_make_installs_the_cpu_extra():
    assert '".[cpu,' in (ROOT / "Makefile").read_text()


def test_developers_guide_gives_the_same_onnxruntime_gpu_fix():
    assert ORT_GPU_FIX in (ROOT / "DEVELOPERS.md").read_text()


@pytest.mark.parametrize(("provider", "extra"), [("cpu", "cpu"), ("cuda", "gpu")])
def test_without_onnxruntime_the_session_names_the_extra(monkeypatch, tmp_path, provider, extra):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(BackendUnavailable, match=rf"pip install 'nmrladder\[{extra}\]'"):
        OrtSession(tmp_path / "model.onnx", provider=provider)
