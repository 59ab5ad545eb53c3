"""``nmrladder denoise``: denoise NMR files (or SNR-ladder series) in batch."""

from __future__ import annotations

import sys
from pathlib import Path

DESCRIPTION = (
    "Denoise 1D NMR spectra: Bruker processed data (pdata/N/1r; written back as a new procno), "
    "NMRPipe 1D, JCAMP-DX, .npy/.npz, HDF5 and two-column CSV (ppm, intensity). Folders are "
    "searched for spectra. Reading, scaling and writing overlap with inference; outputs are "
    "written atomically and recorded in OUT/manifest.jsonl, so an interrupted run continues "
    "with --resume. With --engine ray, the files are shared among Ray actors on this machine "
    "or on a cluster (--address; see docs/scale-out.md), with the same outputs and manifest. "
    "With --series, each input is an SNR ladder (a folder of rung files sorted "
    "by name, rung 0 the lowest SNR, or a 2D .npy/.npz [R, L]) and the output is the fused, "
    "denoised spectrum with T_hat and the per-rung SNR. Every output's removal report (the "
    "strength it got, the largest line-shaped structure the network removed, FLAG when it "
    "passes the threshold) is in the table and the manifest; --strength sets the dial from "
    "the input (0) to the network's output (1) or 'auto' per region, --confidence writes "
    "each point's estimated error beside the output (docs/self-check.md). "
    "The exit code is 1 when any input failed."
)
EXAMPLES = """  nmrladder denoise data/exp_10 data/exp_11 --out denoised        # Bruker experiments
  nmrladder denoise spectra/ --out denoised --plot --batch-size 16  # a folder of files
  nmrladder denoise spectra/ --out denoised --residual-lb           # keep weak lines, integrals
  nmrladder denoise spectra/ --out d --strength auto --confidence   # self-checked, with a band
  nmrladder denoise spectra/ --out denoised --resume                # continue an interrupted run
  nmrladder denoise ladders/sample_A --series --out fused           # one SNR ladder per input
  nmrladder denoise in.ft1 --out out --model models/cpu/model.onnx --backend ort --threads 2
  nmrladder denoise spectra/ --out denoised --threads 8 --streams 4  # 4 batches x 2 threads
  nmrladder denoise /nfs/spectra --out denoised --file-threads 4    # overlap slow storage
  nmrladder denoise /shared/spectra --out /shared/denoised --engine ray --address auto
"""


