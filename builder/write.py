"""The writer: the files of a repository, written into a staging folder.

``builder.pipeline`` decides what to build; this module writes it: rendered configs, the
Python members' code (their ``model.py`` and the pure ``text_ops.py`` beside it), the
repository's ``.gitignore``, exported files hard-linked from a previous build, and the
committed part of a repository that ``--check`` compares. Staging and the atomic swap live in
``builder.output``; ``manifest.json`` in ``builder.manifest``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from builder.manifest import MANIFEST
from builder.output import GITIGNORE_HEADER
from builder.plan import ModelPlan
from builder.sources import file_sha256

__all__ = [
    "GITIGNORE",
    "artifact_hashes",
    "link",
    "tracked_files",
    "write_configs_and_code",
    "write_text",
]

BACKENDS_DIR = Path(__file__).resolve().parent.parent / "python_backends"
GITIGNORE = f"""\
{GITIGNORE_HEADER}: configs and code are committed; exported weights, tokenizer
# files and the manifest are rebuilt by `build-repo`.
*/1/*
!*/1/*.py
!*/1/.keep
!*/1/model.json
/{MANIFEST}
"""
# Files a Python member gets in its version folder (by its plan's ``code``): its model.py and
# the pure modules it imports.
_CODE = {
    "tokenizer": ("tokenizer/model.py", "text_ops.py"),
    "postprocess": ("postprocess/model.py", "text_ops.py"),
    "entities": ("entities/model.py", "token_ops.py", "text_ops.py"),
}


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_configs_and_code(plan: ModelPlan, configs: dict[str, str], root: Path) -> None:
    """Configs, each Python member's code, and the exported files a member needs besides the
    tokenizer member (hard links to the tokenizer member's, which must be written already)."""
    for name, text in configs.items():
        write_text(root / name / "config.pbtxt", text)
    for member in plan.members:
        for rel in _CODE[member.code] if member.code else ():
            target = root / member.name / "1" / Path(rel).name
            write_text(target, (BACKENDS_DIR / rel).read_text(encoding="utf-8"))
        if member is not plan.tokenizer:
            for name in member.files:
                link(root / plan.tokenizer.name / "1" / name, root / member.name / "1" / name)
    write_text(root / plan.spec.name / "1" / ".keep", "")


def artifact_hashes(plan: ModelPlan, root: Path) -> dict[str, str]:
    """sha256 of a model's exported files (ONNX, tokenizer files), by path in the repository."""
    weights = sorted(
        path
        for member in plan.members
        for path in (root / member.name / "1").iterdir()
        if path.is_file() and path.suffix != ".py"
    )
    return {path.relative_to(root).as_posix(): file_sha256(path) for path in weights}


def tracked_files(root: Path) -> dict[str, bytes]:
    """The committed part of a repository: configs, code and .gitignore."""
    files: dict[str, bytes] = {}
    if not root.is_dir():
        return files
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in path.parts or not path.is_file():
            continue
        committed = ("config.pbtxt", ".gitignore", ".keep", "model.json")
        if path.name in committed or path.suffix == ".py":
            files[rel] = path.read_bytes()
    return files
