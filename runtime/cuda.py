"""The few CUDA runtime calls the native TensorRT backend needs, through cuda-python.

Kept torch-free: device memory, a stream, async copies and device properties. Every call
checks its status; a missing package or device is a BackendUnavailable with the install hint.
"""

from __future__ import annotations

import numpy as np

from nmrladder.runtime.errors import BackendUnavailable

INSTALL_HINT = "pip install 'nmrladder[gpu]'  (cuda-python with an NVIDIA driver)"
TENSORRT_HINT = (
    "pip install 'nmrladder[gpu]'  (tensorrt, cuda-python; needs an NVIDIA GPU and driver)"
)


def import_tensorrt():
    """The tensorrt module and its major version, or BackendUnavailable with the install hint."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailable(
            "tensorrt", f"cannot import tensorrt ({err})", TENSORRT_HINT
        ) from err
    return trt, int(trt.__version__.split(".")[0])


def cudart():
    """cuda-python's runtime module (new and old import paths)."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError as err:
            raise BackendUnavailable(
                "cuda", f"cannot import cuda-python ({err})", INSTALL_HINT
            ) from err
    return runtime


def check(result):
    """Unpack a cuda-python result tuple, raising on an error status."""
    rt = cudart()
    status, *values = result if isinstance(result, tuple) else (result,)
    if status != rt.cudaError_t.cudaSuccess:
        _, name = rt.cudaGetErrorName(status)
        raise BackendUnavailable(
            "cuda", f"CUDA call failed: {name.decode() if isinstance(name, bytes) else name}"
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    try:
        return int(check(cudart().cudaGetDeviceCount()))
    except BackendUnavailable:
        return 0


def device_properties(device: int = 0) -> dict:
    """{"name", "compute_capability"} of a CUDA device, or BackendUnavailable."""
    if device_count() <= device:
        raise BackendUnavailable("cuda", f"no CUDA device {device} on this machine", INSTALL_HINT)
    prop = check(cudart().cudaGetDeviceProperties(device))
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {"name": name.rstrip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}"}


class DeviceBuffer:
    """A device allocation of ``nbytes``, grown on demand and freed with the object."""

    def __init__(self, nbytes: int = 0):
        self.ptr = 0
        self.nbytes = 0
        self.reserve(nbytes)

    def reserve(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(check(cudart().cudaMalloc(nbytes)))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr))
            self.ptr, self.nbytes = 0, 0

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver reclaims it anyway
            pass


class Stream:
    """A CUDA stream with host<->device copies of contiguous numpy arrays."""

    def __init__(self):
        self.handle = check(cudart().cudaStreamCreate())

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        rt = cudart()
        check(
            rt.cudaMemcpyAsync(
                ptr,
                array.ctypes.data,
                array.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                self.handle,
            )
        )

    def to_host(self, array: np.ndarray, ptr: int) -> None:
        rt = cudart()
        check(
            rt.cudaMemcpyAsync(
                array.ctypes.data,
                ptr,
                array.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                self.handle,
            )
        )

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle))

    @property
    def address(self) -> int:
        return int(self.handle)
