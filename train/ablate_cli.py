"""``nmrladder ablate``: METHOD 8's variants trained on one budget and evaluated together."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Ablations of METHOD 8: train the variants full, no_peak_weight, no_curv, no_cons_T, "
    "top_only (pseudo-truth = top rung) and no_rescale with the same steps, seed and data, "
    "then evaluate them with the tuned Savitzky-Golay and line-broadening baselines on "
    "simulated test ladders. Writes OUT/runs/<variant>/ (RUN folders; finished ones are "
    "reused, interrupted ones resumed), OUT/evaluation/ and OUT/ablation.md (the table)."
)

EXAMPLES = """\
  nmrladder ablate --config train/configs/cpu_recipe.toml --data data/train --val data/val \\
      --test data/test --out ablation --steps 1500
  nmrladder ablate --data data/train --val data/val --test snr5=data/t5 --test snr10=data/t10 \\
      --out abl --variants full,no_curv --limit 50
"""


def _test_arg(text: str) -> tuple[str | None, Path]:
    """'PATH' -> (None, PATH); 'NAME=PATH' -> (NAME, PATH), unless PATH itself exists."""
    if "=" in text and not Path(text).exists():
        name, _, path = text.partition("=")
        if not name or not path:
            raise argparse.ArgumentTypeError(f"expected PATH or NAME=PATH, got {text!r}")
        return name, Path(path)
    return None, Path(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the verb."""
    parser.add_argument("--config", type=Path, default=None,
                        help="base TOML config (merged over the defaults)")
    parser.add_argument("--data", required=True, type=Path, action="append",
                        help="training ladders (.h5, its folder, or a manifest .csv); repeatable")
    parser.add_argument("--val", type=Path, default=None,
                        help="simulated ladders that tune the baselines (default: the first "
                             "quarter of the first test set)")
    parser.add_argument("--test", required=True, type=_test_arg, action="append",
                        metavar="[NAME=]T", help="simulated test ladders; repeatable")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--steps", type=int, default=None,
                        help="shared budget of every variant (default: the config's lengths)")
    parser.add_argument("--variants", default=None,
                        help="comma-separated subset of the variants (default: all)")
    parser.add_argument("--limit", type=int, default=None,
                        help="evaluate only the first LIMIT ladders of each set")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override the base config; repeatable")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Train and evaluate the variants, print the table; returns the exit status."""
    from nmrladder.runtime.errors import InputError
    from nmrladder.train.ablate import VARIANTS, run_ablation
    from nmrladder.train.config import load_config

    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps {args.steps}: must be >= 1")
    config = load_config(args.config, args.overrides)
    if args.no_progress:
        config["run"]["progress"] = False
    variants = None
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    tests: dict[str, Path] = {}
    for name, path in args.test:
        name = name or (path.parent.name if path.name == "ladders.h5" else path.stem)
        if name in tests:
            raise InputError(f"--test: two test sets named {name!r}; use NAME=PATH")
        tests[name] = path
    print("variants: " + ", ".join(variants or VARIANTS))
    result = run_ablation(config, list(args.data), tests, args.out, val=args.val,
                          steps=args.steps, variants=variants, limit=args.limit,
                          log=lambda line: print(f"  {line}", flush=True))
    print()
    print(result.table)
    print(f"\nwrote {Path(args.out) / 'ablation.md'} and {Path(args.out) / 'evaluation'}")
    return 0
