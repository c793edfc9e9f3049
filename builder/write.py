"""Write the repository: staged in a sibling folder, swapped in whole, incremental, deterministic.

Before any work, the output folder is checked (``builder.output``: only an absent, empty or
triton-pack-made folder is replaced), leftovers of killed builds are removed, and every
model's source is resolved and checked (``builder.inputs``). Then everything is written into
``.<repo>.staging-<pid>`` beside the target and swapped in only when every model exported,
passed parity and rendered a valid config; any failure (or SIGTERM, or Ctrl-C) removes the
staging folder, so the previous repository stays byte-identical.

Exports are cached by a content hash of the spec entry, the source files, the tool version
and the exporting libraries' versions; an unchanged model's ONNX and tokenizer files are
hard-linked from the previous repository after their hashes are checked against its manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from builder import __version__
from builder.errors import ParityError, located
from builder.inputs import check_inputs
from builder.model_files import EmbeddingSettings, HFConfig, embedding_settings
from builder.output import (
    FORMAT,
    GITIGNORE_HEADER,
    MANIFEST,
    check_output_folder,
    remove_stale_staging,
    staging,
    swap,
)
from builder.plan import ModelPlan, TokenizerInfo, plan_model, plan_vllm
from builder.registry import REGISTRY
from builder.render import render_model, render_vllm
from builder.sources import ResolvedSource, file_sha256, resolve_source
from builder.spec import MEMBER_SUFFIXES, ModelSpec, Spec

__all__ = [
    "BuildResult",
    "ModelOutcome",
    "Prepared",
    "build_repository",
    "check_repository",
    "prepare",
    "triton_model_names",
]

BACKENDS_DIR = Path(__file__).resolve().parent.parent / "python_backends"
LIBRARIES = ("torch", "transformers", "tokenizers", "onnx", "onnxscript", "onnxruntime")
GITIGNORE = f"""\
{GITIGNORE_HEADER}: configs and code are committed; exported weights, tokenizer
# files and the manifest are rebuilt by `build-repo`.
*/1/*
!*/1/*.py
!*/1/.keep
!*/1/model.json
/manifest.json
"""
# Files a Python member gets in its version folder: its model.py and the shared pure module.
_CODE = {
    "tokenizer": ("tokenizer/model.py", "text_ops.py"),
    "postprocess": ("postprocess/model.py", "text_ops.py"),
}

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ModelOutcome:
    name: str
    exported: bool  # False: reused from the previous build
    seconds: float
    parity: dict[str, Any]

    @property
    def parity_failed(self) -> bool:
        """Parity failed and the build went on (export.allow_parity_failure)."""
        return self.parity.get("passed") is False


@dataclass(frozen=True)
class BuildResult:
    repository: Path
    models: tuple[ModelOutcome, ...]

    @property
    def parity_failures(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models if m.parity_failed)


@dataclass(frozen=True)
class Prepared:
    """Every exportable model's checked source, config.json and embedding settings (pooling,
    normalisation, length: from the spec, the sentence-transformers files or the defaults),
    before any work."""

    sources: dict[str, ResolvedSource]
    hf_configs: dict[str, HFConfig]
    embedding: dict[str, EmbeddingSettings]

    def max_length(self, model: ModelSpec) -> int:
        settings = self.embedding.get(model.name)
        return settings.max_sequence_length.value if settings else model.max_sequence_length


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def cache_key(
    spec: Spec, model: ModelSpec, source: ResolvedSource, settings: EmbeddingSettings | None
) -> str:
    # Only what changes the exported files or their parity figures: a new batch size or
    # instance count re-renders configs but does not re-export.
    payload = {
        "tool": __version__,
        "model": model.model_dump(
            mode="json", include={"task", "source", "revision", "max_sequence_length", "export"}
        ),
        "target": spec.target_of(model),
        "source": source.fingerprint,
        "embedding": settings.as_manifest() if settings else None,
        "libraries": library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_manifest(repo: Path) -> dict[str, Any]:
    try:
        data = json.loads((repo / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _reusable(previous: dict[str, Any], name: str, key: str, repo: Path) -> dict[str, Any] | None:
    """The previous manifest entry for ``name`` if its key matches and its files are intact."""
    entry = previous.get("models", {}).get(name)
    if not isinstance(entry, dict) or entry.get("cache_key") != key:
        return None
    artifacts = entry.get("artifacts", {})
    for rel, sha in artifacts.items():
        path = repo / rel
        if not path.is_file() or file_sha256(path) != sha:
            return None
    return entry


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_configs_and_code(plan: ModelPlan, configs: dict[str, str], root: Path) -> None:
    for name, text in configs.items():
        _write_text(root / name / "config.pbtxt", text)
    for kind, member in (("tokenizer", plan.tokenizer), ("postprocess", plan.postprocess)):
        for rel in _CODE[kind]:
            target = root / member.name / "1" / Path(rel).name
            _write_text(target, (BACKENDS_DIR / rel).read_text(encoding="utf-8"))
    _write_text(root / plan.spec.name / "1" / ".keep", "")


def _artifact_hashes(model: ModelSpec, root: Path) -> dict[str, str]:
    """sha256 of a model's exported files (ONNX and tokenizer), by path in the repository."""
    weights = sorted(
        path
        for folder in (f"{model.name}_onnx", f"{model.name}_tokenizer")
        for path in (root / folder / "1").iterdir()
        if path.is_file() and path.suffix != ".py"
    )
    return {path.relative_to(root).as_posix(): file_sha256(path) for path in weights}


