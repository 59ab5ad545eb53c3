"""``nmrladder train``: two-stage training on SNR ladders into a RUN folder."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Train the denoiser on SNR ladders (METHOD 6): stage A on the fused pseudo-truth, stage B "
    "self-supervised across rungs with an SNR curriculum. DATA is simulated ladders (.h5, or "
    "the folder `nmrladder simulate` wrote) or a manifest CSV of real ladders (columns sample, "
    "rung, path[, T]). Writes RUN/config.toml, RUN/model.safetensors, RUN/checkpoints/ and "
    "RUN/log.csv (every loss term per step). Every hyper-parameter is in the config "
    "(defaults: nmrladder/train/configs/default.toml; see docs/training.md)."
)

EXAMPLES = """\
  nmrladder train --data data/train --val data/val --out runs/r1
  nmrladder train --data data/snr5 --data data/snr20 --val data/val --out runs/mix
  nmrladder train --config train/configs/cpu_recipe.toml --data data/train/ladders.h5 --out runs/cpu
  nmrladder train --data ladders.csv --out runs/real --set data.t_source=t_hat --set optim.lr=1e-3
  nmrladder train --data data/train --out runs/r1 --resume      # continue from the last checkpoint
  nmrladder train --config C.toml --data data/train --out runs/r2 --export models   # + ONNX
  torchrun --standalone --nproc-per-node 2 -m nmrladder.cli train --data data/train --out runs/d
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config merged over the defaults (default: the defaults)")
    parser.add_argument("--data", required=True, type=Path, action="append",
                        help="training ladders: simulated .h5 (or its folder) or a manifest "
                             ".csv; repeat to train on several sets together")
    parser.add_argument("--out", required=True, type=Path, help="the RUN folder")
    parser.add_argument("--val", type=Path, default=None,
                        help="validation ladders (same formats); losses go to RUN/val.csv")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override one config value (a TOML literal); repeatable")
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN from checkpoints/latest with RUN/config.toml")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--export", type=Path, default=None, metavar="DIR",
                        help="after training, export the final weights to DIR/NAME.onnx "
                             "(dynamic batch and length, metadata, parity checked against "
                             "the torch model; see `nmrladder export` for more formats)")
    parser.add_argument("--export-name", default="model", metavar="NAME",
                        help="file name of the export, without suffix (default: model)")


def load_run_config(args: argparse.Namespace) -> dict:
    """The config of this invocation; with --resume, the run's own config.toml (an explicit
    --config/--set must agree with it)."""
    from nmrladder.runtime.errors import InputError
    from nmrladder.train.config import load_config
    from nmrladder.train.training import check_resume_config

    saved = Path(args.out) / "config.toml"
    if args.resume:
        if not saved.is_file():
            raise InputError(f"{saved}: --resume needs an existing run folder")
        if args.config is None and not args.overrides:
            config = load_config(saved)
        else:
            config = load_config(args.config, args.overrides)
            check_resume_config(args.out, config)
    else:
        if saved.exists():
            raise InputError(f"{args.out} already holds a run (config.toml); use --resume to "
                             "continue it, or another --out")
        config = load_config(args.config, args.overrides)
    if args.no_progress:
        config["run"]["progress"] = False
    return config


def after_training(run_dir: Path, args: argparse.Namespace) -> None:
    """Runs once training has written RUN/model.safetensors: exports it (--export) and
    prints where everything is. The export is the hook the ``nmrladder`` dispatcher lends
    this verb (nmrladder/cli.py, HOOKS): training never imports the exporter."""
    if args.export is not None:
        export_hook = getattr(args, "export_hook", None)
        if export_hook is None:
            from nmrladder.runtime.errors import InputError

            raise InputError("--export: run the verb through the nmrladder command, which "
                             "lends it the exporter")
        export_hook(run_dir, args.export, args.export_name)
    print(f"final weights: {run_dir / 'model.safetensors'}")
    print(f"config:        {run_dir / 'config.toml'}")
    print(f"log:           {run_dir / 'log.csv'}")
    print(f"evaluate with: nmrladder evaluate {run_dir} --data TEST --val VAL")


def run(args: argparse.Namespace) -> int:
    """Prepare the data, train, and report; returns the exit status."""
    from nmrladder.train.data import prepare_from_config
    from nmrladder.train.distributed import launched
    from nmrladder.train.training import train

    config = load_run_config(args)
    run_dir = Path(args.out)
    progress = config["run"]["progress"]
    # Under torchrun (docs/scale-out.md) every rank runs this; rank 0 alone reports and
    # exports, and each rank keeps its own on-disk cache (no two writers on one file).
    rank, world_size = launched()
    if rank == 0:
        from nmrladder.train.provenance import record_run

        run_dir.mkdir(parents=True, exist_ok=True)
        record_run(run_dir, list(args.data), args.val)
    cache = run_dir / "cache" / (f"rank{rank}" if world_size > 1 else "")
    data = prepare_from_config(list(args.data), config, cache, "train", progress)
    val = prepare_from_config(args.val, config, cache, "val", progress) if args.val else None
    try:
        result = train(config, data, run_dir, val_data=val, resume=args.resume)
    finally:
        for prepared in (data, val):
            if hasattr(prepared, "close"):
                prepared.close()
    if rank != 0:
        return 0
    last = ", ".join(f"{k} {v:.4g}" for k, v in result.last.items())
    print(f"trained {result.steps} steps in {result.seconds:.1f} s; last step: {last}")
    if result.val:
        print("validation: " + ", ".join(f"{k} {v:.4g}" for k, v in result.val.items()))
    after_training(run_dir, args)
    return 0
