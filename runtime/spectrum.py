"""The Spectrum record every reader returns, the checks every reader applies to its
intensities, and the notes a reader leaves for the user.

Shared by nmrladder.runtime.io (dispatch, plain formats) and the NMR format modules
(formats, jcamp, param_files: nmrglue), so that none imports another's internals.

Notes: a reader that reads a file but changes or doubts something the user should know about
(a complex array of which the real part is taken, a warning of nmrglue's) adds one plain line
that starts with the file's name to ``Spectrum.notes``; ``read_spectrum`` also issues each as
a :class:`ReaderNote` warning, for callers that never look at the notes. A program that shows
the notes itself (the command line) ignores ReaderNote warnings.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nmrladder.runtime.errors import InputError

# nmrglue warnings that say nothing a user needs: JCAMP-DX allows an empty value, and
# TopSpin's exports hold several ($RELAX).
_QUIET_NMRGLUE_WARNINGS = ("JCAMP-DX key without value",)
# warnings.catch_warnings changes process-wide state, and the batch job reads in threads:
# one block of caught warnings at a time.
_CATCHING = threading.RLock()


class ReaderNote(UserWarning):
    """A note of a reader (the file name, then what was done), issued as a warning."""


@dataclass
class Spectrum:
    """A 1D real spectrum: intensities [L] (float32), its ppm axis [L] or None, and metadata.

    ``meta`` keeps what is needed to write the spectrum back in its own format
    (e.g. nmrglue's universal dictionary and the source path). ``notes`` holds the reader's
    notes for the user, one line each, each starting with the file's name.
    """

    intensities: np.ndarray
    ppm: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    source: str = ""
    format: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.intensities.size)


def checked_intensities(values, source: str, notes: list[str] | None = None) -> np.ndarray:
    """Finite, non-empty, 1D float32 intensities, or an InputError naming ``source``.

    Complex values give their real part (nmrladder denoises the real, phased spectrum) and a
    note in ``notes`` (when given) that says so.
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "biufc":  # text, records, dates: not intensities
        raise InputError(f"{source}: values of type {arr.dtype} are not intensities")
    if arr.size == 0:
        raise InputError(f"{source}: the spectrum is empty")
    if np.iscomplexobj(arr):
        arr = arr.real
        if notes is not None:
            notes.append(
                f"{source}: complex values; the real part is used (a phased spectrum's"
                " absorption; a complex FID must be Fourier transformed and phased first)"
            )
    arr = np.squeeze(arr)
    if arr.ndim != 1:
        raise InputError(f"{source}: expected a 1D spectrum, got shape {np.shape(values)}")
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(
            f"{source}: {int(bad.sum())} NaN/Inf value(s), first at point {int(np.argmax(bad))}"
        )
    return arr


def checked_ppm(ppm, intensities: np.ndarray, source: str | Path) -> np.ndarray | None:
    """A finite ppm axis as long as the intensities (float64), or None."""
    if ppm is None:
        return None
    ppm = np.asarray(ppm, dtype=np.float64).reshape(-1)
    if ppm.shape != intensities.shape:
        raise InputError(
            f"{source}: ppm axis has {ppm.size} points, intensities {intensities.size}"
        )
    if not np.all(np.isfinite(ppm)):
        raise InputError(f"{source}: the ppm axis has NaN/Inf values")
    return ppm


def one_line(text) -> str:
    """``text`` with every run of white space (newlines included) made one space."""
    return " ".join(str(text).split())


@contextlib.contextmanager
def nmrglue_warnings() -> Iterator[list[str]]:
    """Collect the warnings nmrglue issues inside the block: the list yielded holds them, one
    line each, once the block has ended. A warning from anywhere else that arrives meanwhile
    (another thread) is issued again afterwards, where it came from."""
    messages: list[str] = []
    with _CATCHING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    for item in caught:
        if "nmrglue" in Path(item.filename).parts:
            messages.append(one_line(item.message))
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def call_nmrglue(source: str | Path, what: str, notes: list[str], func, *args, **kwargs):
    """Run an nmrglue function: an exception becomes an InputError naming ``source``, and
    each warning a note in ``notes`` (one line, the file name in front)."""
    with nmrglue_warnings() as messages:
        try:
            result = func(*args, **kwargs)
        except Exception as err:  # nmrglue raises anything on corrupt input
            raise InputError(
                f"{source}: nmrglue could not read {what} ({type(err).__name__}: {one_line(err)})"
            ) from err
    notes.extend(
        f"{source}: {message}"
        for message in messages
        if not message.startswith(_QUIET_NMRGLUE_WARNINGS)
    )
    return result


def issue_notes(spectrum: Spectrum, stacklevel: int = 2) -> None:
    """Issue each of the spectrum's notes as a ReaderNote warning (``stacklevel`` as for
    warnings.warn, counted from the caller of this function)."""
    for note in spectrum.notes:
        warnings.warn(note, ReaderNote, stacklevel=stacklevel + 1)
