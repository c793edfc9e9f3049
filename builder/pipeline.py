"""The pipeline: the order of the steps for every spec entry, the cache, the verdicts.

``prepare`` runs every check before any work (the output folder, leftovers of killed builds,
each model's source, config.json, sentence-transformers settings and tokenizer). Then, per
model, in a staging folder: reuse the previous export when its cache key and file hashes
match (``builder.manifest``), else export the tokenizer and the graph (``builder.export``)
and judge them (``builder.parity``); plan the members (``builder.plan``), render and validate
their configs (``builder.render``), and write them (``builder.write``). The staging folder is
swapped in whole (``builder.output``) only when every model got through; a failure of any
kind leaves the previous repository byte-identical.

Exports are cached by a content hash of the spec entry's export-relevant keys, the resolved
embedding settings, the source files, the tool version and the exporting libraries'
versions; an unchanged model's ONNX and tokenizer files are hard-linked from the previous
repository after their hashes are checked against its manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder import __version__
from builder.errors import ExportError, located
from builder.gguf import GgufFile, conversion_key, converted_path, converter_versions
from builder.inputs import CheckedInputs, check_inputs
from builder.manifest import Manifest, ModelRecord, read_manifest
from builder.model_files import (
    EmbeddingSettings,
    Setting,
    embedding_settings,
    reranking_activation,
)
from builder.output import check_output_folder, remove_stale_staging, staging, swap
from builder.plan import ModelPlan, TokenizerInfo, member_suffixes, plan_model, plan_vllm
from builder.render import render_model, render_vllm
from builder.sources import ResolvedSource, file_sha256, resolve_source
from builder.spec import ModelSpec, Spec
from builder.write import (
    GITIGNORE,
    artifact_hashes,
    link,
    tracked_files,
    write_configs_and_code,
    write_text,
)

if TYPE_CHECKING:
    from builder.export import OnnxArtifact
    from builder.parity import ParityReport

__all__ = [
    "BuildResult",
    "ModelOutcome",
    "Prepared",
    "build_repository",
    "check_repository",
    "prepare",
    "triton_model_names",
]

LIBRARIES = ("torch", "transformers", "tokenizers", "onnx", "onnxscript", "onnxruntime")

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
    inputs: dict[str, CheckedInputs]  # config.json and registry entries, per model
    embedding: dict[str, EmbeddingSettings]
    activation: dict[str, Setting[str]] = field(default_factory=dict)  # rerankers'
    gguf: dict[str, GgufFile] = field(default_factory=dict)  # vLLM entries with 'gguf'

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
    if model.activation is not None:  # a reranker's activation is part of its graph
        payload["activation"] = model.activation
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _intact(previous: Manifest | None, name: str, key: str, repo: Path) -> ModelRecord | None:
    """The previous build's record of ``name`` if its key matches and its files hash as
    recorded."""
    record = previous.models.get(name) if previous else None
    if record is None or record.cache_key != key or not record.artifacts:
        return None
    for rel, sha in record.artifacts.items():
        path = repo / rel
        if not path.is_file() or file_sha256(path) != sha:
            return None
    return record


def _reusable(previous: Manifest | None, name: str, key: str, repo: Path) -> ModelRecord | None:
    """The previous build's record of encoder ``name`` if its export can be reused."""
    record = _intact(previous, name, key, repo)
    return record if record is not None and record.tokenizer is not None else None


