"""Every code example of README.md and docs/*.md runs (issue 24: the README's
``Denoiser(residual_lb=0.5)`` had no model path and failed).

- Python: each ```python block, and each indented block that starts with an import, is run
  in a fresh working folder. A block that needs files or inputs names a setup in an HTML
  comment just before it, ``<!-- example-setup: NAME -->``; SETUPS below makes them small
  (tiny simulated sets, a tiny run, the shipped model copied where the example looks for it)
  and some check what the block left behind.
- Inline calls: a `Denoiser...(...)` span of the prose with literal arguments is called; one
  with placeholders has its keywords bound against the real signature.
- Shell: each ``nmrladder ...`` command of a code block (``torchrun -m nmrladder.cli`` and
  ``ray job submit -- nmrladder`` too, continuation lines joined, ``$(...)`` expanded by bash)
  is parsed by the verb's own argparse parser without running the job; a config file of the
  repository it names is loaded with its ``--set`` overrides, and every repository path it
  names must exist. A usage synopsis (``[--opt ...]``) must name only options the verb has.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHIPPED = ROOT / "runtime" / "models" / "default.onnx"
SETUP = re.compile(r"^<!-- example-setup: ([\w-]+) -->$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SHELL_LANGS = ("", "sh", "bash", "shell", "console")
# paths of the repository an example may name (they must exist)
REPO_DIRS = ("train/", "runtime/", "scripts/", "benchmarks/", "docs/", "tests/", "export/")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line
    kind: str  # "python" or "shell"
    text: str
    setup: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """Fenced blocks and indented (4-space) blocks after a blank line, with their setups."""
    lines = path.read_text().split("\n")
    blocks, i = [], 0

    def setup_before(index: int) -> str | None:
        j = index - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        match = SETUP.match(lines[j].strip()) if j >= 0 else None
        return match.group(1) if match else None

    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            body = "\n".join(line[len(fence.group(1)):] for line in lines[i + 1 : end])
            lang = fence.group(2).lower()
            kind = "python" if lang in ("python", "py") else "shell" if lang in SHELL_LANGS else ""
            if kind:
                blocks.append(Block(path, i + 2, kind, body, setup_before(i)))
            i = end + 1
            continue
        starts = i == 0 or not lines[i - 1].strip()
        if lines[i].startswith("    ") and lines[i].strip() and starts:
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = "\n".join(line[4:] for line in lines[i:end]).strip("\n")
            kind = "python" if re.match(r"(from|import) \w", body) else "shell"
            blocks.append(Block(path, i + 1, kind, body, setup_before(i)))
            i = end
            continue
        i += 1
    return blocks


ALL_BLOCKS = [block for path in DOCUMENTS for block in code_blocks(path)]
PYTHON_BLOCKS = [b for b in ALL_BLOCKS if b.kind == "python"]


# --------------------------------------------------------------------------- setups


def _ladder(rungs: int = 4, length: int = 4096) -> np.ndarray:
    """Three lines under noise that halves per rung (T = 2): a ladder [R, L]."""
    from ladders import simple_ladder

    return simple_ladder(np.random.default_rng(0), rungs=rungs, length=length)


def spectra_setup(folder: Path) -> dict:
    ladder = _ladder()
    return {"x": ladder[:2] * 1e5, "ladder": ladder}


def spectra_check(ns: dict) -> None:
    assert ns["y"].shape == ns["x"].shape and np.isfinite(ns["y"]).all()
    series = ns.get("series", ns.get("s"))
    assert series.fused.shape == ns["ladder"].shape[1:]


def runtime_setup(folder: Path) -> dict:
    (folder / "models" / "cpu").mkdir(parents=True)
    shutil.copy(SHIPPED, folder / "models" / "cpu" / "model.onnx")
    return spectra_setup(folder)


def model_input_setup(folder: Path) -> dict:
    import torch

    return {"x": torch.from_numpy(_ladder(2, 512).astype(np.float32))}


def model_input_check(ns: dict) -> None:
    assert tuple(ns["y"].shape) == tuple(ns["x"].shape)


def bruker_setup(folder: Path) -> dict:
    from nmrfiles import make_bruker, spectrum_values

    make_bruker(folder / "data")  # data/sample/10, as the example reads
    return {"denoised_values": 0.5 * spectrum_values()}


def bruker_check(ns: dict) -> None:
    from nmrladder.runtime.io import read_spectrum

    written = read_spectrum(ns["target"])
    np.testing.assert_allclose(written.intensities, ns["denoised_values"], rtol=1e-6, atol=1)


def _simulated(folder: Path, *names: str, n: int = 4) -> None:
    """Tiny simulated sets (rung-0 SNR 5) where the example looks for them."""
    from nmrladder.train.simulate import simulate_ladders

    for seed, name in enumerate(names):
        target = folder / name
        path = target if target.suffix == ".h5" else target / "ladders.h5"
        simulate_ladders(n, 3, 1024, 2.0, 5.0, seed=seed).save(path)


def _tiny_run(run: Path) -> None:
    """A run folder as training writes it (config.toml, model.safetensors), untrained."""
    from safetensors.torch import save_file

    from nmrladder.train.model import ModelConfig, build_model

    config = ModelConfig(depth=2, widths=(4, 8), dilations=(1, 2), groups=4, kernel_size=5)
    run.mkdir(parents=True)
    lines = ["[model]"] + [f"{k} = {json.dumps(v)}" for k, v in config.to_dict().items()]
    (run / "config.toml").write_text("\n".join(lines) + "\n")
    save_file(build_model(config).state_dict(), str(run / "model.safetensors"))


def evaluation_setup(folder: Path) -> dict:
    _tiny_run(folder / "runs" / "cpu")
    # one ladder per test set: the report plots each method on every set's first ladders
    _simulated(folder, "data/test5", "data/test10/ladders.h5", n=1)
    _simulated(folder, "data/val", n=2)
    return {}


def evaluation_check(ns: dict) -> None:
    saved = Path("runs/cpu/eval")
    assert {"report.md", "summary.csv", "samples.csv", "report.json"} <= {
        p.name for p in saved.iterdir()
    }
    assert "unet" in ns["report"].table()


def training_setup(folder: Path) -> dict:
    """train/configs/cpu_recipe.toml as the example names it, the recipe's own file with a
    tiny model and two steps (tests/test_training.py trains for real), and two tiny sets."""
    from nmrladder.train.config import tomllib

    recipe = tomllib.loads((ROOT / "train" / "configs" / "cpu_recipe.toml").read_text())
    recipe["model"].update(depth=2, widths=[8, 8], dilations=[1, 2], groups=4, stem_stride=1)
    recipe["data"].update(crop_length=256, batch_size=2)
    recipe["optim"].update(warmup_steps=1)
    recipe["stage_a"].update(steps=2)
    recipe["run"].update(checkpoint_every=0, val_every=0, progress=False)
    text = []
    for table, values in recipe.items():
        text += [f"[{table}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()] + [""]
    target = folder / "train" / "configs" / "cpu_recipe.toml"
    target.parent.mkdir(parents=True)
    target.write_text("\n".join(text))
    _simulated(folder, "data/train5", "data/train50")
    return {}


def training_check(ns: dict) -> None:
    assert ns["config"]["optim"]["lr"] == pytest.approx(2e-3)
    assert ns["result"].steps == 2 and (Path("runs/r1") / "model.safetensors").is_file()


def ray_setup(folder: Path) -> dict:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'nmrladder[ray]')")
    shutil.copy(SHIPPED, folder / "model.onnx")
    (folder / "spectra").mkdir()
    for i, row in enumerate(_ladder(2, 1024)):
        np.save(folder / "spectra" / f"s{i}.npy", row)
    return {}


def ray_check(ns: dict) -> None:
    assert len(list(Path("denoised").rglob("*.npy"))) == 2  # one output per input


SETUPS = {
    "spectra": (spectra_setup, spectra_check),
    "runtime": (runtime_setup, spectra_check),
    "model-input": (model_input_setup, model_input_check),
    "bruker": (bruker_setup, bruker_check),
    "evaluation": (evaluation_setup, evaluation_check),
    "training": (training_setup, training_check),
    "ray": (ray_setup, ray_check),
}


def test_the_documents_hold_examples_and_name_known_setups():
    """The scan finds the examples (an empty scan would pass everything)."""
    assert len(PYTHON_BLOCKS) >= 8
    assert len(SHELL_COMMANDS) >= 20
    unknown = [f"{b.where}: {b.setup}" for b in ALL_BLOCKS if b.setup and b.setup not in SETUPS]
    assert not unknown, unknown


# Starting a local Ray instance takes seconds: that example is marked slow (still run).
@pytest.mark.parametrize(
    "block",
    [pytest.param(b, marks=pytest.mark.slow) if b.setup == "ray" else b for b in PYTHON_BLOCKS],
    ids=lambda b: b.where,
)
def test_python_example_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    setup, check = SETUPS.get(block.setup, (lambda folder: {}, lambda ns: None))
    namespace = {"__name__": "__doc_example__", **setup(tmp_path)}
    exec(compile(block.text, block.where, "exec"), namespace)
    check(namespace)


# --------------------------------------------------------------------------- inline calls

INLINE = re.compile(r"`(Denoiser(?:\.\w+)?\([^`]*\))`")


def inline_calls() -> list[tuple[str, str]]:
    return [
        (f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}", m.group(1))
        for path in DOCUMENTS
        for text in [path.read_text()]
        for m in INLINE.finditer(text)
    ]


def _literal(node) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(("where", "span"), inline_calls(), ids=[w for w, _ in inline_calls()])
def test_inline_denoiser_call(where, span):
    """`Denoiser.default(residual_lb=0.5)` is called; `Denoiser(..., streams=S)` has its
    keywords bound against Denoiser's signature (placeholders stand for any value)."""
    from nmrladder.runtime import Denoiser

    text = re.sub(r'"\w+"(\|"?[\w.]+"?)+', '"ort"', span)  # backend="ort"|"trt"|... -> one
    call = ast.parse(text.replace("...", "ELLIPSIS"), mode="eval").body
    assert isinstance(call, ast.Call), f"{where}: {span} is not a call"
    target = Denoiser if isinstance(call.func, ast.Name) else getattr(Denoiser, call.func.attr)
    if all(_literal(a) for a in [*call.args, *(k.value for k in call.keywords)]):
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        assert isinstance(target(*args, **kwargs), Denoiser)
        return
    signature = inspect.signature(target.__init__ if target is Denoiser else target)
    names = set(signature.parameters) | {
        n for n, p in signature.parameters.items() if p.kind is p.VAR_KEYWORD
    }
    unknown = [k.arg for k in call.keywords if k.arg not in names]
    forwarded = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    if forwarded:  # Denoiser.default(**kwargs) passes them on to Denoiser
        unknown = [k for k in unknown if k not in inspect.signature(Denoiser.__init__).parameters]
    assert not unknown, f"{where}: {span}: no keyword(s) {unknown}"


