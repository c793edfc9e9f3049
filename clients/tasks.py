"""Clients for the served contracts: embeddings, classification (of texts or pairs),
reranking and token classification (entities), sync and asyncio.

Inputs larger than the model's ``max_batch_size`` are split, sent concurrently (at most
``concurrency`` requests in flight, on threads the task client keeps for its lifetime) and
reassembled in order.

A task client built from a URL owns the ``TritonClient`` it makes and closes it; one given a
client only borrows it: closing the task client leaves that client open.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from clients.client import AsyncTritonClient, TritonClient
from clients.core import (
    RetryPolicy,
    check_top_k,
    chunks,
    classifications,
    entities,
    pair_arrays,
    query_array,
    rerank_results,
    text_array,
)
from clients.endpoints import Protocol
from clients.errors import ClientClosedError, ConfigurationError, ServerError
from clients.types import Classification, Entity, ModelConfig, ModelMetadata, RerankResult

__all__ = [
    "AsyncClassificationClient",
    "AsyncEmbeddingClient",
    "AsyncRerankClient",
    "AsyncTokenClassificationClient",
    "ClassificationClient",
    "EmbeddingClient",
    "RerankClient",
    "TokenClassificationClient",
]

Arrays = dict[str, npt.NDArray[Any]]
_Self = TypeVar("_Self", bound="_SyncTask")
_ASelf = TypeVar("_ASelf", bound="_AsyncTask")


def _joined(parts: list[Arrays], names: tuple[str, ...]) -> Arrays:
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


def _concurrency(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"concurrency: expected an int >= 1, got {value!r}")
    return value


def _model(model: str | None, default: str, kind: str) -> str:
    chosen = model if model is not None else default
    if not isinstance(chosen, str) or not chosen:
        raise ConfigurationError(f"{kind}: model: expected the served model's name, got {model!r}")
    return chosen


class _SyncTask:
    outputs: tuple[str, ...] = ()
    default_model = ""

    def __init__(
        self,
        client: TritonClient | str,
        model: str | None = None,
        *,
        protocol: Protocol = "http",
        concurrency: int = 4,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.model = _model(model, self.default_model, type(self).__name__)
        self.concurrency = _concurrency(concurrency)
        self._owns = not isinstance(client, TritonClient)
        if isinstance(client, TritonClient):
            self.client = client
        else:
            self.client = TritonClient(client, protocol, timeout=timeout, retry=retry)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise ClientClosedError(f"the {type(self).__name__} for {self.model!r} is closed")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="triton-pack")
            return self._pool

    def _run(self, inputs: Arrays, timeout: float | None) -> Arrays:
        """``inputs`` (equal rows) split by max_batch_size, sent, joined in order."""
        self._executor()  # a closed task client says so, whatever the batch size
        _, config = self.client.model_info(self.model)
        count = len(next(iter(inputs.values())))
        ranges = chunks(count, config.max_batch_size or count)

        def one(bounds: tuple[int, int]) -> Arrays:
            batch = {name: array[bounds[0] : bounds[1]] for name, array in inputs.items()}
            return self.client.infer(self.model, batch, outputs=self.outputs, timeout=timeout)

        if len(ranges) <= 1:
            parts = [one(r) for r in ranges]
        else:
            parts = list(self._executor().map(one, ranges))  # map keeps the order
        return _joined(parts, self.outputs)

    def close(self) -> None:
        """Stop the worker threads; close the client only if this task client made it."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._owns:
            self.client.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EmbeddingClient(_SyncTask):
    """``EmbeddingClient("localhost:8000", "minilm").embed(texts)`` -> (n, D) float32.

    ``EmbeddingClient("localhost:8001", "minilm", protocol="grpc")`` speaks gRPC.
    """

    outputs = ("EMBEDDING",)
    default_model = "minilm"

    def embed(
        self, texts: Iterable[str], *, timeout: float | None = None
    ) -> npt.NDArray[np.float32]:
        array = text_array(texts)
        if len(array) == 0:
            self._executor()
            metadata, _ = self.client.model_info(self.model)
            return np.zeros((0, _embedding_dim(metadata)), dtype=np.float32)
        return self._run({"TEXT": array}, timeout)["EMBEDDING"].astype(np.float32, copy=False)


def _classify_inputs(texts: Iterable[str], pairs: Iterable[str] | None) -> Arrays:
    """TEXT, and TEXT_PAIR for a pair classifier (row i of both: one pair)."""
    if pairs is None:
        return {"TEXT": text_array(texts)}
    first, second = pair_arrays(texts, pairs)
    return {"TEXT": first, "TEXT_PAIR": second}


