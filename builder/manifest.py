"""``manifest.json``: what a build wrote and where it came from, read and written here only.

A versioned, typed object: ``"format": "triton-pack-repository/1"`` marks the folder as
triton-pack's (``builder.output`` refuses to replace a folder without it). Per model it
records the source and its file hashes, the cache key, the tokenizer's padding, labels, the
embedding settings and where each came from, the export, the artifacts' hashes and the parity
figures; for the whole build, the tool and library versions. Reading tolerates anything (an
unreadable or foreign manifest is "no previous build"); writing is deterministic (sorted keys).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "LEGACY_FORMAT", "MANIFEST", "Manifest", "ModelRecord", "read_manifest"]

MANIFEST = "manifest.json"
FORMAT = "triton-pack-repository/1"
LEGACY_FORMAT = 1  # triton-pack 0.1.0 builds made before the marker existed


@dataclass(frozen=True)
class ModelRecord:
    """One spec entry's record. Encoder fields are empty for a vLLM model and vice versa."""

    task: str
    triton_models: tuple[str, ...]
    target: str | None = None
    cache_key: str | None = None
    source: dict[str, Any] | None = None
    tokenizer: dict[str, Any] | None = None  # {"pad_token", "pad_id"}
    labels: tuple[str, ...] | None = None
    embedding: dict[str, Any] | None = None  # {"pooling": {"value", "from"}, ...}
    export: dict[str, Any] | None = None  # {"format", "opset", "exporter"}
    artifacts: dict[str, str] = field(default_factory=dict)  # repository path -> sha256
    parity: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None  # "vllm"
    engine: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"task": self.task, "triton_models": list(self.triton_models)}
        if self.backend is not None:
            data.update(backend=self.backend, engine=self.engine or {})
            if self.source is not None:  # a converted GGUF file
                data.update(source=self.source, cache_key=self.cache_key)
                if self.artifacts:
                    data.update(artifacts=self.artifacts)
            return data
        data.update(
            target=self.target,
            cache_key=self.cache_key,
            source=self.source,
            tokenizer=self.tokenizer,
            labels=list(self.labels) if self.labels is not None else None,
            embedding=self.embedding,
        )
        if self.export is not None:  # --check renders without exporting
            data.update(export=self.export, artifacts=self.artifacts, parity=self.parity)
        return data

    @classmethod
    def from_json(cls, data: Any) -> ModelRecord | None:
        if not isinstance(data, dict):
            return None
        labels = data.get("labels")
        artifacts = data.get("artifacts")
        parity = data.get("parity")
        return cls(
            task=str(data.get("task", "")),
            triton_models=tuple(str(n) for n in data.get("triton_models") or ()),
            target=data.get("target"),
            cache_key=data.get("cache_key"),
            source=data.get("source"),
            tokenizer=data.get("tokenizer"),
            labels=tuple(str(x) for x in labels) if isinstance(labels, list) else None,
            embedding=data.get("embedding"),
            export=data.get("export"),
            artifacts={str(k): str(v) for k, v in artifacts.items()}
            if isinstance(artifacts, dict)
            else {},
            parity=parity if isinstance(parity, dict) else {},
            backend=data.get("backend"),
            engine=data.get("engine"),
        )


@dataclass(frozen=True)
class Manifest:
    tool_version: str
    spec_file: str
    libraries: dict[str, str]
    models: dict[str, ModelRecord]
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "tool": {"name": "triton-pack", "version": self.tool_version},
            "spec_file": self.spec_file,
            "libraries": self.libraries,
            "models": {name: record.to_json() for name, record in self.models.items()},
        }

    def write(self, repository: Path) -> None:
        text = json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"
        (repository / MANIFEST).write_text(text, encoding="utf-8")

    def artifact_paths(self) -> Iterator[str]:
        """Every file the build wrote besides configs and code (weights, tokenizer files)."""
        for record in self.models.values():
            yield from record.artifacts


def is_triton_pack(data: Any) -> bool:
    """Whether a parsed manifest is triton-pack's (this format, or 0.1.0's)."""
    if not isinstance(data, dict):
        return False
    if data.get("format") == FORMAT:
        return True
    tool = data.get("tool")
    return (
        data.get("format") == LEGACY_FORMAT
        and isinstance(tool, dict)
        and tool.get("name") == "triton-pack"
    )


def read_manifest(repository: Path) -> Manifest | None:
    """The manifest in ``repository``, or None when there is none that triton-pack wrote."""
    try:
        data = json.loads((repository / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not is_triton_pack(data):
        return None
    tool = data.get("tool") if isinstance(data.get("tool"), dict) else {}
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    records = {name: ModelRecord.from_json(entry) for name, entry in models.items()}
    libraries = data.get("libraries") if isinstance(data.get("libraries"), dict) else {}
    return Manifest(
        tool_version=str(tool.get("version", "")),
        spec_file=str(data.get("spec_file", "")),
        libraries={str(k): str(v) for k, v in libraries.items()},
        models={name: r for name, r in records.items() if r is not None},
        format=str(data["format"]),
    )
