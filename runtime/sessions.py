"""Inference sessions: one runner interface over ONNX Runtime, native TensorRT and torch.

A session runs the network on the model's canonical input (see runtime/scaling.py):
``session.run(z [B, L_pad] float32) -> [B, L_pad]``. Each backend is imported only when
asked for; a missing one is a BackendUnavailable with its install hint, a corrupt or
mismatched artefact a ModelError that says what to rebuild.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from nmrladder.runtime.artefact import ArtefactInfo
from nmrladder.runtime.errors import BackendUnavailable, InputError, ModelError

BACKENDS = ("ort", "ort-cuda", "ort-tensorrt", "trt", "torch")
# onnxruntime-gpu whose TensorRT provider is built against TensorRT 10 (the `gpu` extra's
# tensorrt-cu12 major) and whose PyPI wheels are CUDA 12 builds (pyproject.toml, DEVELOPERS.md).
ORT_GPU_REQUIREMENT = "onnxruntime-gpu>=1.19,<1.23"
# It shares the module `onnxruntime` with the base dependency: one must replace the other.
ORT_GPU_FIX = f"pip uninstall -y onnxruntime onnxruntime-gpu && pip install '{ORT_GPU_REQUIREMENT}'"
ORT_GPU_LIBRARIES = (
    "the CUDA 12 and cuDNN 9 libraries for onnxruntime-gpu, TensorRT 10 for its TensorRT "
    "provider (pip install 'nmrladder[gpu]'; DEVELOPERS.md, GPU install)"
)
ORT_GPU_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def import_onnxruntime(provider: str = "cpu"):
    """The onnxruntime module, or BackendUnavailable naming the extra that brings it (the base
    install has neither ONNX Runtime package; pyproject.toml, DEVELOPERS.md GPU install)."""
    try:
        import onnxruntime
    except ImportError as err:
        extra = "cpu" if provider == "cpu" else "gpu"
        raise BackendUnavailable(
            "ort" if provider == "cpu" else f"ort-{provider}",
            f"cannot import onnxruntime ({err})", f"pip install 'nmrladder[{extra}]'",
        ) from None
    return onnxruntime


def ort_packages() -> list[str]:
    """The ONNX Runtime distributions installed here (onnxruntime, onnxruntime-gpu, or both)."""
    from importlib import metadata

    found = []
    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
        found.append(distribution)
    return found


def default_threads() -> int:
    """The cores this process may run on."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


