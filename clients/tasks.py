"""Clients for the served contracts: embeddings and classification, sync and asyncio.

Inputs larger than the model's ``max_batch_size`` are split, sent concurrently (at most
``concurrency`` requests in flight) and reassembled in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from clients.client import AsyncTritonClient, TritonClient
from clients.core import chunks, classifications, text_array
from clients.errors import ServerError
from clients.types import Classification, ModelConfig, ModelMetadata

__all__ = [
    "AsyncClassificationClient",
    "AsyncEmbeddingClient",
    "ClassificationClient",
    "EmbeddingClient",
]

Arrays = dict[str, npt.NDArray[Any]]
_Self = TypeVar("_Self", bound="_SyncTask")
_ASelf = TypeVar("_ASelf", bound="_AsyncTask")


def _joined(parts: list[Arrays], names: Sequence[str]) -> Arrays:
    return {name: np.concatenate([part[name] for part in parts]) for name in names}


def _embedding_dim(metadata: ModelMetadata) -> int:
    for output in metadata.outputs:
        if output.name == "EMBEDDING":
            return output.shape[-1]
    raise ServerError(f"model {metadata.name!r} has no EMBEDDING output: not an embedding model")


def _labels(config: ModelConfig) -> list[str]:
    try:
        labels = json.loads(config.parameters["labels"])
    except (KeyError, ValueError):
        raise ServerError(
            f"model {config.name!r} has no 'labels' parameter: not a classification model"
        ) from None
    return [str(label) for label in labels]


class _SyncTask:
    outputs: tuple[str, ...] = ()

    def __init__(self, client: TritonClient | str, model: str, *, concurrency: int = 4) -> None:
        self.client = TritonClient(client) if isinstance(client, str) else client
        self.model = model
        self.concurrency = max(1, concurrency)

    def _run(self, texts: Sequence[str], timeout: float | None) -> Arrays:
        array = text_array(texts)
        _, config = self.client.model_info(self.model)
        ranges = chunks(len(texts), config.max_batch_size or len(texts))

        def one(bounds: tuple[int, int]) -> Arrays:
            batch = {"TEXT": array[bounds[0] : bounds[1]]}
            return self.client.infer(self.model, batch, outputs=self.outputs, timeout=timeout)

        if len(ranges) <= 1:
            parts = [one(r) for r in ranges]
        else:
            with ThreadPoolExecutor(min(self.concurrency, len(ranges))) as pool:
                parts = list(pool.map(one, ranges))  # map keeps the order
        return _joined(parts, self.outputs)

    def close(self) -> None:
        self.client.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EmbeddingClient(_SyncTask):
    """``EmbeddingClient("localhost:8000", "minilm").embed(texts)`` -> (n, D) float32."""

    outputs = ("EMBEDDING",)

    def __init__(
        self, client: TritonClient | str, model: str = "minilm", *, concurrency: int = 4
    ) -> None:
        super().__init__(client, model, concurrency=concurrency)

    def embed(
        self, texts: Sequence[str], *, timeout: float | None = None
    ) -> npt.NDArray[np.float32]:
        if len(texts) == 0:
            metadata, _ = self.client.model_info(self.model)
            return np.zeros((0, _embedding_dim(metadata)), dtype=np.float32)
        return self._run(texts, timeout)["EMBEDDING"].astype(np.float32, copy=False)


class ClassificationClient(_SyncTask):
    """``ClassificationClient(url, "sentiment").classify(texts)`` -> list of Classification."""

    outputs = ("LABEL", "SCORES")

    def labels(self) -> list[str]:
        """The model's labels, in the order of SCORES."""
        return _labels(self.client.model_info(self.model)[1])

    def classify(
        self, texts: Sequence[str], *, timeout: float | None = None
    ) -> list[Classification]:
        names = self.labels()
        if len(texts) == 0:
            return []
        arrays = self._run(texts, timeout)
        return classifications(arrays["LABEL"], arrays["SCORES"], names)


class _AsyncTask:
    outputs: tuple[str, ...] = ()

    def __init__(
        self, client: AsyncTritonClient | str, model: str, *, concurrency: int = 4
    ) -> None:
        self.client = AsyncTritonClient(client) if isinstance(client, str) else client
        self.model = model
        self.concurrency = max(1, concurrency)

    async def _run(self, texts: Sequence[str], timeout: float | None) -> Arrays:
        array = text_array(texts)
        _, config = await self.client.model_info(self.model)
        ranges = chunks(len(texts), config.max_batch_size or len(texts))
        gate = asyncio.Semaphore(self.concurrency)

        async def one(bounds: tuple[int, int]) -> Arrays:
            async with gate:
                batch = {"TEXT": array[bounds[0] : bounds[1]]}
                return await self.client.infer(
                    self.model, batch, outputs=self.outputs, timeout=timeout
                )

        parts = await asyncio.gather(*(one(r) for r in ranges))  # gather keeps the order
        return _joined(list(parts), self.outputs)

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self: _ASelf) -> _ASelf:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncEmbeddingClient(_AsyncTask):
    outputs = ("EMBEDDING",)

    def __init__(
        self, client: AsyncTritonClient | str, model: str = "minilm", *, concurrency: int = 4
    ) -> None:
        super().__init__(client, model, concurrency=concurrency)

    async def embed(
        self, texts: Sequence[str], *, timeout: float | None = None
    ) -> npt.NDArray[np.float32]:
        if len(texts) == 0:
            metadata, _ = await self.client.model_info(self.model)
            return np.zeros((0, _embedding_dim(metadata)), dtype=np.float32)
        return (await self._run(texts, timeout))["EMBEDDING"].astype(np.float32, copy=False)


class AsyncClassificationClient(_AsyncTask):
    outputs = ("LABEL", "SCORES")

    async def labels(self) -> list[str]:
        return _labels((await self.client.model_info(self.model))[1])

    async def classify(
        self, texts: Sequence[str], *, timeout: float | None = None
    ) -> list[Classification]:
        names = await self.labels()
        if len(texts) == 0:
            return []
        arrays = await self._run(texts, timeout)
        return classifications(arrays["LABEL"], arrays["SCORES"], names)