class _ModelBuilder:
    """Builds one spec entry into ``root`` (export or reuse, parity, plan, render)."""

    def __init__(
        self,
        spec: Spec,
        prepared: Prepared,
        previous: Manifest | None,
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
        self, model: ModelSpec, source: ResolvedSource, reuse: ModelRecord | None, root: Path
    ) -> TokenizerInfo:
        target = root / f"{model.name}_tokenizer" / "1"
        if reuse is not None and reuse.tokenizer is not None:
            rel = f"{model.name}_tokenizer/1/tokenizer.json"
            link(self.old_repo / rel, root / rel)
            info = reuse.tokenizer
            unk = info.get("unk_id")
            return TokenizerInfo(
                pad_token=str(info["pad_token"]),
                pad_id=int(info["pad_id"]),
                unk_id=None if unk is None else int(unk),
            )
        from builder.export import export_tokenizer

        return export_tokenizer(source.directory, target)

    def onnx(
        self,
        model: ModelSpec,
        source: ResolvedSource,
        tokenizer: TokenizerInfo,
        plan: ModelPlan,
        reuse: ModelRecord | None,
        root: Path,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The served graph's parity figures, and the optimisation outcome (None when the
        spec does not ask for it)."""
        out_dir = root / f"{model.name}_onnx" / "1"
        if reuse is not None:
            for rel in reuse.artifacts:
                if rel.startswith(f"{model.name}_onnx/"):
                    link(self.old_repo / rel, root / rel)
            return dict(reuse.parity), (reuse.export or {}).get("optimize")
        from builder.export import export_onnx, load_model
        from builder.parity import SAMPLE_TEXTS, check_parity, parity_cases, text_case

        checked = self.prepared.inputs[model.name]
        config, architecture, task = checked.hf_config, checked.architecture, checked.task
        head = plan.head
        self.progress(
            f"  {model.name}: exporting ONNX (opset {model.export.opset}, {head.describe()} "
            "in the graph)"
        )
        torch_model = load_model(source.directory, task)
        artifact = export_onnx(torch_model, architecture, task, head, model.export.opset, out_dir)
        max_length = self.prepared.max_length(model)
        cases = parity_cases(architecture, config.vocab_size, max_length, tokenizer.pad_id)
        texts = text_case(
            root / f"{model.name}_tokenizer" / "1" / "tokenizer.json",
            SAMPLE_TEXTS + model.export.parity_texts,
            architecture,
            max_length,
            tokenizer,
            pairs=len(plan.tokenizer.inputs) == 2,
        )
        rtol = task.rtol if model.export.rtol is None else model.export.rtol

        def parity(graph: OnnxArtifact) -> ParityReport:
            return check_parity(
                torch_model, graph, architecture, task, head, cases, model.export.atol, rtol, texts
            )

        report = parity(artifact)
        self.progress(f"  {model.name}: parity {report.verdict}: {report.describe()}")
        report.judge(self.spec.where(model, "export.atol"), model.export.allow_parity_failure)
        if not model.export.optimize:
            return report.as_dict(), None
        optimized, outcome = self._optimize(model, artifact, parity)
        return (optimized or report).as_dict(), outcome

    def _optimize(
        self, model: ModelSpec, artifact: OnnxArtifact, parity: Callable[[OnnxArtifact], Any]
    ) -> tuple[ParityReport | None, dict[str, Any]]:
        """export.optimize: fuse, judge the fused graph by parity, and keep it only if it
        passes (it then replaces the plain graph's files). Returns its parity report (None
        when not kept) and the outcome for the manifest."""
        from builder.export import optimize_onnx

        self.progress(f"  {model.name}: optimising the graph (ONNX Runtime fusions)")
        scratch = artifact.directory / "optimizing"
        try:
            try:
                fused, fusions = optimize_onnx(artifact, scratch)
            except ExportError as exc:
                self.progress(f"  {model.name}: optimisation not kept: {exc}")
                return None, {"applied": False, "reason": str(exc)}
            report = parity(fused)
            described = ", ".join(f"{name} x{count}" for name, count in fusions.items())
            if not report.passed:
                reason = f"the fused graph failed parity: {report.describe()}"
                self.progress(f"  {model.name}: optimisation not kept: {reason}")
                return None, {"applied": False, "reason": reason, "fusions": fusions}
            for name in artifact.files:
                (artifact.directory / name).unlink()
            for name in fused.files:
                (scratch / name).rename(artifact.directory / name)
            self.progress(
                f"  {model.name}: optimised ({described or 'no fusion applied'}); parity "
                f"{report.verdict}: {report.describe()}"
            )
            return report, {"applied": True, "fusions": fusions}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def build_vllm(
        self, index: int, model: ModelSpec, root: Path, with_weights: bool
    ) -> ModelRecord:
        """A vllm backend model: config.pbtxt and 1/model.json; a GGUF entry's converted
        folder (``builder.gguf``) besides, with the folder's final path as engine.model."""
        started = time.monotonic()
        self.progress(f"[{index + 1}/{len(self.spec.models)}] {model.name} (text-generation, vllm)")
        gguf = self.prepared.gguf.get(model.name)
        folder = converted_path(self.old_repo, model.name) if gguf else None
        plan = plan_vllm(model, None if folder is None else str(folder))
        configs = render_vllm(plan, self.spec.path.name)
        for name, text in configs.items():
            write_text(root / name / "config.pbtxt", text)
        write_text(root / model.name / "1" / "model.json", plan.model_json)
        record = ModelRecord(
            task=model.task,
            triton_models=tuple(sorted(configs)),
            backend="vllm",
            engine=json.loads(plan.model_json),
        )
        converted = False
        if gguf is not None:
            key = conversion_key(gguf, converter_versions(), __version__)
            record = replace(record, source=gguf.as_manifest(), cache_key=key)
            if with_weights:
                artifacts, converted = self._converted_gguf(model, gguf, key, root)
                record = replace(record, artifacts=artifacts)
        self.outcomes.append(ModelOutcome(model.name, converted, time.monotonic() - started, {}))
        return record

    def _converted_gguf(
        self, model: ModelSpec, gguf: GgufFile, key: str, root: Path
    ) -> tuple[dict[str, str], bool]:
        """The converted folder in ``root``: hard links to the previous build's when its
        conversion key matches and its files are intact, else a new conversion. Returns the
        folder's file hashes (by repository path) and whether it was converted."""
        reuse = _intact(self.previous, model.name, key, self.old_repo)
        if reuse is not None:
            self.progress(f"  {model.name}: GGUF unchanged, reusing the previous conversion")
            for rel in reuse.artifacts:
                link(self.old_repo / rel, root / rel)
            return dict(reuse.artifacts), False
        from builder.gguf import convert

        size_mb = gguf.path.stat().st_size / 2**20
        self.progress(
            f"  {model.name}: converting {gguf.path.name} ({size_mb:.0f} MiB) to a float32 "
            "Hugging Face folder"
        )
        started = time.monotonic()
        done = convert(gguf, converted_path(root, model.name))
        template = "with" if done.chat_template else "WITHOUT a"
        self.progress(
            f"  {model.name}: converted in {time.monotonic() - started:.1f}s "
            f"({done.size_bytes / 2**20:.0f} MiB, {template} chat template)"
        )
        files = sorted(path for path in done.folder.rglob("*") if path.is_file())
        return {path.relative_to(root).as_posix(): file_sha256(path) for path in files}, True

    def build(self, index: int, model: ModelSpec, root: Path, with_weights: bool) -> ModelRecord:
        with located(self.spec.where(model)):
            if model.task == "text-generation":
                return self.build_vllm(index, model, root, with_weights)
            return self._build_encoder(index, model, root, with_weights)

    def _build_encoder(
        self, index: int, model: ModelSpec, root: Path, with_weights: bool
    ) -> ModelRecord:
        started = time.monotonic()
        source = self.prepared.sources[model.name]
        settings = self.prepared.embedding.get(model.name)
        key = cache_key(self.spec, model, source, settings)
        reuse = _reusable(self.previous, model.name, key, self.old_repo)
        state = "unchanged, reusing the previous export" if reuse else "building"
        self.progress(f"[{index + 1}/{len(self.spec.models)}] {model.name} ({model.task}): {state}")
        tokenizer = self.tokenizer(model, source, reuse, root)
        checked = self.prepared.inputs[model.name]
        plan = plan_model(
            self.spec,
            model,
            checked.hf_config,
            tokenizer,
            settings,
            architecture=checked.architecture,
            activation=self.prepared.activation.get(model.name),
        )
        configs = render_model(plan, self.spec.path.name)
        write_configs_and_code(plan, configs, root)
        record = ModelRecord(
            task=model.task,
            triton_models=tuple(sorted(configs)),
            target=self.spec.target_of(model),
            cache_key=key,
            source={
                "spec": source.spec_source,
                "revision": model.revision,
                "fingerprint": source.fingerprint,
                "files": dict(source.files),
            },
            tokenizer={
                "pad_token": tokenizer.pad_token,
                "pad_id": tokenizer.pad_id,
                "unk_id": tokenizer.unk_id,
            },
            labels=plan.labels,
            embedding=settings.as_manifest() if settings else None,
        )
        if not with_weights:
            return record
        parity, optimize = self.onnx(model, source, tokenizer, plan, reuse, root)
        seconds = time.monotonic() - started
        self.outcomes.append(ModelOutcome(model.name, reuse is None, seconds, parity))
        self.progress(f"  {model.name}: done in {seconds:.1f}s")
        return replace(
            record,
            export={
                "format": "onnx",
                "opset": model.export.opset,
                "exporter": "dynamo",
                "head": plan.head.as_manifest(),
                **({"optimize": optimize} if optimize is not None else {}),
            },
            # reused files were hashed against the previous manifest by _reusable already
            artifacts=dict(reuse.artifacts) if reuse else artifact_hashes(plan, root),
            parity=parity,
        )


