"""The generated blocks of the docs: text between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` that a script rewrites from its results JSON (never pasted)."""

from __future__ import annotations

from pathlib import Path

from nmrladder.runtime.atomic import write_text_atomic

__all__ = ["replace_block"]


def replace_block(doc: Path, name: str, body: str) -> None:
    """Replace the block ``name`` of ``doc`` by ``body`` (the file written atomically)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = doc.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{doc}: no {begin} ... {end} block to fill")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text_atomic(doc, f"{head}{begin}\n{body}\n{end}{tail}")
