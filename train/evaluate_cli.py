"""``nmrladder evaluate``: METHOD 7's metrics of a trained model against classical baselines."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Evaluate a trained denoiser (a RUN directory from 'nmrladder train', or an .onnx "
    "artefact) on simulated SNR ladders with a known truth: the raw rung 0 of every ladder is "
    "denoised, and the output is compared with the truth and with the pseudo-truth s_hat of "
    "the whole ladder (error-based SNR gain over the whole spectrum and inside the peak "
    "regions, METHOD 7.1's SNR_out, peak precision/recall/F1 and position error, FWHM, "
    "integral and height of the main peaks, false peaks, L1/L2). Savitzky-Golay and "
    "exponential line broadening, tuned on the validation data, are reported beside it. "
    "Prints the tables and writes report.md, summary.csv, samples.csv, report.json and "
    "plots to --out."
)

EXAMPLES = """\
  nmrladder evaluate runs/cpu --data data/test --val data/val
  nmrladder evaluate runs/cpu --data snr3=data/test3 --data snr10=data/test10 --val data/val
  nmrladder evaluate model.onnx --data data/test/ladders.h5 --no-baselines --out eval_onnx
  nmrladder evaluate runs/cpu --data data/test --limit 200 --plots 0
  nmrladder evaluate runs/cpu --data data/test --val data/val --residual-lb   # one more row
"""


def _data_arg(text: str) -> tuple[str | None, Path]:
    """'PATH' -> (None, PATH); 'NAME=PATH' -> (NAME, PATH), unless PATH itself exists."""
    if "=" in text and not Path(text).exists():
        name, _, path = text.partition("=")
        if not name or not path:
            raise argparse.ArgumentTypeError(f"expected PATH or NAME=PATH, got {text!r}")
        return name, Path(path)
    return None, Path(text)


def _set_name(path: Path) -> str:
    return path.parent.name if path.name == "ladders.h5" else path.stem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    from nmrladder.runtime.residual import DEFAULT_FACTOR, factor_argument

    parser.add_argument("run", type=Path,
                        help="RUN directory (config.toml + model.safetensors) or .onnx file")
    parser.add_argument("--data", type=_data_arg, action="append", required=True,
                        metavar="[NAME=]D",
                        help="test ladders: an .h5 file or a folder with ladders.h5; repeat "
                             "for several test sets (named NAME, else after the file)")
    parser.add_argument("--val", type=Path, default=None, metavar="V",
                        help="validation ladders that tune the baselines (default: the first "
                             "quarter of the first --data set, evaluated on the rest)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default RUN/eval)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the Savitzky-Golay and line-broadening baselines")
    parser.add_argument("--plots", type=int, default=3, metavar="N",
                        help="plot N spectra per test set and method (3; 0: none)")
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate only the first LIMIT ladders of each set")
    parser.add_argument("--tolerance-ppm", type=float, default=0.005,
                        help="peak matching tolerance, ppm (0.005; at least 2 points)")
    parser.add_argument("--batch-size", type=int, default=8, help="spectra per forward (8)")
    parser.add_argument("--name", default=None,
                        help="the model's row in the tables (default: the RUN's name)")
    parser.add_argument("--residual-lb", type=factor_argument, nargs="?", const=DEFAULT_FACTOR,
                        default=None, metavar="FACTOR",
                        help="add a row for the model followed by the residual step (amplitude "
                             "re-fit, then residual line broadening by FACTOR x the output's "
                             f"linewidth, {DEFAULT_FACTOR:g} without FACTOR; nmrladder denoise "
                             "--residual-lb)")


def _default_out(run: Path) -> Path:
    return run.parent / f"{run.stem}_eval" if run.suffix.lower() == ".onnx" else run / "eval"


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables, save everything; returns the exit status."""
    from nmrladder.runtime.errors import InputError
    from nmrladder.runtime.residual import ResidualBroadening
    from nmrladder.train.evaluate import evaluate_denoisers
    from nmrladder.train.inference import load_denoiser

    test_sets: dict[str, Path] = {}
    for name, path in args.data:
        name = name or _set_name(path)
        if name in test_sets:
            raise InputError(f"--data: two test sets named {name!r}; use NAME=PATH")
        test_sets[name] = path
    if args.plots < 0:
        raise InputError(f"--plots {args.plots}: must be >= 0")
    out = args.out if args.out is not None else _default_out(args.run)
    model_name = args.name or (args.run.stem if args.run.suffix else args.run.resolve().name)

    denoiser = load_denoiser(args.run, batch_size=args.batch_size)
    denoisers = {model_name: denoiser}
    if args.residual_lb is not None:
        denoisers[f"{model_name} + residual LB"] = ResidualBroadening(denoiser, args.residual_lb)
    print(f"evaluating {args.run} as {model_name!r} on {', '.join(test_sets)}")
    if args.val is None and not args.no_baselines:
        first = next(iter(test_sets))
        print(f"no --val: the baselines are tuned on the first quarter of {first!r}, "
              "which is evaluated on the rest")
    report = evaluate_denoisers(
        denoisers,
        test_sets,
        args.val,
        baselines=not args.no_baselines,
        tolerance_ppm=args.tolerance_ppm,
        limit=args.limit,
        plot_dir=out / "plots" if args.plots else None,
        n_plots=args.plots,
        log=lambda line: print(f"  {line}", flush=True),
    )
    print()
    print(report.table())
    for note in report.notes:
        print(f"note: {note}")
    files = report.save(out)
    print(f"wrote {', '.join(str(p) for p in files.values())}"
          + (f" and plots in {out / 'plots'}" if args.plots else ""))
    return 0
