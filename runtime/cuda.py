"""The few CUDA runtime calls the native TensorRT backend needs, through cuda-python.

Kept torch-free: device memory, a stream, async copies and device properties. Every call
checks its status. A missing package, driver or device is a BackendUnavailable with the
install hint (the backend is not there); any other CUDA status is a CudaError (the backend is
there and broke), so a GPU check never reads a failure as "no GPU".
"""

from __future__ import annotations

import numpy as np

from nmrladder.runtime.errors import BackendUnavailable, NmrLadderError

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


class CudaError(NmrLadderError, RuntimeError):
    """A CUDA runtime call failed on a machine that has CUDA: an error, never a missing backend."""


def _status_name(rt, status) -> str:
    _, name = rt.cudaGetErrorName(status)
    return name.decode() if isinstance(name, bytes) else str(name)


def check(result, what: str = "CUDA call"):
    """Unpack a cuda-python result tuple, raising CudaError on an error status."""
    rt = cudart()
    status, *values = result if isinstance(result, tuple) else (result,)
    if status != rt.cudaError_t.cudaSuccess:
        raise CudaError(f"{what} failed: {_status_name(rt, status)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    """The CUDA devices of this machine: 0 when the driver finds none; BackendUnavailable when
    cuda-python or a usable driver is missing; CudaError for any other status (a broken
    driver or device is not "no device")."""
    rt = cudart()
    status, *values = rt.cudaGetDeviceCount()
    if status == rt.cudaError_t.cudaSuccess:
        return int(values[0])
    if status == rt.cudaError_t.cudaErrorNoDevice:
        return 0
    if status == rt.cudaError_t.cudaErrorInsufficientDriver:
        raise BackendUnavailable(
            "cuda",
            "no NVIDIA driver, or one older than this CUDA runtime (cudaErrorInsufficientDriver)",
            INSTALL_HINT,
        )
    raise CudaError(f"counting CUDA devices failed: {_status_name(rt, status)}")


def set_device(device: int) -> None:
    """Make ``device`` current for this thread (CUDA keeps the current device per thread)."""
    check(cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


def device_properties(device: int = 0) -> dict:
    """{"name", "compute_capability"} of a CUDA device, or BackendUnavailable."""
    count = device_count()
    if count <= device:
        raise BackendUnavailable(
            "cuda", f"no CUDA device {device} on this machine ({count} found)", INSTALL_HINT
        )
    prop = check(cudart().cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
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
            self.ptr = int(check(cudart().cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr), "cudaFree")
            self.ptr, self.nbytes = 0, 0

    def __del__(self):
        try:
            self.free()
        except Exception:  # interpreter shutdown: the driver reclaims it anyway
            pass


class Stream:
    """A CUDA stream with host<->device copies of contiguous numpy arrays."""

    def __init__(self):
        self.handle = None
        self.handle = check(cudart().cudaStreamCreate(), "cudaStreamCreate")

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        rt = cudart()
        check(
            rt.cudaMemcpyAsync(
                ptr,
                array.ctypes.data,
                array.nbytes,
                rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                self.handle,
            ),
            "cudaMemcpyAsync (host to device)",
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
            ),
            "cudaMemcpyAsync (device to host)",
        )

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        """Destroy the stream (once); a closed stream takes no more work."""
        if self.handle is not None:
            handle, self.handle = self.handle, None
            check(cudart().cudaStreamDestroy(handle), "cudaStreamDestroy")

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the driver reclaims it anyway
            pass

    @property
    def address(self) -> int:
        if self.handle is None:
            raise CudaError("the CUDA stream is closed")
        return int(self.handle)
