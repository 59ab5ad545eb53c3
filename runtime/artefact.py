"""What an exported artefact says about itself, and the runtime's check of it.

An ONNX artefact carries its description in ``metadata_props`` (keys prefixed
``nmrladder.``); a TensorRT engine stays a pure plan file with a sidecar JSON that repeats
these fields plus the engine's own (TensorRT version, GPU, precision, profiles). The export
side writes them with :func:`onnx_metadata_props`; the runtime reads them back with
:func:`ArtefactInfo.from_props` and refuses an artefact it cannot run correctly, saying what
to rebuild.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nmrladder import __version__
from nmrladder.runtime.errors import ModelError
from nmrladder.runtime.scaling import INPUT_SCALING

PREFIX = "nmrladder."
#: Bumped when the meaning of the metadata changes; the runtime refuses other versions.
FORMAT_VERSION = 1
INPUT_NAME = "spectra"
OUTPUT_NAME = "denoised"

INPUT_SCALING_DOC = (
    "before: per spectrum, center = median and sigma = MAD noise of the baseline "
    "(nmrladder.runtime.preprocess.robust_scale_batch), z = (x - center) / sigma, zero-padded "
    "on the right to a multiple of length_multiple; after: crop to the input length, "
    "y = center + sigma * output"
)

REBUILD_HINT = "re-export it with this nmrladder version: nmrladder export RUN --out DIR"


@dataclass(frozen=True)
class ArtefactInfo:
    """The fields every nmrladder artefact records (see docs/export.md)."""

    format_version: int
    toolkit_version: str
    model_config: dict
    depth: int
    length_multiple: int
    min_length: int
    max_length: int
    input_scaling: str
    opset: int
    torch_version: str
    onnx_version: str
    checkpoint_sha256: str
    training_data: str
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    input_scaling_doc: str = INPUT_SCALING_DOC
    extra: dict = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX metadata_props (dicts as JSON)."""
        props = {}
        for key, value in asdict(self).items():
            props[PREFIX + key] = json.dumps(value) if isinstance(value, dict) else str(value)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "artefact") -> ArtefactInfo:
        """Parse metadata_props; ModelError naming ``source`` when they are missing or foreign."""
        ours = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        if not ours:
            raise ModelError(
                f"{source}: not an nmrladder artefact (no '{PREFIX}*' metadata); {REBUILD_HINT}"
            )
        try:
            version = int(ours["format_version"])
        except (KeyError, ValueError) as err:
            raise ModelError(
                f"{source}: metadata without a valid format_version; {REBUILD_HINT}"
            ) from err
        if version != FORMAT_VERSION:
            raise ModelError(
                f"{source}: metadata format {version}, this runtime reads format {FORMAT_VERSION}; "
                f"{REBUILD_HINT}"
            )
        typed = {
            "format_version": version,
            "model_config": json.loads,
            "extra": json.loads,
            "depth": int,
            "length_multiple": int,
            "min_length": int,
            "max_length": int,
            "opset": int,
        }
        values = {}
        try:
            for name in cls.__dataclass_fields__:
                if name not in ours:
                    if name in ("extra", "input_name", "output_name", "input_scaling_doc"):
                        continue
                    raise KeyError(name)
                convert = typed.get(name, str)
                values[name] = convert(ours[name]) if callable(convert) else convert
        except (KeyError, ValueError) as err:
            raise ModelError(
                f"{source}: metadata field {err} missing or malformed; {REBUILD_HINT}"
            ) from err
        info = cls(**values)
        info.check_runtime_compatible(source)
        return info

    def check_runtime_compatible(self, source: str = "artefact") -> None:
        """Refuse what this runtime would run wrongly."""
        if self.input_scaling != INPUT_SCALING:
            raise ModelError(
                f"{source}: built for input scaling {self.input_scaling!r}, this runtime "
                f"implements {INPUT_SCALING!r}; {REBUILD_HINT}"
            )
        if self.length_multiple < 1 or self.max_length < self.min_length:
            raise ModelError(
                f"{source}: inconsistent lengths (multiple {self.length_multiple}, "
                f"min {self.min_length}, max {self.max_length}); {REBUILD_HINT}"
            )

    def check_length(self, length: int, source: str = "input") -> None:
        """InputError-like refusal of a spectrum length the artefact was not exported for."""
        from nmrladder.runtime.errors import InputError

        if not self.min_length <= length <= self.max_length:
            raise InputError(
                f"{source}: length {length} is outside this model's range "
                f"[{self.min_length}, {self.max_length}] points"
            )


def current_toolkit_version() -> str:
    return __version__


def artefact_fingerprint(path) -> str:
    """``"<file name> <first 16 hex of its sha256>"``: which artefact made an output, as the
    batch job's manifest records it (a resume redoes outputs another artefact made)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name} {digest.hexdigest()[:16]}"