class _ModelBuilder:
    """Builds one spec entry into ``root`` (export or reuse, parity, plan, render)."""

    def __init__(
        self,
        spec: Spec,
        prepared: Prepared,
        previous: dict[str, Any],
        old_repo: Path,
        progress: Progress,
    ):
        self.spec = spec
        self.prepared = prepared
        self.previous = previous
        self.old_repo = old_repo
        self.progress = progress
        self.outcomes: list[ModelOutcome] = []

    def tokenizer(
        self, model: ModelSpec, source: ResolvedSource, reuse: dict[str, Any] | None, root: Path
    ) -> TokenizerInfo:
        target = root / f"{model.name}_tokenizer" / "1"
        if reuse is not None:
            rel = f"{model.name}_tokenizer/1/tokenizer.json"
            _link(self.old_repo / rel, root / rel)
            info = reuse["tokenizer"]
            return TokenizerInfo(pad_token=str(info["pad_token"]), pad_id=int(info["pad_id"]))
        from builder.export import export_tokenizer

        return export_tokenizer(source.directory, target)

    def onnx(
        self,
        model: ModelSpec,
        source: ResolvedSource,
        tokenizer: TokenizerInfo,
        reuse: dict[str, Any] | None,
        root: Path,
    ) -> dict[str, Any]:
        out_dir = root / f"{model.name}_onnx" / "1"
        if reuse is not None:
            for rel in reuse["artifacts"]:
                if rel.startswith(f"{model.name}_onnx/"):
                    _link(self.old_repo / rel, root / rel)
            return dict(reuse["parity"])
        from builder.export import export_onnx, load_model
        from builder.parity import SAMPLE_TEXTS, check_parity, parity_cases, text_case

        config = self.prepared.hf_configs[model.name]
        architecture = REGISTRY.architecture(config.model_type)
        task = REGISTRY.task(model.task)
        self.progress(f"  {model.name}: exporting ONNX (opset {model.export.opset})")
        torch_model = load_model(source.directory, task)
        artifact = export_onnx(torch_model, architecture, task, model.export.opset, out_dir)
        max_length = self.prepared.max_length(model)
        cases = parity_cases(architecture, config.vocab_size, max_length, tokenizer.pad_id)
        texts = text_case(
            root / f"{model.name}_tokenizer" / "1" / "tokenizer.json",
            SAMPLE_TEXTS + model.export.parity_texts,
            architecture,
            max_length,
            tokenizer,
        )
        rtol = task.rtol if model.export.rtol is None else model.export.rtol
        report = check_parity(
            torch_model, artifact, architecture, task, cases, model.export.atol, rtol, texts
        )
        verdict = "ok" if report.passed else "FAILED"
        self.progress(f"  {model.name}: parity {verdict}: {report.describe()}")
        if not report.passed and not model.export.allow_parity_failure:
            raise ParityError(
                f"{self.spec.where(model, 'export.atol')}: output {report.output!r} differs "
                f"from PyTorch beyond |onnx - torch| <= atol + rtol * |torch|: "
                f"{report.describe()} (cases: {'; '.join(report.cases)}). Nothing was "
                "written. Raise export.atol / export.rtol, or set "
                "export.allow_parity_failure: true to build anyway.",
                located=True,
            )
        return report.as_dict()

    def build_vllm(self, index: int, model: ModelSpec, root: Path) -> dict[str, Any]:
        """A vllm backend model: config.pbtxt and 1/model.json, nothing to export."""
        self.progress(f"[{index + 1}/{len(self.spec.models)}] {model.name} (text-generation, vllm)")
        plan = plan_vllm(model)
        configs = render_vllm(plan, self.spec.path.name)
        for name, text in configs.items():
            _write_text(root / name / "config.pbtxt", text)
        _write_text(root / model.name / "1" / "model.json", plan.model_json)
        self.outcomes.append(ModelOutcome(model.name, False, 0.0, {}))
        return {
            "task": model.task,
            "backend": "vllm",
            "engine": dict(model.engine or {}),
            "triton_models": sorted(configs),
        }

    def build(self, index: int, model: ModelSpec, root: Path, with_weights: bool) -> dict[str, Any]:
        with located(self.spec.where(model)):
            if model.task == "text-generation":
                return self.build_vllm(index, model, root)
            return self._build_encoder(index, model, root, with_weights)

    def _build_encoder(
        self, index: int, model: ModelSpec, root: Path, with_weights: bool
    ) -> dict[str, Any]:
        started = time.monotonic()
        source = self.prepared.sources[model.name]
        settings = self.prepared.embedding.get(model.name)
        key = cache_key(self.spec, model, source, settings)
        reuse = _reusable(self.previous, model.name, key, self.old_repo)
        state = "unchanged, reusing the previous export" if reuse else "building"
        self.progress(f"[{index + 1}/{len(self.spec.models)}] {model.name} ({model.task}): {state}")
        tokenizer = self.tokenizer(model, source, reuse, root)
        plan = plan_model(
            self.spec, model, self.prepared.hf_configs[model.name], tokenizer, settings
        )
        configs = render_model(plan, self.spec.path.name)
        _write_configs_and_code(plan, configs, root)
        entry: dict[str, Any] = {
            "task": model.task,
            "target": self.spec.target_of(model),
            "cache_key": key,
            "source": {
                "spec": source.spec_source,
                "revision": model.revision,
                "fingerprint": source.fingerprint,
                "files": dict(source.files),
            },
            "triton_models": sorted(configs),
            "tokenizer": {"pad_token": tokenizer.pad_token, "pad_id": tokenizer.pad_id},
            "labels": list(plan.labels) if plan.labels is not None else None,
            "embedding": settings.as_manifest() if settings else None,
        }
        if not with_weights:
            return entry
        parity = self.onnx(model, source, tokenizer, reuse, root)
        entry["export"] = {"format": "onnx", "opset": model.export.opset, "exporter": "dynamo"}
        # reused files were hashed against the previous manifest by _reusable already
        entry["artifacts"] = dict(reuse["artifacts"]) if reuse else _artifact_hashes(model, root)
        entry["parity"] = parity
        seconds = time.monotonic() - started
        self.outcomes.append(ModelOutcome(model.name, reuse is None, seconds, parity))
        self.progress(f"  {model.name}: done in {seconds:.1f}s")
        return entry


