"""Generic Triton clients: ``TritonClient`` (sync) and ``AsyncTritonClient`` (asyncio).

Both speak HTTP or gRPC (``protocol=``), check inputs against the model's metadata before
sending, translate errors into ``clients.errors``, and retry transport errors with exponential
backoff and jitter inside a total deadline. Every call takes a ``timeout`` (seconds, per
attempt); the client's default applies otherwise.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy.typing as npt

from clients.core import (
    RetryPolicy,
    parse_model_config,
    parse_model_metadata,
    parse_repository_index,
    parse_server_metadata,
    prepare_inputs,
    refine_not_found,
    translate,
)
from clients.errors import ClientError, ModelNotFoundError
from clients.retry import call_async, call_sync
from clients.transports import (
    AsyncGrpcTransport,
    AsyncHttpTransport,
    GrpcTransport,
    HttpTransport,
)
from clients.types import ModelConfig, ModelMetadata, RepositoryModel, ServerMetadata

__all__ = ["AsyncTritonClient", "Protocol", "TritonClient"]

T = TypeVar("T")
Protocol = Literal["http", "grpc"]
Arrays = dict[str, npt.NDArray[Any]]
ModelInfo = tuple[ModelMetadata, ModelConfig]


def _check_protocol(protocol: str) -> None:
    if protocol not in ("http", "grpc"):
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")


class _Base:
    def __init__(self, protocol: str, timeout: float, retry: RetryPolicy, seed: int | None):
        _check_protocol(protocol)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.protocol = protocol
        self.timeout = timeout
        self.retry = retry
        self._rng = random.Random(seed)
        self._models: dict[tuple[str, str], ModelInfo] = {}

    def _forget(self, model: str) -> None:
        for key in [k for k in self._models if k[0] == model]:
            self._models.pop(key, None)


class TritonClient(_Base):
    """Sync client. ``TritonClient("localhost:8000")`` or ``("localhost:8001", "grpc")``."""

    def __init__(
        self,
        url: str = "localhost:8000",
        protocol: Protocol = "http",
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(protocol, timeout, retry or RetryPolicy(), seed)
        self._transport: HttpTransport | GrpcTransport = (
            HttpTransport(url) if protocol == "http" else GrpcTransport(url)
        )
        self._lock = threading.Lock()

    # -- the one loop that calls the transport --------------------------------------------
    def _call(
        self, op: Callable[[float], T], timeout: float | None, model: str = "", version: str = ""
    ) -> T:
        errors = self._transport.transport_errors
        try:
            return call_sync(
                op, self.retry, self._rng, timeout or self.timeout, lambda e: translate(e, errors)
            )
        except ModelNotFoundError as error:
            if not model:
                raise
            raise self._refine(error, model, version) from error.__cause__

    def _refine(self, error: ModelNotFoundError, model: str, version: str) -> ClientError:
        try:
            index = parse_repository_index(self._transport.repository_index(self.timeout))
        except Exception:  # the index is a refinement only; keep the original error
            return error
        return refine_not_found(error, model, index, version)

    # -- health and metadata ---------------------------------------------------------------
    def is_live(self, *, timeout: float | None = None) -> bool:
        return self._call(self._transport.live, timeout)

    def is_ready(self, *, timeout: float | None = None) -> bool:
        return self._call(self._transport.ready, timeout)

    def is_model_ready(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> bool:
        return self._call(lambda t: self._transport.model_ready(model, version, t), timeout)

    def server_metadata(self, *, timeout: float | None = None) -> ServerMetadata:
        return parse_server_metadata(self._call(self._transport.server_metadata, timeout))

    def model_metadata(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelMetadata:
        data = self._call(
            lambda t: self._transport.model_metadata(model, version, t), timeout, model, version
        )
        return parse_model_metadata(data)

    def model_config(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelConfig:
        data = self._call(
            lambda t: self._transport.model_config(model, version, t), timeout, model, version
        )
        return parse_model_config(data)

    def repository_index(self, *, timeout: float | None = None) -> list[RepositoryModel]:
        return parse_repository_index(self._call(self._transport.repository_index, timeout))

    def load_model(self, model: str, *, timeout: float | None = None) -> None:
        """Load or reload ``model`` (the server must run with explicit model control)."""
        self._call(lambda t: self._transport.load(model, t), timeout)
        with self._lock:
            self._forget(model)

    def unload_model(self, model: str, *, timeout: float | None = None) -> None:
        self._call(lambda t: self._transport.unload(model, t), timeout)
        with self._lock:
            self._forget(model)

    def model_info(self, model: str, version: str = "") -> ModelInfo:
        """Metadata and config of ``model``, fetched once and cached until load/unload."""
        with self._lock:
            cached = self._models.get((model, version))
        if cached is None:
            cached = (self.model_metadata(model, version), self.model_config(model, version))
            with self._lock:
                self._models[(model, version)] = cached
        return cached

    # -- inference -------------------------------------------------------------------------
    def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        timeout: float | None = None,
    ) -> Arrays:
        """Run ``model`` on ``{input name: array}``; returns ``{output name: array}``.

        Inputs are checked against the model's metadata first (names, dtypes, shapes, batch
        dimension); a mismatch raises InvalidInputError and nothing is sent.
        """
        metadata, config = self.model_info(model, version)
        tensors = prepare_inputs(metadata, config, inputs)
        names = list(outputs) if outputs is not None else [o.name for o in metadata.outputs]
        return self._call(
            lambda t: self._transport.infer(model, version, tensors, names, t),
            timeout,
            model,
            version,
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTritonClient(_Base):
    """asyncio client with the same methods as TritonClient, as coroutines."""

    def __init__(
        self,
        url: str = "localhost:8000",
        protocol: Protocol = "http",
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(protocol, timeout, retry or RetryPolicy(), seed)
        self._transport: AsyncHttpTransport | AsyncGrpcTransport = (
            AsyncHttpTransport(url) if protocol == "http" else AsyncGrpcTransport(url)
        )

    async def _call(
        self,
        op: Callable[[float], Awaitable[T]],
        timeout: float | None,
        model: str = "",
        version: str = "",
    ) -> T:
        errors = self._transport.transport_errors
        try:
            return await call_async(
                op, self.retry, self._rng, timeout or self.timeout, lambda e: translate(e, errors)
            )
        except ModelNotFoundError as error:
            if not model:
                raise
            raise await self._refine(error, model, version) from error.__cause__

    async def _refine(self, error: ModelNotFoundError, model: str, version: str) -> ClientError:
        try:
            index = parse_repository_index(await self._transport.repository_index(self.timeout))
        except Exception:  # the index is a refinement only; keep the original error
            return error
        return refine_not_found(error, model, index, version)

    async def is_live(self, *, timeout: float | None = None) -> bool:
        return await self._call(self._transport.live, timeout)

    async def is_ready(self, *, timeout: float | None = None) -> bool:
        return await self._call(self._transport.ready, timeout)

    async def is_model_ready(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> bool:
        return await self._call(lambda t: self._transport.model_ready(model, version, t), timeout)

    async def server_metadata(self, *, timeout: float | None = None) -> ServerMetadata:
        return parse_server_metadata(await self._call(self._transport.server_metadata, timeout))

    async def model_metadata(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelMetadata:
        data = await self._call(
            lambda t: self._transport.model_metadata(model, version, t), timeout, model, version
        )
        return parse_model_metadata(data)

    async def model_config(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelConfig:
        data = await self._call(
            lambda t: self._transport.model_config(model, version, t), timeout, model, version
        )
        return parse_model_config(data)

    async def repository_index(self, *, timeout: float | None = None) -> list[RepositoryModel]:
        return parse_repository_index(await self._call(self._transport.repository_index, timeout))

    async def load_model(self, model: str, *, timeout: float | None = None) -> None:
        await self._call(lambda t: self._transport.load(model, t), timeout)
        self._forget(model)

    async def unload_model(self, model: str, *, timeout: float | None = None) -> None:
        await self._call(lambda t: self._transport.unload(model, t), timeout)
        self._forget(model)

    async def model_info(self, model: str, version: str = "") -> ModelInfo:
        cached = self._models.get((model, version))
        if cached is None:
            cached = (
                await self.model_metadata(model, version),
                await self.model_config(model, version),
            )
            self._models[(model, version)] = cached
        return cached

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        outputs: Sequence[str] | None = None,
        version: str = "",
        timeout: float | None = None,
    ) -> Arrays:
        metadata, config = await self.model_info(model, version)
        tensors = prepare_inputs(metadata, config, inputs)
        names = list(outputs) if outputs is not None else [o.name for o in metadata.outputs]
        return await self._call(
            lambda t: self._transport.infer(model, version, tensors, names, t),
            timeout,
            model,
            version,
        )

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
