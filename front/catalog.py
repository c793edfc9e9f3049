"""Which served model does which task, read from the spec and the built repository.

The front is stateless: everything it needs besides Triton itself is here. For encoder tasks
that is the tokenizer the repository serves (``<name>_tokenizer/1/tokenizer.json``, to count
``usage`` tokens exactly as the served tokenizer does) and the task's settings (labels,
normalisation, the reranker's activation). For ``text-generation`` it is the engine's model
folder, read from the built ``<name>/1/model.json``, whose tokenizer carries the chat template.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import SpecError
from builder.manifest import read_manifest
from builder.spec import ModelSpec, Spec, load_spec

__all__ = ["Catalog", "CatalogError", "ServedModel", "load_catalog"]


class CatalogError(SpecError):
    """The spec and the built repository do not give the front what it needs."""


@dataclass(frozen=True)
class ServedModel:
    name: str
    task: str
    max_length: int | None = None  # the tokenizer member's truncation length
    tokenizer_file: Path | None = None  # encoder tasks: the served tokenizer.json
    normalize: bool | None = None  # text-embedding: the graph L2-normalises
    activation: str | None = None  # text-reranking: sigmoid or identity in the graph
    pair: bool = False  # text-classification of (text, text_pair)
    labels: tuple[str, ...] = ()
    engine: Mapping[str, Any] = field(default_factory=dict)  # text-generation: model.json

    @property
    def engine_model(self) -> str | None:
        value = self.engine.get("tokenizer") or self.engine.get("model")
        return str(value) if value else None

    @property
    def max_model_len(self) -> int | None:
        value = self.engine.get("max_model_len")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Catalog:
    spec_file: Path
    repository: Path
    models: tuple[ServedModel, ...]

    def get(self, name: str) -> ServedModel | None:
        for model in self.models:
            if model.name == name:
                return model
        return None

    def of_task(self, task: str) -> list[ServedModel]:
        return [model for model in self.models if model.task == task]


def _served_value(record_part: Any, key: str) -> Any:
    """``manifest.models[name].embedding[key].value`` when recorded."""
    if isinstance(record_part, dict) and isinstance(record_part.get(key), dict):
        return record_part[key].get("value")
    return None


def _head_kind(record: Any) -> str:
    """The reranker's score activation as built: ``sigmoid`` or ``identity`` (the head)."""
    export = record.export if record is not None else None
    head = export.get("head") if isinstance(export, dict) else None
    kind = head.get("kind") if isinstance(head, dict) else None
    return str(kind) if kind in ("sigmoid", "identity") else "sigmoid"


def _encoder(spec: Spec, model: ModelSpec, repository: Path, record: Any) -> ServedModel:
    tokenizer_file = repository / f"{model.name}_tokenizer" / "1" / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise CatalogError(
            f"{spec.where(model)}: {tokenizer_file} is missing: run `build-repo {spec.path}` "
            "first (the front counts usage tokens with the served tokenizer)"
        )
    embedding = record.embedding if record is not None else None
    normalize = _served_value(embedding, "normalize")
    max_length = _served_value(embedding, "max_sequence_length") or model.max_sequence_length
    labels = record.labels if record is not None and record.labels else model.labels or ()
    return ServedModel(
        name=model.name,
        task=model.task,
        max_length=int(max_length),
        tokenizer_file=tokenizer_file,
        normalize=bool(normalize) if normalize is not None else model.normalize,
        activation=_head_kind(record) if model.task == "text-reranking" else None,
        pair=bool(model.pair),
        labels=tuple(labels),
    )


def _generator(spec: Spec, model: ModelSpec, repository: Path) -> ServedModel:
    model_json = repository / model.name / "1" / "model.json"
    try:
        engine = json.loads(model_json.read_text(encoding="utf-8"))
    except OSError:
        raise CatalogError(
            f"{spec.where(model)}: {model_json} is missing: run `build-repo {spec.path}` first"
        ) from None
    except ValueError as exc:
        raise CatalogError(f"{model_json}: not JSON ({exc})") from None
    if not isinstance(engine, dict) or not engine.get("model"):
        raise CatalogError(f"{model_json}: has no engine 'model'")
    return ServedModel(name=model.name, task=model.task, engine=engine)


def needed_files(spec: Spec) -> list[str]:
    """The repository files the front reads (besides manifest.json)."""
    return [
        f"{model.name}/1/model.json"
        if model.task == "text-generation"
        else f"{model.name}_tokenizer/1/tokenizer.json"
        for model in spec.models
    ]


def _local_copy(spec: Spec, uri: str) -> Path:
    """An S3 repository (``s3://…``, as tritonserver takes it): the files the front reads,
    copied into a temporary folder."""
    from builder.storage import download_files, parse_repository_uri

    folder = Path(tempfile.mkdtemp(prefix="triton-pack-api-"))
    return download_files(parse_repository_uri(uri), needed_files(spec), folder)


def load_catalog(spec_path: str | Path, repository: str | Path | None = None) -> Catalog:
    """The spec's models as the built repository serves them. ``repository`` overrides the
    spec's own ``repository`` folder; it may be the S3 URI the repository was uploaded to."""
    spec = load_spec(spec_path)
    if repository is not None and str(repository).startswith("s3://"):
        folder = _local_copy(spec, str(repository))
    elif repository is not None:
        folder = Path(repository).resolve()
    else:
        folder = spec.repository_dir
    manifest = read_manifest(folder)
    if manifest is None:
        raise CatalogError(
            f"{folder}: no manifest.json: not a built repository; run `build-repo {spec.path}` "
            "first, or pass --repository"
        )
    served: list[ServedModel] = []
    for model in spec.models:
        record = manifest.models.get(model.name)
        if record is None:
            raise CatalogError(
                f"{spec.where(model)}: not in {folder}/manifest.json: the repository was built "
                "from another spec; run build-repo again"
            )
        if model.task == "text-generation":
            served.append(_generator(spec, model, folder))
        else:
            served.append(_encoder(spec, model, folder, record))
    return Catalog(spec_file=spec.path, repository=folder, models=tuple(served))


def task_names(models: Sequence[ServedModel]) -> str:
    return ", ".join(model.name for model in models) or "none"
