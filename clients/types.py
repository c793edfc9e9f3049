"""Typed views of what Triton reports: server and model metadata, model config, index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Classification",
    "ModelConfig",
    "ModelMetadata",
    "RepositoryModel",
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
