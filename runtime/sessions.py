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
ORT_GPU_HINT = "pip uninstall onnxruntime && pip install 'nmrladder[gpu]'  (onnxruntime-gpu)"


def default_threads() -> int:
    """The cores this process may run on."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


class OrtSession:
    """ONNX Runtime: the CPU EP by default (explicit thread settings), CUDA or TensorRT EPs
    when onnxruntime-gpu is installed (with IO binding and an engine/timing cache)."""

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str = "cpu",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        device_id: int = 0,
    ):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file")
        self.provider = provider
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
        self.info = ArtefactInfo.from_props(
            self.session.get_modelmeta().custom_metadata_map, str(self.path)
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.name = f"onnxruntime-{provider}"

    @staticmethod
    def _providers(ort, provider: str, cache_dir, device_id: int) -> list:
        available = ort.get_available_providers()
        if provider == "cpu":
            return ["CPUExecutionProvider"]
        wanted = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[
            provider
        ]
        if wanted not in available:
            raise BackendUnavailable(
                f"ort-{provider}", f"ONNX Runtime here offers only {available}", ORT_GPU_HINT
            )
        cuda = ("CUDAExecutionProvider", {"device_id": device_id})
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
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class TensorRTSession:
    """A native TensorRT engine (.plan + sidecar JSON from nmrladder export)."""

    def __init__(self, plan_path: str | Path):
        from nmrladder.runtime.cuda import DeviceBuffer, Stream, device_properties, import_tensorrt

        self.path = Path(plan_path)
        sidecar_path = self.path.with_name(self.path.name + ".json")
        if not self.path.is_file() or not sidecar_path.is_file():
            raise ModelError(f"{self.path}: engine or its sidecar {sidecar_path.name} is missing")
        sidecar = json.loads(sidecar_path.read_text())
        trt, _ = import_tensorrt()
        gpu = device_properties(0)
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
                f"({sidecar.get('gpu_name')}), this GPU is {gpu['name']} "
                f"({gpu['compute_capability']}); {rebuild}"
            )
        self.info = ArtefactInfo.from_props(sidecar["artefact"], str(sidecar_path))
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ModelError(f"{self.path}: TensorRT could not deserialize the engine; {rebuild}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT
        )
        self.output_name = next(
            n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        )
        self.profiles = [
            self.engine.get_tensor_profile_shape(self.input_name, p)
            for p in range(self.engine.num_optimization_profiles)
        ]
        self.stream = Stream()
        self.inputs, self.outputs = DeviceBuffer(), DeviceBuffer()
        self.active_profile = -1
        self.name = f"tensorrt-{sidecar.get('precision')}"

    def _profile_for(self, batch: int, length: int) -> int:
        for index, (low, _, high) in enumerate(self.profiles):
            if low[0] <= batch <= high[0] and low[1] <= length <= high[1]:
                return index
        raise InputError(
            f"length {length} x batch {batch} is outside every profile of {self.path} "
            f"({[(tuple(lo), tuple(hi)) for lo, _, hi in self.profiles]})"
        )

    def run(self, z: np.ndarray) -> np.ndarray:
        z = np.ascontiguousarray(z, dtype=np.float32)
        profile = self._profile_for(*z.shape)
        if profile != self.active_profile:
            self.context.set_optimization_profile_async(profile, self.stream.address)
            self.active_profile = profile
        self.context.set_input_shape(self.input_name, z.shape)
        out = np.empty_like(z)
        self.context.set_tensor_address(self.input_name, self.inputs.reserve(z.nbytes))
        self.context.set_tensor_address(self.output_name, self.outputs.reserve(out.nbytes))
        self.stream.to_device(self.inputs.ptr, z)
        if not self.context.execute_async_v3(self.stream.address):
            raise ModelError(f"{self.path}: TensorRT execution failed")
        self.stream.to_host(out, self.outputs.ptr)
        self.stream.synchronize()
        return out

    @property
    def max_batch(self) -> int:
        return max(int(high[0]) for _, _, high in self.profiles)


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


def open_session(path: str | Path, backend: str = "ort", *, threads: int | None = None):
    """The session for ``backend`` on the artefact at ``path`` (a file or an export folder)."""
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: use one of {BACKENDS}")
    # A missing backend is reported as such, before anything about the artefact.
    if backend == "trt":
        from nmrladder.runtime.cuda import import_tensorrt

        import_tensorrt()
    artefact = resolve_artefact(path, backend)
    if backend == "trt":
        return TensorRTSession(artefact)
    if backend == "torch":
        return TorchProgramSession(artefact, threads=threads)
    provider = {"ort": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "tensorrt"}[backend]
    return OrtSession(artefact, provider=provider, threads=threads)


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