def triton_model_names(spec: Spec) -> list[str]:
    """Every Triton model (folder) the spec produces."""
    names = []
    for model in spec.models:
        names.append(model.name)
        if model.task != "text-generation":
            names += [model.name + suffix for suffix in MEMBER_SUFFIXES]
    return names


def prepare(spec: Spec, repo: Path, progress: Progress, *, replacing: bool) -> Prepared:
    """The checks before any work: output folder, leftovers, every model's source and inputs.

    ``replacing``: the build will replace ``repo`` (``--check`` only reads it).
    """
    names = triton_model_names(spec)
    if replacing:
        check_output_folder(repo, spec_file=spec.path, model_names=names)
    for note in remove_stale_staging(repo):
        progress(note)
    sources: dict[str, ResolvedSource] = {}
    hf_configs: dict[str, HFConfig] = {}
    embedding: dict[str, EmbeddingSettings] = {}
    for model in spec.models:
        if model.task == "text-generation":
            continue
        source = resolve_source(model, spec)
        max_length = model.max_sequence_length
        if model.task == "text-embedding":
            with located(spec.where(model, "source")):
                embedding[model.name] = embedding_settings(model, source.directory)
            max_length = embedding[model.name].max_sequence_length.value
        hf_configs[model.name] = check_inputs(spec, model, source, max_length)
        sources[model.name] = source
    if replacing:
        protected = [source.directory for source in sources.values()]
        check_output_folder(repo, spec_file=spec.path, model_names=names, protected=protected)
    return Prepared(sources, hf_configs, embedding)


