"""TensorRT engines from the exported ONNX (native Python API, TensorRT 10 and 11).

One optimization profile per length bucket (min/opt/max length and batch), precision fp32,
fp16 or bf16, a persistent timing cache, and a pure serialized plan with a sidecar JSON
(no header glued onto the engine file). The plan and its sidecar are written as a pair: both
to temporary names first, the old sidecar removed, then both renamed, so a crash leaves the
old pair, the new pair, or a plan with no sidecar (which the runtime refuses), never a plan
beside another build's sidecar. Precision:

- TensorRT 11: networks are always strongly typed and precision comes from the ONNX types,
  so fp16/bf16 build from :func:`~nmrladder.export.mixed_precision.to_mixed_precision`
  (convolutions reduced, normalisation and reductions fp32);
- TensorRT 10: the fp32 ONNX with BuilderFlag.FP16 / BF16 (weak typing).
fp32 engines clear TF32 so they can be held to the fp32 parity tolerance.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nmrladder.runtime.atomic import atomic_path, write_bytes_atomic
from nmrladder.runtime.cuda import device_properties, import_tensorrt, set_device
from nmrladder.runtime.errors import InputError, ModelError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True)
class Profile:
    """One optimization profile: spectra lengths and batch sizes it is tuned for."""

    min_length: int
    opt_length: int
    max_length: int
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 64


#: Length buckets covering 2048..131072 points (each length padded to the multiple).
DEFAULT_PROFILES = (
    Profile(256, 8192, 16384),
    Profile(16384, 32768, 65536),
    Profile(65536, 131072, 131072, opt_batch=4, max_batch=16),
)


def _network_flags(trt, major: int, strongly_typed: bool) -> int:
    flags = 0
    if major < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed and major < 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _parse(trt, network, logger, onnx_bytes: bytes, source: str) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{source}: TensorRT's ONNX parser refused the model: {errors}")


def _set_timing_cache(config, cache_path: Path | None) -> None:
    """Give the build the timing cache at ``cache_path`` (or an empty one).

    A cache from another GPU or TensorRT version is refused by TensorRT (set_timing_cache
    returns False): the build then starts from an empty cache, which replaces the file.
    """
    data = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if data:
        log.warning(
            "%s: TensorRT refused this timing cache (another GPU or TensorRT version); "
            "building with an empty one, which replaces it",
            cache_path,
        )
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return
    raise ModelError("TensorRT could not set an empty timing cache on the builder config")


def _save_timing_cache(config, cache_path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:  # the builder kept none to save: the file is left as it was
        log.warning("%s: TensorRT returned no timing cache after the build; not saved", cache_path)
        return
    write_bytes_atomic(cache_path, bytes(cache.serialize()))


def _write_pair(destination: Path, sidecar: Path, plan, sidecar_text: str) -> None:
    """The plan and its sidecar, each complete under a temporary name, then renamed (plan
    first); the old sidecar goes just before, so it never stands beside the new plan."""
    with atomic_path(sidecar) as sidecar_tmp, atomic_path(destination) as plan_tmp:
        plan_tmp.write_bytes(bytes(plan))
        sidecar_tmp.write_text(sidecar_text, encoding="utf-8")
        sidecar.unlink(missing_ok=True)


def build_engine(
    onnx_path: str | Path,
    destination: str | Path,
    *,
    precision: str = "fp16",
    profiles: tuple[Profile, ...] = DEFAULT_PROFILES,
    timing_cache: str | Path | None = None,
    device_id: int = 0,
) -> tuple[Path, Path]:
    """Build and save ``destination`` (.plan) and its sidecar ``destination.json`` on CUDA
    device ``device_id``.

    Returns (plan path, sidecar path). The timing cache file is read if present (and usable
    on this GPU) and written back (atomically) after the plan and sidecar, so later builds on
    this GPU are fast.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: use one of {PRECISIONS}")
    from nmrladder.export.onnx_export import read_onnx_info, sha256_of

    trt, major = import_tensorrt()
    gpu = device_properties(device_id)
    set_device(device_id)
    onnx_path, destination = Path(onnx_path), Path(destination)
    info = read_onnx_info(onnx_path)
    length_multiple = info.length_multiple
    onnx_bytes = onnx_path.read_bytes()
    strongly_typed = major >= 11 and precision != "fp32"
    if strongly_typed:
        import onnx

        from nmrladder.export.mixed_precision import to_mixed_precision

        onnx_bytes = to_mixed_precision(
            onnx.load_from_string(onnx_bytes), precision
        ).SerializeToString()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, major, strongly_typed))
    _parse(trt, network, logger, onnx_bytes, str(onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if major < 11 and precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif major < 11 and precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)

    input_name = network.get_input(0).name
    for p in profiles:
        shapes = [
            (b, _padded(n, length_multiple))
            for b, n in (
                (p.min_batch, p.min_length),
                (p.opt_batch, p.opt_length),
                (p.max_batch, p.max_length),
            )
        ]
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, *shapes)
        config.add_optimization_profile(profile)

    cache_path = Path(timing_cache) if timing_cache else None
    _set_timing_cache(config, cache_path)

    started = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(
            f"{onnx_path}: TensorRT could not build a {precision} engine (see its log above)"
        )
    build_seconds = time.perf_counter() - started
    sidecar = destination.with_name(destination.name + ".json")
    sidecar_text = json.dumps(
        {
            "tensorrt_version": trt.__version__,
            "gpu_name": gpu["name"],
            "compute_capability": gpu["compute_capability"],
            "precision": precision,
            "strongly_typed": strongly_typed,
            "profiles": [asdict(p) for p in profiles],
            "length_multiple": length_multiple,
            "onnx": onnx_path.name,
            "onnx_sha256": sha256_of(onnx_path),
            "build_seconds": round(build_seconds, 2),
            "artefact": info.to_props(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        indent=2,
    )
    _write_pair(destination, sidecar, plan, sidecar_text)
    if cache_path:
        _save_timing_cache(config, cache_path)
    return destination, sidecar


def _padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def build_engines(onnx_path: Path, out_dir: Path, precisions) -> list[tuple[Path, Path]]:
    """Every precision asked for, sharing one timing cache in ``out_dir``."""
    cache = out_dir / "tensorrt.timing-cache"
    return [
        build_engine(
            onnx_path,
            out_dir / f"{onnx_path.stem}.{precision}.plan",
            precision=precision,
            timing_cache=cache,
        )
        for precision in precisions
    ]
