"""Small stand-ins for cuda-python's runtime module and TensorRT's Python API, for testing the
GPU code on a machine without a GPU. They answer as the documented APIs do:

- cuda-python: every call returns a tuple whose first item is a ``cudaError_t``; device
  memory is real host memory here, and copies check that they stay inside an allocation
  (a copy past the end is ``cudaErrorInvalidValue`` instead of a corrupted heap);
- TensorRT 10: ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` return
  bool, ``get_tensor_shape`` gives -1 until the input shape is set, ``get_timing_cache`` is
  None when no cache was accepted, ``set_timing_cache(..., ignore_mismatch=False)`` returns
  False for a cache from another GPU. A "plan" carries the ONNX model and its profiles, and
  the engine runs it with ONNX Runtime on the CPU, so parity against ONNX Runtime holds
  unless a test perturbs it.

``install(monkeypatch, ...)`` puts them in sys.modules under their real import names.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import threading
import types

import numpy as np


class cudaError_t(enum.IntEnum):  # cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInitializationError = 3
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


OK = cudaError_t.cudaSuccess


class FakeCudart(types.ModuleType):
    """cuda.bindings.runtime with ``devices`` devices; ``count_status`` / ``malloc_status``
    make cudaGetDeviceCount / cudaMalloc fail with that status."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind

    def __init__(self, devices=1, count_status=OK, malloc_status=OK, capability=(9, 0)):
        super().__init__("cuda.bindings.runtime")
        self.devices, self.count_status, self.malloc_status = devices, count_status, malloc_status
        self.capability = capability
        self.allocations: dict[int, tuple] = {}  # pointer -> (buffer, nbytes, device)
        self.streams: set[int] = set()
        self.destroyed: list[int] = []
        self._next_stream = 0x5000
        self._current = threading.local()
        self.lock = threading.Lock()

    def current_device(self) -> int:
        return getattr(self._current, "device", 0)

    def cudaGetErrorName(self, status):
        return OK, cudaError_t(status).name.encode()

    def cudaGetDeviceCount(self):
        return (OK, self.devices) if self.count_status == OK else (self.count_status, 0)

    def cudaGetDeviceProperties(self, device):
        if not 0 <= device < self.devices:
            return cudaError_t.cudaErrorInvalidDevice, None
        major, minor = self.capability
        return OK, types.SimpleNamespace(
            name=b"Fake GPU %d\x00\x00" % device, major=major, minor=minor
        )

    def cudaSetDevice(self, device):
        if not 0 <= device < self.devices:
            return (cudaError_t.cudaErrorInvalidDevice,)
        self._current.device = device
        return (OK,)

    def cudaMalloc(self, nbytes):
        if self.malloc_status != OK:
            return self.malloc_status, 0
        buffer = ctypes.create_string_buffer(max(nbytes, 1))
        pointer = ctypes.addressof(buffer)
        with self.lock:
            self.allocations[pointer] = (buffer, nbytes, self.current_device())
        return OK, pointer

    def cudaFree(self, pointer):
        with self.lock:
            known = self.allocations.pop(pointer, None) is not None
        return (OK,) if known else (cudaError_t.cudaErrorInvalidValue,)

    def inside(self, pointer: int, nbytes: int) -> bool:
        return any(
            base <= pointer and pointer + nbytes <= base + size
            for base, (_, size, _) in self.allocations.items()
        )

    def cudaStreamCreate(self):
        self._next_stream += 1
        self.streams.add(self._next_stream)
        return OK, self._next_stream

    def cudaStreamDestroy(self, stream):
        if stream not in self.streams:
            return (cudaError_t.cudaErrorInvalidValue,)
        self.streams.remove(stream)
        self.destroyed.append(stream)
        return (OK,)

    def cudaStreamSynchronize(self, stream):
        return (OK,) if stream in self.streams else (cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        device = dst if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else src
        if stream not in self.streams or not self.inside(device, nbytes):
            return (cudaError_t.cudaErrorInvalidValue,)
        ctypes.memmove(dst, src, nbytes)
        return (OK,)


# --- TensorRT ------------------------------------------------------------------------------


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    BF16 = 7


def nptype(dtype):
    if dtype == DataType.FLOAT:
        return np.float32
    if dtype == DataType.HALF:
        return np.float16
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


class Logger:
    WARNING = 2

    def __init__(self, level=WARNING):
        self.level = level


class FakeCache:
    def __init__(self, data: bytes, trt):
        self.data, self.trt = data, trt

    def serialize(self):
        if self.trt.serialize_error:
            raise RuntimeError("timing cache serialization failed")
        return b"CACHE:" + self.trt.gpu_tag + b":" + self.data


class FakeConfig:
    def __init__(self, trt):
        self.trt, self.cache, self.profiles, self.flags = trt, None, [], set()

    def set_memory_pool_limit(self, pool, size):
        pass

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1

    def create_timing_cache(self, data: bytes):
        return FakeCache(bytes(data), self.trt)

    def set_timing_cache(self, cache, ignore_mismatch):
        foreign = cache.data and not cache.data.startswith(b"CACHE:" + self.trt.gpu_tag)
        if self.trt.refuse_caches or (foreign and not ignore_mismatch):
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache if self.trt.keep_cache else None


class FakeProfile:
    def set_shape(self, name, low, opt, high):
        self.shapes = [list(low), list(opt), list(high)]


class FakeNetwork:
    onnx = b""

    def get_input(self, index):
        return types.SimpleNamespace(name="z")


class FakeParser:
    num_errors = 0

    def __init__(self, network, logger):
        self.network = network

    def parse(self, data):
        self.network.onnx = bytes(data)
        return True


class FakeBuilder:
    def __init__(self, logger):
        self.trt = sys.modules["tensorrt"]

    def create_network(self, flags):
        return FakeNetwork()

    def create_builder_config(self):
        return FakeConfig(self.trt)

    def create_optimization_profile(self):
        return FakeProfile()

    def build_serialized_network(self, network, config):
        header = json.dumps({"profiles": config.profiles}).encode()
        return b"FAKEPLAN" + header + b"\n" + network.onnx


class FakeEngine:
    def __init__(self, header: dict, onnx: bytes, trt):
        import onnxruntime as ort

        self.trt, self.profiles = trt, header["profiles"]
        self.ort = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.names = [self.ort.get_inputs()[0].name, self.ort.get_outputs()[0].name]
        self.num_io_tensors, self.num_optimization_profiles = 2, len(self.profiles)

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == self.names[0] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT if name == self.names[0] else self.trt.output_dtype

    def get_tensor_profile_shape(self, name, profile):
        return [tuple(shape) for shape in self.profiles[profile]]

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.trt = engine, engine.trt
        self.shape, self.addresses, self.devices, self.profile = None, {}, [], 0

    def set_optimization_profile_async(self, profile, stream):
        if not 0 <= profile < self.engine.num_optimization_profiles:
            return False
        self.profile = profile
        return True

    def set_input_shape(self, name, shape):
        low, _, high = self.engine.profiles[self.profile]
        inside = all(lo <= n <= hi for lo, n, hi in zip(low, shape, high, strict=True))
        if self.trt.refuse_shapes or not inside:
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shape or (-1, -1)

    def set_tensor_address(self, name, pointer):
        if self.trt.refuse_addresses:
            return False
        self.addresses[name] = pointer
        return True

    def execute_async_v3(self, stream):
        cuda = sys.modules["cuda.bindings.runtime"]
        self.devices.append(cuda.current_device())
        name_in, name_out = self.engine.names
        if self.shape is None or set(self.addresses) != {name_in, name_out}:
            return False
        nbytes = int(np.prod(self.shape)) * 4
        if not cuda.inside(self.addresses[name_in], nbytes):
            return False
        z = np.frombuffer(ctypes.string_at(self.addresses[name_in], nbytes), np.float32)
        y = self.engine.ort.run(None, {name_in: z.reshape(self.shape)})[0] + self.trt.offset
        y = np.ascontiguousarray(y, dtype=nptype(self.trt.output_dtype))
        if not cuda.inside(self.addresses[name_out], y.nbytes):
            return False
        ctypes.memmove(self.addresses[name_out], y.ctypes.data, y.nbytes)
        return True


class FakeRuntime:
    def __init__(self, logger):
        self.trt = sys.modules["tensorrt"]

    def deserialize_cuda_engine(self, data):
        if not data.startswith(b"FAKEPLAN"):
            return None
        header, onnx = bytes(data[8:]).split(b"\n", 1)
        return FakeEngine(json.loads(header), onnx, self.trt)


def fake_tensorrt(version="10.99.0", output_dtype=DataType.FLOAT) -> types.ModuleType:
    """The tensorrt module; its attributes below steer what the fakes answer."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger, trt.Builder, trt.Runtime, trt.OnnxParser = (
        Logger,
        FakeBuilder,
        FakeRuntime,
        FakeParser,
    )
    trt.TensorIOMode, trt.DataType, trt.nptype = TensorIOMode, DataType, nptype
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.BuilderFlag = types.SimpleNamespace(FP16=1, BF16=2, TF32=3)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.output_dtype = output_dtype
    trt.gpu_tag = b"gpu-A"  # whose timing caches this "GPU" accepts
    trt.keep_cache = True  # False: get_timing_cache() answers None
    trt.refuse_caches = False  # True: set_timing_cache refuses every cache
    trt.serialize_error = False
    trt.refuse_shapes = trt.refuse_addresses = False
    trt.offset = 0.0  # added to every output (a parity miss)
    return trt


def install(monkeypatch, cudart: FakeCudart | None = None, tensorrt=None) -> None:
    """Put the fakes where ``from cuda.bindings import runtime`` and ``import tensorrt`` find
    them (cuda-python's and TensorRT's real import names)."""
    if cudart is not None:
        cuda = types.ModuleType("cuda")
        bindings = types.ModuleType("cuda.bindings")
        cuda.bindings, bindings.runtime = bindings, cudart
        for name, module in (
            ("cuda", cuda),
            ("cuda.bindings", bindings),
            ("cuda.bindings.runtime", cudart),
        ):
            monkeypatch.setitem(sys.modules, name, module)
    if tensorrt is not None:
        monkeypatch.setitem(sys.modules, "tensorrt", tensorrt)
