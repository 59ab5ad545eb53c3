"""``nmrladder denoise``: denoise NMR files (or SNR-ladder series) in batch."""

from __future__ import annotations

import sys
from pathlib import Path

DESCRIPTION = (
    "Denoise 1D NMR spectra: Bruker processed data (pdata/N/1r; written back as a new procno), "
    "NMRPipe 1D, JCAMP-DX, .npy/.npz, HDF5 and two-column CSV (ppm, intensity). Folders are "
    "searched for spectra. Reading, scaling and writing overlap with inference; outputs are "
    "written atomically and recorded in OUT/manifest.jsonl, so an interrupted run continues "
    "with --resume. With --series, each input is an SNR ladder (a folder of rung files sorted "
    "by name, rung 0 the lowest SNR, or a 2D .npy/.npz [R, L]) and the output is the fused, "
    "denoised spectrum with T_hat and the per-rung SNR. The exit code is 1 when any input failed."
)
EXAMPLES = """  nmrladder denoise data/exp_10 data/exp_11 --out denoised        # Bruker experiments
  nmrladder denoise spectra/ --out denoised --plot --batch-size 16  # a folder of files
  nmrladder denoise spectra/ --out denoised --resume                # continue an interrupted run
  nmrladder denoise ladders/sample_A --series --out fused           # one SNR ladder per input
  nmrladder denoise in.ft1 --out out --model models/cpu/model.onnx --backend ort --threads 2
"""


def add_arguments(parser) -> None:
    from nmrladder.runtime.sessions import BACKENDS

    parser.add_argument("inputs", nargs="+", type=Path, help="files or folders of spectra")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="artefact (.onnx, .plan, .pt2) or export folder (default: the shipped model)",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="ort", help="inference backend (default: ort)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="spectra per inference batch (default: 8)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: all cores)"
    )
    parser.add_argument(
        "--series", action="store_true", help="each input is an SNR ladder; fuse it"
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


def run(args) -> int:
    from nmrladder.runtime.denoiser import Denoiser
    from nmrladder.runtime.pipeline import DenoiseJob, discover_inputs, run_series

    if args.model is None:
        denoiser = Denoiser.default(
            backend=args.backend, batch_size=args.batch_size, threads=args.threads
        )
    else:
        denoiser = Denoiser(
            args.model, backend=args.backend, batch_size=args.batch_size, threads=args.threads
        )
    progress = not args.no_progress
    if args.series:
        summary = run_series(
            denoiser, args.inputs, args.out, resume=args.resume, plot=args.plot, progress=progress
        )
    else:
        job = DenoiseJob(
            denoiser,
            args.out,
            resume=args.resume,
            plot=args.plot,
            progress=progress,
            in_place=args.in_place,
        )
        summary = job.run(discover_inputs(args.inputs))
    print(summary.table())
    ok = sum(r.status == "ok" for r in summary.results)
    skipped = sum(r.status == "skipped" for r in summary.results)
    print(
        f"{ok} denoised, {skipped} already done, {len(summary.failed)} failed "
        f"in {summary.wall_seconds:.1f} s -> {args.out}"
    )
    for failure in summary.failed:
        print(f"nmrladder denoise: failed: {failure.message}", file=sys.stderr)  # names the input
    return 1 if summary.failed else 0