def add_arguments(parser) -> None:
    from nmrladder.runtime.confidence import DEFAULT_COPIES
    from nmrladder.runtime.residual import DEFAULT_FACTOR, factor_argument
    from nmrladder.runtime.sessions import BACKENDS

    parser.add_argument("inputs", nargs="+", type=Path, help="files or folders of spectra")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="artefact (.onnx, .plan, .pt2) or export folder; with the ort backend a folder's "
        "model.int8.onnx is taken before its model.onnx (default: the shipped model, int8 "
        "for the ort backend, float32 for the others)",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="ort", help="inference backend (default: ort)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="spectra per inference batch (default: 8)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: all cores; with --engine ray: per worker, default 1)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=None,
        help="batches run side by side, the threads split among them (default with the ort "
        "backend: one per thread, at most 8: faster than one batch on every core; else 1)",
    )
    parser.add_argument(
        "--file-threads",
        type=int,
        default=None,
        help="threads that read and write the files (default 1: the fastest on local disks; "
        "more overlap the waits of network storage)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: a pool of Ray actors (pip install 'nmrladder[ray]')",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --engine ray: the Ray cluster to join ('auto' or HOST:PORT; "
        "default: start a local Ray instance)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="with --engine ray: Ray actors (default: CPUs / threads, or one per GPU)",
    )
    parser.add_argument(
        "--series", action="store_true", help="each input is an SNR ladder; fuse it"
    )
    parser.add_argument(
        "--residual-lb",
        type=factor_argument,
        nargs="?",
        const=DEFAULT_FACTOR,
        default=None,
        metavar="FACTOR",
        help="the residual step: re-fit the amplitudes of what the network kept to the input, "
        "then give back, line-broadened, what it removed (LB = FACTOR x the output's linewidth; "
        f"{DEFAULT_FACTOR:g} without FACTOR): weak lines, full heights and integrals, more lines "
        "found, at the price of a noisier baseline (docs/training.md, 'Residual line "
        "broadening'); --residual-lb 0.5 is --strength 0.5 (give one of the two)",
    )
    parser.add_argument(
        "--strength",
        type=strength_argument,
        default=None,
        metavar="S|auto",
        help="the strength dial: 0 gives the input back bit for bit, 1 the network's output "
        "(the default), values between give back what the network removed, line-broadened; "
        "0.5 is --residual-lb 0.5. 'auto' chooses per region, where what was removed is not "
        "noise-like, with no truth (docs/self-check.md)",
    )
    parser.add_argument(
        "--confidence",
        type=copies_argument,
        nargs="?",
        const=DEFAULT_COPIES,
        default=None,
        metavar="K",
        help="write each output point's estimated error sigma beside it: an array "
        "'confidence' in .npz/HDF5 outputs, else <output stem>_confidence.npy "
        "(confidence.npy in a Bruker procno); from K re-noised copies, "
        f"{DEFAULT_COPIES} without K: the network runs K more times. --plot draws it as "
        "output +- 2 sigma. Local engine only (not --series, not --engine ray)",
    )
    parser.add_argument("--plot", action="store_true", help="write PNG overlays to OUT/plots")
    parser.add_argument(
        "--resume", action="store_true", help="skip inputs already in OUT/manifest.jsonl"
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="write beside the sources (Bruker: a new procno in the source experiment)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def strength_argument(text: str) -> float | str:
    """argparse type of ``--strength``: a number in [0, 1] or "auto" (strength.checked_strength)."""
    import argparse

    from nmrladder.runtime.errors import InputError
    from nmrladder.runtime.strength import checked_strength

    try:
        return checked_strength(text, "--strength")
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def copies_argument(text: str) -> int:
    """argparse type of the optional ``--confidence [K]``: a whole number >= 1; a word that is
    not one (an input path put right after the flag, most often) says how to give it."""
    import argparse

    from nmrladder.runtime.confidence import checked_copies
    from nmrladder.runtime.errors import InputError

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of copies (a whole number >= 1). The flag takes an "
            "optional number: give one (--confidence 4), or put the flag after the input paths"
        ) from None
    try:
        return checked_copies(value, "--confidence")
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args) -> int:
    from nmrladder.runtime.errors import InputError

    check_options(args)
    for option, value in (
        ("--streams", args.streams),
        ("--file-threads", args.file_threads),
        ("--confidence", args.confidence),
    ):
        if value is not None and (args.engine == "ray" or args.series):
            raise InputError(
                f"{option} goes with the local engine's batch job (no --series, no ray)"
            )
    try:
        if args.engine == "ray":
            summary = _run_on_ray(args)
        elif args.address is not None or args.workers is not None:
            raise InputError("--address and --workers go with --engine ray")
        else:
            summary = _run_locally(args)
    except KeyboardInterrupt:
        from nmrladder.runtime.manifest import MANIFEST

        # The job stopped its threads and kept every finished output in the manifest.
        raise KeyboardInterrupt(
            f"the finished outputs are recorded in {args.out / MANIFEST}; "
            "run the same command with --resume to do the rest"
        ) from None
    print(summary.table())
    ok = sum(r.status == "ok" for r in summary.results)
    skipped = sum(r.status == "skipped" for r in summary.results)
    flagged = sum(r.flagged for r in summary.results)
    print(
        f"{ok} denoised, {skipped} already done, {len(summary.failed)} failed "
        f"in {summary.wall_seconds:.1f} s -> {args.out}"
        + (f"; {flagged} flagged (FLAG: the network removed a line-shaped structure)"
           if flagged else "")
    )
    for failure in summary.failed:
        print(f"nmrladder denoise: failed: {failure.message}", file=sys.stderr)  # names the input
    for reason, calls in summary.fallbacks.items():
        print(
            f"nmrladder denoise: note: preprocessing ran on the NumPy reference, slower, "
            f"{calls} time(s): {reason}",
            file=sys.stderr,
        )
    return 1 if summary.failed else 0