class OrtSession:
    """ONNX Runtime: the CPU EP by default (explicit thread settings), CUDA or TensorRT EPs
    when onnxruntime-gpu is installed (with IO binding and an engine/timing cache).

    A GPU session is refused (BackendUnavailable) unless the provider asked for is active in
    the session ONNX Runtime made: when a provider's libraries fail to load, ONNX Runtime
    falls back to the CPU with only a log line, and CPU timings would pass for GPU ones.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        device_id: int = 0,
    ):
        ort = import_onnxruntime(provider)
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        if provider != "cpu" and provider not in ORT_GPU_PROVIDERS:
            raise InputError(f"provider {provider!r}: use cpu, cuda or tensorrt")
        self.provider = provider
        self.device_id = device_id
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = self._providers(ort, provider, cache_dir, device_id)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # ORT raises its own exception types for bad files
            raise ModelError(
                f"{self.path}: ONNX Runtime cannot load it ({type(err).__name__}: {err}); "
                "re-export it with nmrladder export"
            ) from err
        if provider != "cpu":
            active = self.session.get_providers()
            if ORT_GPU_PROVIDERS[provider] not in active:
                raise BackendUnavailable(
                    f"ort-{provider}",
                    f"{self.path}: ONNX Runtime fell back to {active}: "
                    f"{ORT_GPU_PROVIDERS[provider]} did not start on device {device_id} "
                    "(its log above names the library that failed to load)",
                    ORT_GPU_LIBRARIES,
                )
        self.info = ArtefactInfo.from_props(
            self.session.get_modelmeta().custom_metadata_map, str(self.path)
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.name = f"onnxruntime-{provider}"

    @staticmethod
    def _providers(ort, provider: str, cache_dir, device_id: int) -> list:
        if provider == "cpu":
            return ["CPUExecutionProvider"]
        backend, wanted = f"ort-{provider}", ORT_GPU_PROVIDERS[provider]
        packages = ort_packages()
        if len(packages) > 1:
            raise BackendUnavailable(
                backend,
                f"{' and '.join(packages)} are both installed: they share the module "
                "onnxruntime, so which one loads is an accident of install order, and the CPU "
                "package hides the CUDA provider",
                ORT_GPU_FIX,
            )
        available = ort.get_available_providers()
        if wanted not in available:
            raise BackendUnavailable(
                backend,
                f"ONNX Runtime here ({', '.join(packages)}) offers only {available}",
                ORT_GPU_FIX,
            )
        # TF32 off: the CUDA provider rounds matmul/convolution inputs to TF32 by default,
        # while the parity checks hold GPU sessions to the fp32 tolerance.
        cuda = ("CUDAExecutionProvider", {"device_id": device_id, "use_tf32": 0})
        if provider == "cuda":
            return [cuda, "CPUExecutionProvider"]
        cache = str(Path(cache_dir or Path.home() / ".cache" / "nmrladder" / "ort-trt"))
        Path(cache).mkdir(parents=True, exist_ok=True)
        trt = (
            "TensorrtExecutionProvider",
            {
                "device_id": device_id,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": cache,
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": cache,
            },
        )
        return [trt, cuda, "CPUExecutionProvider"]

    def run(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        if self.provider == "cpu":
            return self.session.run([self.output_name], {self.input_name: z})[0]
        binding = self.session.io_binding()  # keep the output on the device until copied once
        binding.bind_cpu_input(self.input_name, z)
        binding.bind_output(self.output_name, "cuda", self.device_id)  # the session's device
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class TensorRTSession:
    """A native TensorRT engine (.plan + sidecar JSON from nmrladder export) on one CUDA device.

    The engine, its context, stream and buffers live on ``device_id``, which each call makes
    current (CUDA keeps the current device per thread, and the batch job calls from its own).
    Output buffers take the engine's output shape and dtype; every TensorRT call that reports
    failure is checked. ``close()`` (or a with block) frees the buffers and the stream.
    """

    def __init__(self, plan_path: str | Path, *, device_id: int = 0):
        from nmrladder.runtime.cuda import (
            DeviceBuffer,
            Stream,
            device_properties,
            import_tensorrt,
            set_device,
        )

        self.path = Path(plan_path)
        sidecar_path = self.path.with_name(self.path.name + ".json")
        if not self.path.is_file() or not sidecar_path.is_file():
            raise ModelError(f"{self.path}: engine or its sidecar {sidecar_path.name} is missing")
        sidecar = json.loads(sidecar_path.read_text())
        trt, _ = import_tensorrt()
        gpu = device_properties(device_id)
        rebuild = (
            "rebuild it on this machine: nmrladder export RUN --out DIR --tensorrt "
            + sidecar.get("precision", "fp16")
        )
        if sidecar.get("tensorrt_version") != trt.__version__:
            raise ModelError(
                f"{self.path}: built with TensorRT {sidecar.get('tensorrt_version')}, "
                f"this machine has {trt.__version__}; {rebuild}"
            )
        if sidecar.get("compute_capability") != gpu["compute_capability"]:
            raise ModelError(
                f"{self.path}: built for compute capability {sidecar.get('compute_capability')} "
                f"({sidecar.get('gpu_name')}), CUDA device {device_id} is {gpu['name']} "
                f"({gpu['compute_capability']}); {rebuild}"
            )
        self.info = ArtefactInfo.from_props(sidecar["artefact"], str(sidecar_path))
        self.device_id = device_id
        self._set_device = set_device
        set_device(device_id)
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelError(f"{self.path}: TensorRT could not deserialize the engine; {rebuild}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ModelError(f"{self.path}: TensorRT could not create an execution context")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        )
        self.output_name = next(
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        )
        self.input_dtype = self._numpy_dtype(trt, self.input_name)
        self.output_dtype = self._numpy_dtype(trt, self.output_name)
        self.profiles = [
            self.engine.get_tensor_profile_shape(self.input_name, p)
            for p in range(self.engine.num_optimization_profiles)
        ]
        self.stream = Stream()
        self.inputs, self.outputs = DeviceBuffer(), DeviceBuffer()
        self.active_profile = -1
        self.name = f"tensorrt-{sidecar.get('precision')}"

    def _numpy_dtype(self, trt, name: str) -> np.dtype:
        dtype = self.engine.get_tensor_dtype(name)
        try:
            return np.dtype(trt.nptype(dtype))
        except (TypeError, KeyError) as err:
            raise ModelError(
                f"{self.path}: tensor {name!r} is {dtype}, which has no NumPy type here; "
                "export the engine with float32 input and output"
            ) from err

    def _profile_for(self, batch: int, length: int) -> int:
        for index, (low, _, high) in enumerate(self.profiles):
            if low[0] <= batch <= high[0] and low[1] <= length <= high[1]:
                return index
        raise InputError(
            f"length {length} x batch {batch} is outside every profile of {self.path} "
            f"({[(tuple(lo), tuple(hi)) for lo, _, hi in self.profiles]})"
        )

    def _checked(self, ok, what: str) -> None:
        if not ok:  # TensorRT 10 reports these failures as False (details in its log)
            raise ModelError(f"{self.path}: TensorRT refused {what}")

    def run(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=self.input_dtype)
        profile = self._profile_for(*z.shape)
        self._set_device(self.device_id)
        context = self.context
        if profile != self.active_profile:
            self._checked(
                context.set_optimization_profile_async(profile, self.stream.address),
                f"optimization profile {profile}",
            )
            self.active_profile = profile
        self._checked(
            context.set_input_shape(self.input_name, tuple(z.shape)),
            f"input shape {tuple(z.shape)} for {self.input_name!r}",
        )
        shape = tuple(int(d) for d in context.get_tensor_shape(self.output_name))
        if shape != z.shape:  # a session maps [B, L_pad] to [B, L_pad] (module docstring)
            raise ModelError(
                f"{self.path}: output {self.output_name!r} has shape {shape} for input "
                f"{tuple(z.shape)}; not an nmrladder engine, rebuild it with nmrladder export"
            )
        out = np.empty(shape, dtype=self.output_dtype)
        for name, buffer, nbytes in (
            (self.input_name, self.inputs, z.nbytes),
            (self.output_name, self.outputs, out.nbytes),
        ):
            self._checked(
                context.set_tensor_address(name, buffer.reserve(nbytes)), f"the address of {name!r}"
            )
        self.stream.to_device(self.inputs.ptr, z)
        self._checked(context.execute_async_v3(self.stream.address), "to execute")
        self.stream.to_host(out, self.outputs.ptr)
        self.stream.synchronize()
        return out if out.dtype == np.float32 else out.astype(np.float32)

    @property
    def max_batch(self) -> int:
        return max(int(high[0]) for _, _, high in self.profiles)

    def close(self) -> None:
        """Free the device buffers, destroy the stream, drop the context before the engine."""
        self.inputs.free()
        self.outputs.free()
        self.stream.close()
        self.context = None
        self.engine = None

    def __enter__(self) -> TensorRTSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TorchProgramSession:
    """The exported torch.export program (.pt2): the optional torch backend, imported lazily."""

    def __init__(self, path: str | Path, *, threads: int | None = None, device: str = "cpu"):
        try:
            import torch
        except ImportError as err:
            raise BackendUnavailable(
                "torch", f"cannot import torch ({err})", "pip install torch"
            ) from err
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such program file")
        extra = {"nmrladder.json": ""}
        try:
            program = torch.export.load(str(self.path), extra_files=extra)
        except Exception as err:
            raise ModelError(
                f"{self.path}: torch cannot load it ({type(err).__name__}: {err}); "
                "re-export it with nmrladder export"
            ) from err
        if not extra["nmrladder.json"]:
            raise ModelError(f"{self.path}: not an nmrladder program (no metadata); re-export it")
        self.info = ArtefactInfo.from_props(json.loads(extra["nmrladder.json"]), str(self.path))
        if threads:
            torch.set_num_threads(threads)
        self.torch, self.device = torch, device
        self.module = program.module().to(device)
        self.name = f"torch-{device}"

    def run(self, z: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).to(self.device)
            return self.module(x).cpu().numpy()


def open_session(
    path: str | Path, backend: str = "ort", *, threads: int | None = None, device_id: int = 0
):
    """The session for ``backend`` on the artefact at ``path`` (a file or an export folder);
    ``device_id``: the CUDA device of a GPU backend."""
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: use one of {BACKENDS}")
    # A missing backend is reported as such, before anything about the artefact.
    if backend == "trt":
        from nmrladder.runtime.cuda import import_tensorrt

        import_tensorrt()
    artefact = resolve_artefact(path, backend)
    if backend == "trt":
        return TensorRTSession(artefact, device_id=device_id)
    if backend == "torch":
        return TorchProgramSession(artefact, threads=threads)
    provider = {"ort": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "tensorrt"}[backend]
    return OrtSession(artefact, provider=provider, threads=threads, device_id=device_id)


def resolve_artefact(path: str | Path, backend: str) -> Path:
    """A file as given, or the right file inside an export folder for the backend."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such model file or folder")
    if path.is_file():
        return path
    if backend == "trt":
        plans = sorted(path.glob("*.plan"), key=lambda p: ("fp32" in p.name, p.name))
        if not plans:
            raise ModelError(
                f"{path}: no TensorRT engine (*.plan) in this folder; "
                "build one with nmrladder export RUN --out DIR --tensorrt fp16"
            )
        return plans[0]
    pattern = "*.pt2" if backend == "torch" else "*.onnx"
    candidates = sorted(p for p in path.glob(pattern) if p.name.count(".") == 1)
    if backend == "ort":  # the CPU backend runs the export's int8 copy when it has one
        candidates = sorted(path.glob("*.int8.onnx")) + candidates
    if not candidates:
        raise ModelError(
            f"{path}: no {pattern} artefact in this folder; export one with nmrladder export"
        )
    return candidates[0]
