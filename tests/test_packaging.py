"""Packaging contracts: one namespace, a torch-free runtime, one console entry point."""

import subprocess
import sys

BLOCK_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, BlockTorch())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_imports_without_torch():
    done = _run(
        BLOCK_TORCH + "import nmrladder.runtime\nimport nmrladder.runtime.preprocess\nprint('ok')"
    )
    assert done.returncode == 0, done.stderr
    # the guard itself works: importing torch fails under it
    blocked = _run(BLOCK_TORCH + "import torch")
    assert blocked.returncode != 0 and "torch is blocked" in blocked.stderr


def test_runtime_does_not_load_torch_as_a_side_effect():
    done = _run("import sys, nmrladder.runtime, nmrladder.train; print('torch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_console_entry_point_lists_verbs():
    done = subprocess.run(
        [sys.executable, "-m", "nmrladder", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for verb in ("simulate", "demo"):
        assert verb in done.stdout


def test_subpackages_live_in_one_namespace():
    import nmrladder.export
    import nmrladder.kernels
    import nmrladder.runtime
    import nmrladder.train

    for module in (nmrladder.runtime, nmrladder.train, nmrladder.export, nmrladder.kernels):
        assert module.__name__.startswith("nmrladder.")