def check_options(args) -> None:
    """One-line errors for options that cannot work, before any model is loaded or folder
    made: counts below one, an output folder that is a file, the torch backend on an
    artefact that is not a torch program."""
    from nmrladder.runtime.errors import InputError

    counts = (
        ("--batch-size", args.batch_size),
        ("--threads", args.threads),
        ("--streams", args.streams),
        ("--file-threads", args.file_threads),
        ("--workers", args.workers),
    )
    for option, value in counts:
        if value is not None and value < 1:
            raise InputError(f"{option} {value}: give a whole number of at least 1")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: is a file, not a folder; name a folder for outputs")
    if args.strength is not None and args.residual_lb is not None:
        raise InputError(
            f"--strength {args.strength} and --residual-lb {args.residual_lb:g}: give one "
            "(--residual-lb F <= 0.5 is --strength F / (F + 0.5); --residual-lb 0.5 is "
            "--strength 0.5)"
        )
    if args.backend == "torch":
        _check_torch_model(args.model)


def _check_torch_model(model: Path | None) -> None:
    """The torch backend runs an exported torch program (.pt2): refuse anything else here,
    before torch is imported and tries to load it."""
    from nmrladder.runtime.errors import InputError

    hint = "export one with nmrladder export RUN --out DIR --formats onnx,pt2 and give --model DIR"
    if model is None:
        raise InputError(
            f"--backend torch needs a torch program (.pt2); the shipped model is ONNX only: {hint}"
        )
    if model.is_file() and model.suffix != ".pt2":
        raise InputError(f"--backend torch needs a torch program (.pt2), not {model}: {hint}")


def _run_locally(args):
    from nmrladder.runtime.batch_job import DenoiseJob
    from nmrladder.runtime.denoiser import Denoiser
    from nmrladder.runtime.inputs import discover_inputs
    from nmrladder.runtime.series import run_series

    # The inputs first: a folder without spectra is said before a model is loaded.
    inputs = args.inputs if args.series else list(discover_inputs(args.inputs, args.out))
    # A series is denoised one ladder (one batch) at a time: one stream on every thread.
    streams = 1 if args.series else args.streams or auto_streams(args.backend, args.threads)
    options = dict(
        backend=args.backend,
        batch_size=args.batch_size,
        threads=args.threads,
        streams=streams,
        residual_lb=args.residual_lb,
        strength=args.strength,
    )
    if args.model is None:
        denoiser = Denoiser.default(**options)
    else:
        denoiser = Denoiser(args.model, **options)
    progress = not args.no_progress
    if args.series:
        return run_series(
            denoiser, inputs, args.out, resume=args.resume, plot=args.plot, progress=progress
        )
    job = DenoiseJob(
        denoiser,
        args.out,
        resume=args.resume,
        plot=args.plot,
        progress=progress,
        in_place=args.in_place,
        file_threads=1 if args.file_threads is None else args.file_threads,
        confidence=args.confidence or 0,
    )
    return job.run(inputs)


def auto_streams(backend: str, threads: int | None) -> int:
    """Batches side by side for a batch job: one per CPU thread (at most 8) on ORT's CPU
    backend, where single-threaded calls side by side outrun one call on every core; the GPU
    backends and torch take one batch at a time."""
    from nmrladder.runtime.sessions import default_threads

    if backend != "ort":
        return 1
    return max(1, min(threads or default_threads(), 8))


def _run_on_ray(args):
    from nmrladder.runtime.errors import InputError
    from nmrladder.runtime.inputs import discover_inputs
    from nmrladder.runtime.ray_engine import denoise_with_ray

    if args.series:
        raise InputError("--series runs on the local engine (drop --engine ray)")
    return denoise_with_ray(
        args.model,
        list(discover_inputs(args.inputs, args.out)),
        args.out,
        backend=args.backend,
        batch_size=args.batch_size,
        address=args.address,
        workers=args.workers,
        threads_per_worker=args.threads,
        resume=args.resume,
        plot=args.plot,
        in_place=args.in_place,
        progress=not args.no_progress,
        residual_lb=args.residual_lb,
        strength=args.strength,
    )