def triton_model_names(spec: Spec) -> list[str]:
    """Every Triton model (folder) the spec produces."""
    names = []
    for model in spec.models:
        names.append(model.name)
        if model.task != "text-generation":
            names += [model.name + suffix for suffix in member_suffixes(model.task)]
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
    checked: dict[str, CheckedInputs] = {}
    embedding: dict[str, EmbeddingSettings] = {}
    activation: dict[str, Setting[str]] = {}
    gguf: dict[str, GgufFile] = {}
    for model in spec.models:
        if model.task == "text-generation":
            if model.gguf is not None:
                gguf[model.name] = _checked_gguf(spec, model, converting=replacing)
            continue
        source = resolve_source(model, spec)
        max_length = model.max_sequence_length
        if model.task == "text-embedding":
            with located(spec.where(model, "source")):
                embedding[model.name] = embedding_settings(model, source.directory)
            max_length = embedding[model.name].max_sequence_length.value
        checked[model.name] = check_inputs(spec, model, source, max_length)
        sources[model.name] = source
        if model.task == "text-reranking":
            with located(spec.where(model, "source")):
                activation[model.name] = reranking_activation(
                    model.activation, checked[model.name].hf_config, source.directory
                )
    if replacing:
        protected = [source.directory for source in sources.values()]
        protected += [file.path.parent for file in gguf.values()]
        check_output_folder(repo, spec_file=spec.path, model_names=names, protected=protected)
    return Prepared(sources, checked, embedding, activation, gguf)


