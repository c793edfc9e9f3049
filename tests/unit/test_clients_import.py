"""clients is importable without the builder's heavy dependencies, ships py.typed, and types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BLOCKED = (
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "jinja2",
    "pydantic",
    "yaml",
    "builder",
)

SCRIPT = f"""
import importlib.abc
import sys

BLOCKED = set({BLOCKED!r})


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"blocked import: {{name}}")
        return None


already = sorted(BLOCKED & {{m.partition(".")[0] for m in sys.modules}})
assert not already, f"imported before the blocker: {{already}}"
sys.meta_path.insert(0, Block())
try:
    import yaml
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not block")

import clients

for name in clients.__all__:
    exec(f"from clients import {{name}}")
loaded = sorted(BLOCKED & {{m.partition(".")[0] for m in sys.modules}})
assert not loaded, f"loaded: {{loaded}}"
print("OK")
"""


def test_clients_import_without_builder_dependencies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "OK\n"


def test_clients_ship_py_typed() -> None:
    assert (ROOT / "clients" / "py.typed").is_file()


@pytest.mark.slow
def test_clients_pass_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "clients"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