# --------------------------------------------------------------------------- shell lines


def _commands(block: Block) -> list[str]:
    """The block's commands, continuation lines joined."""
    out, current = [], ""
    for line in block.text.split("\n"):
        stripped = line.rstrip()
        if out and not current and re.match(r"\s+\[", stripped):  # a synopsis goes on
            out[-1] += " " + stripped.strip()
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        out.append((current + stripped).strip())
        current = ""
    return [c for c in out if c and not c.startswith("#")]


NMRLADDER = re.compile(r"(?:^|\s)(?:-m nmrladder\.cli|(?:\S*/)?nmrladder)(?=\s|$)")


def shell_commands() -> list[tuple[str, str]]:
    found = []
    for block in ALL_BLOCKS:
        if block.kind != "shell":
            continue
        for offset, command in enumerate(_commands(block)):
            match = NMRLADDER.search(command)
            if match:
                found.append((f"{block.where}+{offset}", command[match.end():].strip()))
    return found


SHELL_COMMANDS = shell_commands()


def _argv(rest: str) -> list[str]:
    """The command's arguments as the shell gives them (``$(...)`` run by bash)."""
    if "$" not in rest:
        return shlex.split(rest, comments=True)
    done = subprocess.run(
        ["bash", "-c", f"set -f; printf '%s\\0' {rest}"],
        capture_output=True, text=True, timeout=30, check=True, env={"PATH": "/usr/bin:/bin"},
    )
    return done.stdout.split("\0")[:-1]


