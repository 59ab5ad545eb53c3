"""The training configuration: one TOML document with every hyper-parameter.

Sections: ``[model]`` (ModelConfig), ``[data]`` (with ``[data.preprocess]``, the options of
``preprocess_ladders``), ``[optim]``, ``[stage_a]``, ``[stage_b]``, ``[run]``. The defaults
live in ``configs/default.toml`` (METHOD 4-6); a user file is merged over them, then
``--set section.key=value`` overrides (values are TOML literals; a bare word is a string).
Unknown keys and bad values raise :class:`InputError` naming every problem.

Torch-free: the model table is checked with ``ModelConfig`` only when torch is importable
(``validate`` imports it lazily), so ``nmrladder train --help`` stays fast.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from nmrladder.runtime.atomic import write_text_atomic
from nmrladder.runtime.errors import InputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.toml"

DEVICES = ("cpu", "cuda")
AUTOCASTS = ("none", "bf16")
SECTIONS = ("model", "data", "optim", "stage_a", "stage_b", "run")
STAGES = ("stage_a", "stage_b")
T_SOURCES = ("t_hat", "true")
CACHES = ("auto", "memory", "disk")
SCHEDULES = ("cosine", "constant")
RUNG_MODES = ("sampled", "all")
REC_LOSSES = ("l1", "smooth_l1")
FUSION_WEIGHTS = ("snr", "t", "top")  # reference.fusion_weights' methods


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path}: not valid TOML ({err})") from None


def default_config() -> dict[str, Any]:
    """The defaults of configs/default.toml as a nested dict (a fresh copy)."""
    return _read_toml(DEFAULT_CONFIG)


def _free_tables() -> dict[tuple[str, ...], tuple[str, ...]]:
    """Tables whose keys are a dataclass's fields (any of them may appear, not only the
    defaults' keys): [model] is ModelConfig (when torch is importable), [data.preprocess]
    PreprocessOptions."""
    from nmrladder.runtime.reference import PreprocessOptions

    tables = {("data", "preprocess"): tuple(f.name for f in fields(PreprocessOptions))}
    try:
        from nmrladder.train.model import ModelConfig
    except ImportError:
        return tables
    tables[("model",)] = tuple(f.name for f in fields(ModelConfig))
    return tables


def _merge(base: dict, update: Mapping, where: tuple[str, ...], problems: list[str]) -> None:
    """Merge update into base in place; unknown keys and table/value mix-ups go to problems."""
    free = _free_tables()
    for key, value in update.items():
        path = (*where, key)
        name = ".".join(path)
        if key not in base:
            allowed = free.get(where)
            if allowed is None or key not in allowed:
                known = sorted(base) if allowed is None else sorted(allowed)
                problems.append(f"unknown key {name!r} (known in [{'.'.join(where)}]: {known})"
                                if where else f"unknown section [{key}] (known: {list(SECTIONS)})")
                continue
            base[key] = copy.deepcopy(value)
        elif isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                problems.append(f"{name} is a table, got {value!r}")
                continue
            _merge(base[key], value, path, problems)
        elif isinstance(value, Mapping):
            problems.append(f"{name} is a value, not a table")
        else:
            base[key] = copy.deepcopy(value)


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"section.key=value"`` -> ((section, key), value); value is a TOML literal, and a word
    that is not one (``top``, ``t_hat``) is taken as a string. (Where the key's default is a
    string, :func:`load_config` keeps the raw text, so ``data.t_source=true`` means "true".)"""
    if "=" not in text:
        raise InputError(f"--set {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    keys = tuple(k.strip() for k in dotted.strip().split("."))
    if len(keys) < 2 or not all(keys):
        raise InputError(f"--set {text!r}: the key must name a section, e.g. optim.lr=1e-3")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return keys, value


def _lookup(config: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """config[k0][k1]...; None where the path does not exist."""
    for key in keys:
        if not isinstance(config, Mapping) or key not in config:
            return None
        config = config[key]
    return config


def _nest(keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    for key in reversed(keys):
        value = {key: value}
    return value


def load_config(
    path: str | os.PathLike | None = None, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """The resolved config: defaults <- the file at path <- each ``--set`` override.

    Returns a nested dict of plain TOML types, validated (see :func:`validate`).
    """
    config = default_config()
    problems: list[str] = []
    if path is not None:
        _merge(config, _read_toml(Path(path)), (), problems)
    if problems:
        raise InputError(f"{path}: invalid config: " + "; ".join(problems))
    return with_overrides(config, overrides)


def with_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of a resolved config with ``section.key=value`` overrides applied, validated."""
    result = copy.deepcopy(dict(config))
    problems: list[str] = []
    for text in overrides:
        keys, value = parse_override(text)
        if isinstance(_lookup(result, keys), str) and not isinstance(value, str):
            value = text.split("=", 1)[1].strip()
        _merge(result, _nest(keys, value), (), problems)
    if problems:
        raise InputError("invalid override: " + "; ".join(problems))
    return validate(result)


# --------------------------------------------------------------------------- validation


def _typed(value: Any, default: Any, name: str, problems: list[str]) -> Any:
    """value converted to the type of default (ints accepted for floats), else a problem."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
        if ok and default:
            item_default = default[0]
            value = [_typed(v, item_default, f"{name}[{i}]", problems) for i, v in enumerate(value)]
    else:
        ok = True
    if not ok:
        problems.append(f"{name} must be a {type(default).__name__}, got {value!r}")
    return value


def _check_types(config: dict, defaults: dict, where: str, problems: list[str]) -> None:
    for key, default in defaults.items():
        name = f"{where}.{key}" if where else key
        if key not in config:
            continue
        if isinstance(default, dict):
            _check_types(config[key], default, name, problems)
        else:
            config[key] = _typed(config[key], default, name, problems)


def _need(ok: bool, message: str, problems: list[str]) -> None:
    if not ok:
        problems.append(message)


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check types (against the defaults) and ranges; returns config (floats normalised).

    Also builds ModelConfig from [model] and PreprocessOptions from [data.preprocess], so
    their own checks run too. Raises InputError listing every problem.
    """
    from nmrladder.runtime.reference import make_options

    problems: list[str] = []
    _check_types(config, default_config(), "", problems)
    if problems:
        raise InputError("invalid config: " + "; ".join(problems))

    multiple = _model_multiple(config, problems)
    data = config["data"]
    _need(data["crop_length"] > 0 and multiple is not None and data["crop_length"] % multiple == 0,
          f"data.crop_length={data['crop_length']} must be a positive multiple of the model's "
          f"length multiple ({multiple}: stem_stride * 2**depth)", problems)
    _need(data["batch_size"] >= 1, "data.batch_size must be >= 1", problems)
    _need(0.0 <= data["peak_crop_fraction"] <= 1.0, "data.peak_crop_fraction must be in [0, 1]",
          problems)
    _need(data["t_source"] in T_SOURCES, f"data.t_source must be one of {T_SOURCES}", problems)
    _need(data["cache"] in CACHES, f"data.cache must be one of {CACHES}", problems)
    _need(data["memory_limit_mb"] > 0, "data.memory_limit_mb must be > 0", problems)
    _need(data["prepare_chunk"] >= 1, "data.prepare_chunk must be >= 1", problems)
    _need(data["val_batches"] >= 1, "data.val_batches must be >= 1", problems)
    _need(data["preprocess"]["weights"] in FUSION_WEIGHTS,
          f"data.preprocess.weights must be one of {FUSION_WEIGHTS}", problems)
    try:
        make_options(**data["preprocess"])
    except (InputError, TypeError) as err:
        problems.append(f"data.preprocess: {err}")

    optim = config["optim"]
    _need(optim["lr"] > 0, "optim.lr must be > 0", problems)
    _need(optim["weight_decay"] >= 0, "optim.weight_decay must be >= 0", problems)
    betas = optim["betas"]
    _need(len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas),
          "optim.betas must be two numbers in [0, 1)", problems)
    _need(optim["eps"] > 0, "optim.eps must be > 0", problems)
    _need(optim["warmup_epochs"] >= 0 and optim["warmup_steps"] >= 0,
          "optim.warmup_epochs and optim.warmup_steps must be >= 0", problems)
    _need(optim["schedule"] in SCHEDULES, f"optim.schedule must be one of {SCHEDULES}", problems)
    _need(0.0 <= optim["min_lr_ratio"] <= 1.0, "optim.min_lr_ratio must be in [0, 1]", problems)
    _need(optim["grad_clip"] >= 0, "optim.grad_clip must be >= 0 (0: off)", problems)

    for stage in STAGES:
        s = config[stage]
        _need(s["epochs"] >= 0 and s["steps"] >= 0, f"{stage}: epochs and steps must be >= 0",
              problems)
        for key in ("peak_weight", "base_weight", "l1", "l2", "l3", "l4", "rec_other",
                    "late_peak_weight", "late_l2", "under_weight", "line_top_points"):
            _need(math.isfinite(s[key]) and s[key] >= 0, f"{stage}.{key} must be >= 0", problems)
        _need(s["rungs"] in RUNG_MODES, f"{stage}.rungs must be one of {RUNG_MODES}", problems)
        _need(s["rec_loss"] in REC_LOSSES, f"{stage}.rec_loss must be one of {REC_LOSSES}",
              problems)
        _need(s["huber_delta"] > 0, f"{stage}.huber_delta must be > 0", problems)
        extra = s["extra_rungs"]
        _need(len(extra) == 2 and 0 <= extra[0] <= extra[1],
              f"{stage}.extra_rungs must be [lo, hi] with 0 <= lo <= hi", problems)
        for key in ("curriculum_fraction", "late_fraction"):
            _need(0.0 <= s[key] <= 1.0, f"{stage}.{key} must be in [0, 1]", problems)
    _need(any(config[s]["epochs"] > 0 or config[s]["steps"] > 0 for s in STAGES),
          "at least one stage needs epochs or steps > 0", problems)

    run = config["run"]
    _need(run["threads"] >= 1, "run.threads must be >= 1", problems)
    _need(run["device"] in DEVICES, f"run.device must be one of {DEVICES}", problems)
    _need(run["autocast"] in AUTOCASTS, f"run.autocast must be one of {AUTOCASTS}", problems)
    for key in ("checkpoint_every", "keep_checkpoints", "val_every"):
        _need(run[key] >= 0, f"run.{key} must be >= 0", problems)
    if problems:
        raise InputError("invalid config: " + "; ".join(problems))
    return config


def _model_multiple(config: dict, problems: list[str]) -> int | None:
    """Validate [model] with ModelConfig (needs torch) and complete it with the defaults of
    the fields it omits, so that RUN/config.toml's [model] is exactly ModelConfig.to_dict().
    Returns the model's length multiple (None when invalid)."""
    model = config["model"]
    try:
        from nmrladder.train.model import ModelConfig
    except ImportError:  # torch missing: check the depth only
        depth = model.get("depth")
        return 2**depth if isinstance(depth, int) and depth >= 1 else None
    try:
        resolved = ModelConfig.from_dict(model)
    except (InputError, TypeError) as err:
        problems.append(f"model: {err}")
        return None
    config["model"] = resolved.to_dict()
    return resolved.length_multiple


# --------------------------------------------------------------------------- views


def model_config(config: Mapping[str, Any]):
    """The ModelConfig of config's [model] table."""
    from nmrladder.train.model import ModelConfig

    return ModelConfig.from_dict(config["model"])


def preprocess_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword options for preprocess_ladders (lists become tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v
            for k, v in config["data"]["preprocess"].items()}


# --------------------------------------------------------------------------- TOML writer


def _literal(value: Any, name: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (JSON escapes are TOML escapes)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v, name) for v in value) + "]"
    raise InputError(f"config value {name}={value!r}: no TOML form for {type(value).__name__}")


def dumps(config: Mapping[str, Any]) -> str:
    """TOML text for a nested dict of bool/int/float/str/lists (None values are left out,
    TOML has no null); ``tomllib.loads(dumps(c)) == c`` for such dicts."""
    lines: list[str] = []

    def table(d: Mapping[str, Any], path: tuple[str, ...]) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, Mapping) and v is not None}
        if path:
            lines.append(f"[{'.'.join(path)}]")
        lines.extend(f"{k} = {_literal(v, '.'.join((*path, k)))}" for k, v in scalars.items())
        if path:
            lines.append("")
        for k, v in d.items():
            if isinstance(v, Mapping):
                table(v, (*path, k))

    table(config, ())
    return "\n".join(lines).rstrip() + "\n"


def write_config(config: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write config as TOML atomically; returns the path."""
    header = "# Resolved nmrladder training config (defaults <- --config <- --set).\n\n"
    write_text_atomic(path, header + dumps(config))
    return Path(path)