class ClassificationClient(_SyncTask):
    """``ClassificationClient(url, "sentiment").classify(texts)`` -> list of Classification;
    a pair classifier (NLI) takes ``classify(premises, pairs=hypotheses)``."""

    outputs = ("LABEL", "SCORES")

    def labels(self) -> list[str]:
        """The model's labels, in the order of SCORES."""
        return _labels(self.client.model_info(self.model)[1])

    def classify(
        self,
        texts: Iterable[str],
        pairs: Iterable[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Classification]:
        inputs = _classify_inputs(texts, pairs)
        names = self.labels()
        if len(inputs["TEXT"]) == 0:
            return []
        arrays = self._run(inputs, timeout)
        return classifications(arrays["LABEL"], arrays["SCORES"], names)


class RerankClient(_SyncTask):
    """``RerankClient(url, "reranker").rerank(query, documents)`` -> RerankResult list, best
    first (a text-reranking model: SCORE per (QUERY, TEXT) pair)."""

    outputs = ("SCORE",)

    def rerank(
        self,
        query: str,
        documents: Iterable[str],
        top_k: int | None = None,
        *,
        timeout: float | None = None,
    ) -> list[RerankResult]:
        """Every document scored against ``query``, sorted by score (best first; equal
        scores keep the documents' order); the first ``top_k`` when given."""
        texts = text_array(documents, "documents")
        keep = check_top_k(top_k)
        queries = query_array(query, len(texts))
        self._executor()
        if len(texts) == 0:
            return []
        scores = self._run({"QUERY": queries, "TEXT": texts}, timeout)["SCORE"]
        return rerank_results(scores, [t.decode("utf-8") for t in texts[:, 0]], keep)


class TokenClassificationClient(_SyncTask):
    """``TokenClassificationClient(url, "ner").entities(texts)`` -> one Entity list per
    text (a token-classification model: ENTITIES, grouped as its spec's aggregation says)."""

    outputs = ("ENTITIES",)

    def entities(self, texts: Iterable[str], *, timeout: float | None = None) -> list[list[Entity]]:
        array = text_array(texts)
        self._executor()
        if len(array) == 0:
            return []
        return entities(self._run({"TEXT": array}, timeout)["ENTITIES"])


class _AsyncTask:
    outputs: tuple[str, ...] = ()
    default_model = ""

    def __init__(
        self,
        client: AsyncTritonClient | str,
        model: str | None = None,
        *,
        protocol: Protocol = "http",
        concurrency: int = 4,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.model = _model(model, self.default_model, type(self).__name__)
        self.concurrency = _concurrency(concurrency)
        self._owns = not isinstance(client, AsyncTritonClient)
        if isinstance(client, AsyncTritonClient):
            self.client = client
        else:
            self.client = AsyncTritonClient(client, protocol, timeout=timeout, retry=retry)
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"the {type(self).__name__} for {self.model!r} is closed")

    async def _run(self, inputs: Arrays, timeout: float | None) -> Arrays:
        self._check_open()
        _, config = await self.client.model_info(self.model)
        count = len(next(iter(inputs.values())))
        ranges = chunks(count, config.max_batch_size or count)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(bounds: tuple[int, int]) -> Arrays:
            async with gate:
                batch = {name: array[bounds[0] : bounds[1]] for name, array in inputs.items()}
                return await self.client.infer(
                    self.model, batch, outputs=self.outputs, timeout=timeout
                )

        parts = await asyncio.gather(*(one(r) for r in ranges))  # gather keeps the order
        return _joined(list(parts), self.outputs)

    async def close(self) -> None:
        """Close the client only if this task client made it."""
        self._closed = True
        if self._owns:
            await self.client.close()

    async def __aenter__(self: _ASelf) -> _ASelf:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncEmbeddingClient(_AsyncTask):
    outputs = ("EMBEDDING",)
    default_model = "minilm"

    async def embed(
        self, texts: Iterable[str], *, timeout: float | None = None
    ) -> npt.NDArray[np.float32]:
        array = text_array(texts)
        if len(array) == 0:
            self._check_open()
            metadata, _ = await self.client.model_info(self.model)
            return np.zeros((0, _embedding_dim(metadata)), dtype=np.float32)
        embedded = await self._run({"TEXT": array}, timeout)
        return embedded["EMBEDDING"].astype(np.float32, copy=False)


class AsyncClassificationClient(_AsyncTask):
    outputs = ("LABEL", "SCORES")

    async def labels(self) -> list[str]:
        return _labels((await self.client.model_info(self.model))[1])

    async def classify(
        self,
        texts: Iterable[str],
        pairs: Iterable[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Classification]:
        inputs = _classify_inputs(texts, pairs)
        self._check_open()
        names = await self.labels()
        if len(inputs["TEXT"]) == 0:
            return []
        arrays = await self._run(inputs, timeout)
        return classifications(arrays["LABEL"], arrays["SCORES"], names)


class AsyncRerankClient(_AsyncTask):
    outputs = ("SCORE",)

    async def rerank(
        self,
        query: str,
        documents: Iterable[str],
        top_k: int | None = None,
        *,
        timeout: float | None = None,
    ) -> list[RerankResult]:
        texts = text_array(documents, "documents")
        keep = check_top_k(top_k)
        queries = query_array(query, len(texts))
        self._check_open()
        if len(texts) == 0:
            return []
        scores = (await self._run({"QUERY": queries, "TEXT": texts}, timeout))["SCORE"]
        return rerank_results(scores, [t.decode("utf-8") for t in texts[:, 0]], keep)


class AsyncTokenClassificationClient(_AsyncTask):
    outputs = ("ENTITIES",)

    async def entities(
        self, texts: Iterable[str], *, timeout: float | None = None
    ) -> list[list[Entity]]:
        array = text_array(texts)
        self._check_open()
        if len(array) == 0:
            return []
        return entities((await self._run({"TEXT": array}, timeout))["ENTITIES"])
