"""Typed clients for models served from a triton-pack repository.

Importable with only ``tritonclient[http,grpc]`` and numpy installed::

    from clients import EmbeddingClient
    vectors = EmbeddingClient("localhost:8000", "minilm").embed(["hello", "world"])

Errors: every error raised on purpose derives from ``clients.ClientError`` (see
``clients.errors`` for the tree).
"""

from clients.client import AsyncTritonClient, TritonClient
from clients.core import RetryPolicy
from clients.errors import (
    ClientError,
    ConnectError,
    DeadlineExceeded,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServerError,
    TransportError,
    UnavailableError,
)
from clients.generation import (
    AsyncGenerationClient,
    AsyncTextStream,
    GenerationClient,
    TextStream,
)
from clients.llm_core import Chunk, Generation
from clients.tasks import (
    AsyncClassificationClient,
    AsyncEmbeddingClient,
    AsyncRerankClient,
    AsyncTokenClassificationClient,
    ClassificationClient,
    EmbeddingClient,
    RerankClient,
    TokenClassificationClient,
)
from clients.types import (
    Classification,
    Entity,
    ModelConfig,
    ModelMetadata,
    RepositoryModel,
    RerankResult,
    ServerMetadata,
    TensorSpec,
)

__all__ = [
    "AsyncClassificationClient",
    "AsyncEmbeddingClient",
    "AsyncGenerationClient",
    "AsyncRerankClient",
    "AsyncTextStream",
    "AsyncTokenClassificationClient",
    "AsyncTritonClient",
    "Chunk",
    "Classification",
    "ClassificationClient",
    "ClientError",
    "ConnectError",
    "DeadlineExceeded",
    "EmbeddingClient",
    "Entity",
    "Generation",
    "GenerationClient",
    "InvalidInputError",
    "ModelConfig",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "RepositoryModel",
    "RerankClient",
    "RerankResult",
    "RetryPolicy",
    "ServerError",
    "ServerMetadata",
    "TensorSpec",
    "TextStream",
    "TokenClassificationClient",
    "TransportError",
    "TritonClient",
    "UnavailableError",
]
