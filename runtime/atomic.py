"""Atomic writes: nothing is ever half-written.

Every output goes to a temporary name in the destination's directory and is renamed over
the destination only once complete (os.replace is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

# Temporary names: the process id and a counter make them unique among this machine's
# writers, and O_EXCL makes a clash (another host on a shared folder, a stale temporary)
# a retry, never a shared file. Cheaper than tempfile.mkstemp's random names, and created
# with the permissions of an ordinary new file (mkstemp's are 0600 and need a chmod).
_temporary_numbers = itertools.count()
_CLASH_RETRIES = 100


def _temporary_beside(destination: Path, suffix: str | None) -> tuple[int, Path]:
    """A new file beside ``destination`` (its directory made if needed): ``(fd, path)``,
    the fd open for writing."""
    suffix = destination.suffix if suffix is None else suffix
    for _ in range(_CLASH_RETRIES):
        tmp = destination.with_name(
            f".{destination.name}.tmp-{os.getpid()}-{next(_temporary_numbers)}{suffix}"
        )
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:
            # Only the first output of a new folder gets here: a batch job's other outputs
            # are spared a mkdir and a stat each.
            destination.parent.mkdir(parents=True, exist_ok=True)
    raise FileExistsError(f"{destination}: no free temporary name beside it")


@contextlib.contextmanager
def _renamed_on_success(tmp: Path, destination: Path) -> Iterator[None]:
    """Rename ``tmp`` over ``destination`` when the block succeeds; remove it when it fails."""
    try:
        yield
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it there on success.

    On an exception the temporary file is removed and the destination is left untouched.
    ``suffix`` defaults to the destination's own (some writers choose a format by suffix).
    """
    destination = Path(destination)
    fd, tmp = _temporary_beside(destination, suffix)
    os.close(fd)
    with _renamed_on_success(tmp, destination):
        yield tmp


def write_bytes_atomic(destination: str | os.PathLike, *buffers) -> None:
    """Write ``buffers`` (bytes or any buffer, one after another) to ``destination`` atomically."""
    destination = Path(destination)
    fd, tmp = _temporary_beside(destination, None)
    with _renamed_on_success(tmp, destination):
        try:
            views = [memoryview(data).cast("B") for data in buffers]
            while views:  # os.writev may write less than asked
                written = os.writev(fd, views)
                while views and written >= len(views[0]):
                    written -= len(views.pop(0))
                if views:
                    views[0] = views[0][written:]
        finally:
            os.close(fd)  # complete before the rename


def write_text_atomic(destination: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``destination`` atomically."""
    write_bytes_atomic(destination, text.encode("utf-8"))
