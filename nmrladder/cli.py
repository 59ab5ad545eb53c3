"""The one console entry point: ``nmrladder VERB ...``.

Verbs live in torch-free ``*_cli`` modules that define ``DESCRIPTION``, ``EXAMPLES``,
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports (torch, onnx) happen
inside ``run``, so ``nmrladder VERB --help`` stays fast and only the verb asked for is loaded.

A verb that ends with another package's work gets it from here, the one place above every
package (HOOKS): ``nmrladder train --export`` exports the trained run through the hook this
module lends it, because training never imports the exporter (export -> train -> runtime,
docs/architecture.md).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from nmrladder import __version__

# verb -> (module defining it, one-line summary)
VERBS: dict[str, tuple[str, str]] = {
    "simulate": ("nmrladder.train.simulate_cli", "simulate SNR ladders with known truth (HDF5)"),
    "train": ("nmrladder.train.train_cli", "train the denoiser on SNR ladders (two stages)"),
    "evaluate": ("nmrladder.train.evaluate_cli", "metrics of METHOD 7 against baselines"),
    "ablate": ("nmrladder.train.ablate_cli", "train METHOD 8's variants on one budget"),
    "denoise": ("nmrladder.runtime.denoise_cli", "denoise NMR files or SNR-ladder series in batch"),
    "export": ("nmrladder.export.export_cli", "ONNX / torch program / TensorRT artefacts + parity"),
    "quantize": ("nmrladder.export.quantize_cli", "int8 copy of an ONNX model for CPUs"),
    "bench": ("nmrladder.runtime.bench_cli", "latency / throughput suites against the baselines"),
    "demo": ("nmrladder.demo", "run the whole product on the embedded default"),
}


def _export_trained_run(run_dir: Path, out: Path, name: str) -> None:
    """``nmrladder train --export DIR``: the trained run to DIR/NAME.onnx, parity checked."""
    from nmrladder.export.exporter import export_run

    summary = export_run(run_dir, out, formats=("onnx",), name=name)
    print(f"exported:      {summary.onnx}; {summary.parity.summary()}")


#: verb -> argument defaults that lend it another package's step (the module docstring).
HOOKS: dict[str, dict] = {"train": {"export_hook": _export_trained_run}}


def _build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nmrladder",
        description="Denoise 1D NMR spectra learned from SNR ladders.",
        epilog="Run 'nmrladder VERB --help' for a verb's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"nmrladder {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module_name, summary) in VERBS.items():
        if verb != selected:
            sub.add_parser(verb, help=summary)
            continue
        module = importlib.import_module(module_name)
        verb_parser = sub.add_parser(
            verb,
            help=summary,
            description=module.DESCRIPTION,
            epilog="examples:\n" + module.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=module.run, **HOOKS.get(verb, {}))
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning as one plain line, ``warning: <message>``: a user of the command line
    needs what happened (a reader's note names its file), not where in the source it was
    issued. Installed by :func:`main` for the verb's run only; the library leaves Python's
    own display to its callers."""
    text = " ".join(str(message).split())
    stream = sys.stderr if file is None else file
    try:
        stream.write(f"warning: {text}\n")
    except (OSError, ValueError):
        pass  # no stderr to show it on (closed, or a GUI without one): as Python's own does


def _interrupted(verb: str, err: KeyboardInterrupt) -> int:
    """Ctrl-C: one line (with the verb's hint on what was kept, if it gave one), exit 130.

    A verb's worker threads stop before it returns (the batch job waits for them); if one
    still runs (a second Ctrl-C cut that wait short), the process ends here, at once:
    Python would otherwise finalise under a thread inside native code (ONNX Runtime), which
    aborts the process.
    """
    import os
    import threading

    hint = f": {err}" if str(err) else ""
    print(f"nmrladder {verb}: interrupted{hint}", file=sys.stderr)
    workers = [t for t in threading.enumerate() if t.name.startswith("nmrladder-")]
    try:
        for thread in workers:
            thread.join(timeout=1.0)  # a thread that has ended its work is gone at once
        left = [t for t in workers if t.is_alive()]
    except KeyboardInterrupt:
        left = workers
    if left:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return 130


def main(argv: list[str] | None = None) -> int:
    import warnings

    from nmrladder.runtime.errors import NmrLadderError

    argv = sys.argv[1:] if argv is None else list(argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = _build_parser(selected if selected in VERBS else None)
    args = parser.parse_args(argv)
    shown_by_python = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args._run(args) or 0)
    except NmrLadderError as err:
        print(f"nmrladder {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        return _interrupted(args.verb, err)
    finally:
        warnings.showwarning = shown_by_python


if __name__ == "__main__":
    sys.exit(main())