def _checked_gguf(spec: Spec, model: ModelSpec, *, converting: bool) -> GgufFile:
    """The entry's GGUF file, found and hashed; when the build may convert it, also the
    check that transformers can read GGUF here. Errors name ``models[i].gguf``."""
    from builder.gguf import require_converter, resolve_gguf

    with located(spec.where(model, "gguf")):
        found = resolve_gguf(str(model.gguf), spec.base_dir)
        if converting:
            require_converter()
    return found


def _stage(
    spec: Spec,
    prepared: Prepared,
    repo: Path,
    root: Path,
    with_weights: bool,
    progress: Progress,
) -> tuple[ModelOutcome, ...]:
    previous = read_manifest(repo)
    builder = _ModelBuilder(spec, prepared, previous, repo, progress)
    records = {}
    for index, model in enumerate(spec.models):
        records[model.name] = builder.build(index, model, root, with_weights)
    write_text(root / ".gitignore", GITIGNORE)
    Manifest(__version__, spec.path.name, library_versions(), records).write(root)
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


def check_repository(
    spec: Spec, output: Path | None = None, progress: Progress = _stderr
) -> list[str]:
    """Differences between ``output``'s configs and code and what ``spec`` renders."""
    repo = (output or spec.repository_dir).resolve()
    prepared = prepare(spec, repo, progress, replacing=False)
    with staging(repo, "check") as staged:
        _stage(spec, prepared, repo, staged, with_weights=False, progress=progress)
        want = tracked_files(staged)
    have = tracked_files(repo)
    problems = [f"missing: {rel}" for rel in sorted(set(want) - set(have))]
    problems += [f"not in the spec's output: {rel}" for rel in sorted(set(have) - set(want))]
    problems += [
        f"differs: {rel}" for rel in sorted(set(want) & set(have)) if want[rel] != have[rel]
    ]
    return problems