def _parser(verb: str):
    from nmrladder.cli import VERBS, _build_parser

    assert verb in VERBS, f"no verb {verb!r}"
    parser = _build_parser(verb)
    return next(a for a in parser._subparsers._group_actions if a.choices).choices[verb]


@pytest.mark.parametrize(("where", "rest"), SHELL_COMMANDS, ids=[w for w, _ in SHELL_COMMANDS])
def test_shell_example_parses(where, rest):
    from nmrladder.cli import _build_parser

    if re.search(r"\[-|\[[A-Z]|\.\.\.", rest):  # a usage synopsis: options must exist
        verb = rest.split()[0]
        known = set(_parser(verb)._option_string_actions)
        named = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", rest))
        assert named <= known, f"{where}: nmrladder {verb} has no {sorted(named - known)}"
        return
    argv = _argv(rest)
    try:
        args = _build_parser(argv[0]).parse_args(argv)
    except SystemExit as exit_info:
        pytest.fail(f"{where}: nmrladder {' '.join(argv)}: argparse exits {exit_info.code}")
    for value in argv:
        if value.startswith(REPO_DIRS):
            assert (ROOT / value).exists(), f"{where}: {value} is not in the repository"
    config = getattr(args, "config", None)
    if config is not None and str(config).startswith(REPO_DIRS):
        from nmrladder.train.config import load_config

        load_config(ROOT / config, getattr(args, "overrides", []))  # unknown keys raise


def test_a_wrong_example_is_caught(tmp_path):
    """The checks above fail on the README's old call and on a misspelt option."""
    from nmrladder.cli import _build_parser
    from nmrladder.runtime import Denoiser

    with pytest.raises(TypeError, match="model_path"):
        Denoiser(residual_lb=0.5)
    with pytest.raises(SystemExit):
        _build_parser("denoise").parse_args(["denoise", "in/", "--outt", "x"])
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n<!-- example-setup: spectra -->\n```python\nprint(1)\n```\n\n"
                   "    nmrladder bench --quick\n")
    (python, shell) = code_blocks(doc)
    assert (python.kind, python.setup, python.text, python.line) == ("python", "spectra",
                                                                     "print(1)", 5)
    assert (shell.kind, shell.text) == ("shell", "nmrladder bench --quick")
