"""Typed views of what Triton reports: server and model metadata, model config, index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Classification",
    "Entity",
    "ModelConfig",
    "ModelMetadata",
    "RepositoryModel",
    "RerankResult",
    "ServerMetadata",
    "TensorSpec",
]


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as model metadata reports it; ``shape`` includes the batch dimension (-1)."""

    name: str
    datatype: str  # Triton datatype: FP32, INT64, BYTES, ...
    shape: tuple[int, ...]
    optional: bool = False


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class ModelConfig:
    """The parts of a model's config that clients use; ``raw`` keeps the whole JSON."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]  # dims without the batch dimension
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, str]
    decoupled: bool
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class RepositoryModel:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING, UNLOADING, or "" when never loaded
    reason: str


@dataclass(frozen=True)
class Classification:
    """One text's result: the best label, its probability, and all probabilities by label."""

    label: str
    score: float
    scores: dict[str, float]


@dataclass(frozen=True)
class RerankResult:
    """One document's score for a query; ``index`` is its position in the documents given."""

    index: int
    score: float
    document: str


@dataclass(frozen=True)
class Entity:
    """An entity (or, with aggregation ``none``, a token) found in a text.

    ``label`` is transformers' ``entity_group`` (aggregated) or ``entity`` (per token);
    ``start`` and ``end`` are character offsets into the text sent, so
    ``text[start:end]`` is the entity as written; ``index`` is the token's position (only
    with aggregation ``none``)."""

    label: str
    score: float
    word: str
    start: int
    end: int
    index: int | None = None
