"""Bruker parameter files (acqus, procs: JCAMP-DX text), read so that every read ends.

nmrglue 0.12's parser (nmrglue.bruker.parse_jcamp_file, behind bruker.read_jcamp) reads on
at the end of the file while a value is open: a ``<...>`` string cut off before its ``>``, or
an array shorter than its ``(0..n)`` count, makes it loop forever on the empty string that
readline returns at the end (docs/formats.md, "Known upstream issues"). An interrupted copy
leaves exactly such a file. So the text is checked before nmrglue parses it (the closing
``##END=`` line present, every string closed before the next parameter), and nmrglue's own
parser then reads it from a stream that raises instead of returning the end of the file a
second time: whatever the parser's loops, the read ends, with an InputError naming the file.

Importing this module imports nmrglue (about a second).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import nmrglue as ng

from nmrladder.runtime.errors import InputError
from nmrladder.runtime.spectrum import nmrglue_warnings, one_line


class _ReadPastEnd(Exception):
    """The parser asked for more text after the end of the file had been reported."""


class _EndOnce(io.StringIO):
    """A text stream (universal newlines, as a file nmrglue opens) whose readline reports
    the end of the text once and raises if asked again."""

    def __init__(self, text: str):
        super().__init__(text, newline=None)
        self.ended = False  # the end has been reported
        self.overrun = False  # and asked for again (nmrglue may swallow the exception)

    def readline(self, size: int = -1) -> str:
        line = super().readline(size)
        if line == "":
            if self.ended:
                self.overrun = True
                raise _ReadPastEnd
            self.ended = True
        return line


def _decoded(data: bytes) -> str:
    """The text as nmrglue's read_jcamp decodes it: UTF-8, else cp1252 (TopSpin writes
    ASCII; older versions Latin text); bytes neither can decode become U+FFFD."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _check_complete(path: Path, lines: list[str]) -> None:
    """A parameter file ends with its ##END= line, and every ``<`` string closes before the
    next ``##`` line (nmrglue's parser would read on through the following parameters, or
    past the end). Text without any ``##`` line is left to the parser (it finds nothing)."""
    if not any(line.startswith("##") for line in lines):
        return
    open_at = None  # the line number of a string not closed yet
    for number, line in enumerate(lines, start=1):
        if open_at is not None:
            if line.startswith("##"):
                raise InputError(
                    f"{path}: corrupt: the <...> string of line {open_at} is not closed"
                    f" before the next parameter (line {number})"
                )
            if ">" in line:
                open_at = None
            continue
        # nmrglue's own test: a "<" anywhere in a parameter's value opens a string
        if line.startswith("##$") and "=" in line:
            value = line.split("=", 1)[1]
            if "<" in value and ">" not in value:
                open_at = number
    if open_at is not None or not any(line.startswith("##END=") for line in lines):
        inside = "" if open_at is None else f" inside the <...> string of line {open_at}"
        raise InputError(
            f"{path}: cut off{inside}: no closing ##END= line (an interrupted copy?);"
            " copy the file again"
        )


def read_parameter_file(path: Path, notes: list[str] | None = None) -> tuple[dict, str]:
    """A Bruker parameter file parsed by nmrglue (its dictionary, as bruker.read_jcamp gives
    it) and the file's line ending ("\\r\\n" or "\\n"), or an InputError naming the file.

    nmrglue's warnings (a line it could not parse) go to ``notes`` with the file's name.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror or err})") from err
    if not data:
        raise InputError(f"{path}: the file is empty")
    text = _decoded(data)
    stream = _EndOnce(text)
    _check_complete(path, stream.getvalue().split("\n"))
    with nmrglue_warnings() as messages:
        try:
            params = ng.bruker.parse_jcamp_file(stream, {"_coreheader": [], "_comments": []})
        except _ReadPastEnd:
            params = None
        except Exception as err:  # nmrglue raises anything on corrupt input
            raise InputError(
                f"{path}: nmrglue could not read the parameter file"
                f" ({type(err).__name__}: {one_line(err)})"
            ) from err
    if params is None or stream.overrun:
        raise InputError(
            f"{path}: corrupt: a value runs on past the end of the file"
            " (an unclosed <...> string or an array shorter than its count)"
        )
    if notes is not None:
        notes.extend(f"{path}: {message}" for message in messages)
    newline = "\r\n" if b"\r\n" in data else "\n"
    return params, newline


def is_number(value) -> bool:
    """Whether a parsed parameter is a finite number (nmrglue gives text for a damaged value)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