def _stage(
    spec: Spec,
    prepared: Prepared,
    repo: Path,
    root: Path,
    with_weights: bool,
    progress: Progress,
) -> tuple[ModelOutcome, ...]:
    previous = _read_manifest(repo)
    builder = _ModelBuilder(spec, prepared, previous, repo, progress)
    models = {}
    for index, model in enumerate(spec.models):
        models[model.name] = builder.build(index, model, root, with_weights)
    _write_text(root / ".gitignore", GITIGNORE)
    manifest = {
        "format": FORMAT,
        "tool": {"name": "triton-pack", "version": __version__},
        "spec_file": spec.path.name,
        "libraries": library_versions(),
        "models": models,
    }
    _write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return tuple(builder.outcomes)


def build_repository(
    spec: Spec, output: Path | None = None, progress: Progress = _stderr
) -> BuildResult:
    """Build ``spec`` into ``output`` (default: the spec's ``repository``), atomically."""
    repo = (output or spec.repository_dir).resolve()
    started = time.monotonic()
    prepared = prepare(spec, repo, progress, replacing=True)
    repo.parent.mkdir(parents=True, exist_ok=True)
    with staging(repo, "staging") as staged:
        outcomes = _stage(spec, prepared, repo, staged, with_weights=True, progress=progress)
        swap(staged, repo)
    progress(f"wrote {repo} in {time.monotonic() - started:.1f}s")
    return BuildResult(repo, outcomes)


def _tracked(root: Path) -> dict[str, bytes]:
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


def check_repository(
    spec: Spec, output: Path | None = None, progress: Progress = _stderr
) -> list[str]:
    """Differences between ``output``'s configs and code and what ``spec`` renders."""
    repo = (output or spec.repository_dir).resolve()
    prepared = prepare(spec, repo, progress, replacing=False)
    with staging(repo, "check") as staged:
        _stage(spec, prepared, repo, staged, with_weights=False, progress=progress)
        want = _tracked(staged)
    have = _tracked(repo)
    problems = [f"missing: {rel}" for rel in sorted(set(want) - set(have))]
    problems += [f"not in the spec's output: {rel}" for rel in sorted(set(have) - set(want))]
    problems += [
        f"differs: {rel}" for rel in sorted(set(want) & set(have)) if want[rel] != have[rel]
    ]
    return problems
