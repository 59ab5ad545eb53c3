"""The one small exception hierarchy of nmrladder.

Every error a user can cause names the input (file, array, option) and the problem.
"""


class NmrLadderError(Exception):
    """Base of every error raised on purpose by nmrladder."""


class InputError(NmrLadderError, ValueError):
    """Bad input data or options: NaN/Inf, wrong shape or length, empty or truncated file."""


class ModelError(NmrLadderError):
    """A model artefact is missing, corrupt, or does not match this runtime.

    The message says what to rebuild.
    """


class BackendUnavailable(NmrLadderError, ImportError):
    """An optional backend (TensorRT, onnxruntime-gpu, torch, Ray) is missing or has no device."""

    def __init__(self, backend: str, reason: str, install_hint: str | None = None):
        self.backend = backend
        self.reason = reason
        self.install_hint = install_hint
        msg = f"backend {backend!r} is unavailable: {reason}"
        if install_hint:
            msg += f" (install with: {install_hint})"
        super().__init__(msg)
