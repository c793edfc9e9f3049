"""Generic Triton clients: ``TritonClient`` (sync) and ``AsyncTritonClient`` (asyncio).

Both speak HTTP or gRPC (``protocol=``), check inputs against the model's metadata before
sending, translate errors into ``clients.errors`` (naming the operation, model and URL), and
retry as ``RetryPolicy`` says. Every call takes a ``timeout`` in seconds (the client's default
otherwise); the policy's deadline never cuts an explicit timeout short.

A client may be shared by any number of threads (sync) or tasks (asyncio; one event loop per
client). ``close()`` releases every connection; a call after it raises ``ClientClosedError``.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import numpy.typing as npt

from clients.core import (
    RetryPolicy,
    check_timeout,
    parse_model_config,
    parse_model_metadata,
    parse_repository_index,
    parse_server_metadata,
    prepare_inputs,
    refine_not_found,
    requested_outputs,
    translate,
)
from clients.endpoints import Protocol, check_protocol, parse_endpoint
from clients.errors import (
    ClientError,
    ConfigurationError,
    DeadlineExceeded,
    ModelNotFoundError,
    ServerError,
    TransportError,
)
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
Arrays = dict[str, npt.NDArray[Any]]
ModelInfo = tuple[ModelMetadata, ModelConfig]


def with_context(error: ClientError, what: str, url: str, timeout: float) -> ClientError:
    """A transport error whose message says which call, to which server, failed."""
    if isinstance(error, DeadlineExceeded):
        return DeadlineExceeded(f"{what} at {url}: no answer within {timeout:g} s ({error})")
    if isinstance(error, TransportError):
        return type(error)(f"{what} at {url}: {error}")
    return error


def not_in_index(model: str, names: Sequence[str]) -> ModelNotFoundError:
    listed = ", ".join(repr(name) for name in sorted(names)) or "none"
    return ModelNotFoundError(
        f"no model {model!r} in the server's repository (its models: {listed})", "404"
    )


UNLOAD_POLL_SECONDS = 0.05
MODEL_CONTROL_TIMEOUT = 120.0  # default seconds for load_model and unload_model


def _unloading(index: Sequence[RepositoryModel], model: str) -> bool:
    return any(entry.name == model and entry.state == "UNLOADING" for entry in index)


class _Base:
    def __init__(
        self, url: str, protocol: str, timeout: float, retry: RetryPolicy | None, seed: int | None
    ):
        self.protocol: Protocol = check_protocol(protocol)
        self.endpoint = parse_endpoint(url, self.protocol)
        self.timeout = check_timeout(timeout, "timeout")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry: expected a RetryPolicy, got {retry!r}")
        self.retry = retry or RetryPolicy()
        self._rng = random.Random(seed)
        self._models: dict[tuple[str, str], ModelInfo] = {}

    @property
    def url(self) -> str:
        return self.endpoint.url

    def _seconds(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else check_timeout(timeout, "timeout")

    def _control_seconds(self, timeout: float | None) -> float:
        """load/unload: a model's initialisation or finalisation can take minutes."""
        if timeout is None:
            return max(self.timeout, MODEL_CONTROL_TIMEOUT)
        return check_timeout(timeout, "timeout")

    def _translator(
        self, what: str, seconds: float, errors: tuple[type[BaseException], ...] = ()
    ) -> Callable[[Exception], ClientError]:
        return lambda exc: with_context(translate(exc, errors), what, self.url, seconds)

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
        super().__init__(url, protocol, timeout, retry, seed)
        self._transport: HttpTransport | GrpcTransport = (
            HttpTransport(self.endpoint) if protocol == "http" else GrpcTransport(self.endpoint)
        )
        self._lock = threading.Lock()

    # -- the one loop that calls the transport --------------------------------------------
    def _call(
        self,
        op: Callable[[float], T],
        timeout: float | None,
        what: str,
        model: str = "",
        version: str = "",
    ) -> T:
        seconds = self._seconds(timeout)
        try:
            return call_sync(op, self.retry, self._rng, seconds, self._translator(what, seconds))
        except ModelNotFoundError as error:
            if not model:
                raise
            raise self._refine(error, model, version) from error.__cause__

    def _index_or_none(self) -> list[RepositoryModel] | None:
        """The repository index, to refine another error; None when it cannot be had."""
        try:
            return parse_repository_index(self._transport.repository_index(self.timeout))
        except Exception:  # only a refinement: the original error stands
            return None

    def _index_names(self) -> list[str] | None:
        index = self._index_or_none()
        return None if index is None else [entry.name for entry in index]

    def _refine(self, error: ModelNotFoundError, model: str, version: str) -> ClientError:
        index = self._index_or_none()
        return error if index is None else refine_not_found(error, model, index, version)

    # -- health and metadata ---------------------------------------------------------------
    def is_live(self, *, timeout: float | None = None) -> bool:
        return self._call(self._transport.live, timeout, "is_live")

    def is_ready(self, *, timeout: float | None = None) -> bool:
        return self._call(self._transport.ready, timeout, "is_ready")

    def is_model_ready(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> bool:
        return self._call(
            lambda t: self._transport.model_ready(model, version, t),
            timeout,
            f"is_model_ready({model!r})",
        )

    def server_metadata(self, *, timeout: float | None = None) -> ServerMetadata:
        data = self._call(self._transport.server_metadata, timeout, "server_metadata")
        return parse_server_metadata(data)

    def model_metadata(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelMetadata:
        data = self._call(
            lambda t: self._transport.model_metadata(model, version, t),
            timeout,
            f"model_metadata({model!r})",
            model,
            version,
        )
        return parse_model_metadata(data)

    def model_config(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelConfig:
        data = self._call(
            lambda t: self._transport.model_config(model, version, t),
            timeout,
            f"model_config({model!r})",
            model,
            version,
        )
        return parse_model_config(data)

    def repository_index(self, *, timeout: float | None = None) -> list[RepositoryModel]:
        data = self._call(self._transport.repository_index, timeout, "repository_index")
        return parse_repository_index(data)

    def load_model(
        self,
        model: str,
        *,
        config: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Load or reload ``model`` (the server must run with explicit model control).

        Triton skips the load of an unchanged, loaded model; with ``config`` (a ModelConfig as
        JSON, e.g. ``model_config(m).raw`` with a change) it loads the model anew, new
        instances and all, and swaps them in. A model the repository does not have raises
        ModelNotFoundError. ``timeout`` defaults to ``MODEL_CONTROL_TIMEOUT``.
        """
        seconds = self._control_seconds(timeout)
        text = json.dumps(config) if config is not None else None
        try:
            self._call(
                lambda t: self._transport.load(model, t, text), seconds, f"load_model({model!r})"
            )
        except ServerError as error:
            names = self._index_names()
            if names is not None and model not in names:
                raise not_in_index(model, names) from error
            raise
        finally:
            with self._lock:
                self._forget(model)

    def unload_model(self, model: str, *, timeout: float | None = None, wait: bool = True) -> None:
        """Unload ``model``. Triton unloads in the background; with ``wait`` (the default) this
        returns once the repository index no longer says UNLOADING (within ``timeout``,
        default ``MODEL_CONTROL_TIMEOUT``). A model the repository does not have raises
        ModelNotFoundError (Triton itself answers success).
        """
        seconds = self._control_seconds(timeout)
        names = [m.name for m in self.repository_index(timeout=seconds)]
        if model not in names:
            raise not_in_index(model, names)
        self._call(lambda t: self._transport.unload(model, t), seconds, f"unload_model({model!r})")
        with self._lock:
            self._forget(model)
        end = time.monotonic() + seconds
        while wait and _unloading(self.repository_index(timeout=seconds), model):
            if time.monotonic() > end:
                raise DeadlineExceeded(
                    f"unload_model({model!r}) at {self.url}: still unloading after {seconds:g} s"
                )
            time.sleep(UNLOAD_POLL_SECONDS)

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

        Inputs (names, dtypes, shapes, batch dimension) and output names are checked against
        the model's metadata first; a mismatch raises InvalidInputError and nothing is sent.
        A timed-out request is not sent again (unless ``RetryPolicy(retry_timeouts=True)``).
        """
        metadata, config = self.model_info(model, version)
        tensors = prepare_inputs(metadata, config, inputs)
        names = requested_outputs(metadata, outputs)
        return self._call(
            lambda t: self._transport.infer(model, version, tensors, names, t),
            timeout,
            f"infer on model {model!r}",
            model,
            version,
        )

    def close(self) -> None:
        """Close every connection; later calls raise ClientClosedError. Idempotent."""
        self._transport.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncTritonClient(_Base):
    """asyncio client with the same methods as TritonClient, as coroutines.

    It belongs to the event loop of its first call (its connections do); using it from
    another loop raises ClientError: make one client per loop (per ``asyncio.run``).
    """

    def __init__(
        self,
        url: str = "localhost:8000",
        protocol: Protocol = "http",
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(url, protocol, timeout, retry, seed)
        self._transport: AsyncHttpTransport | AsyncGrpcTransport = (
            AsyncHttpTransport(self.endpoint)
            if protocol == "http"
            else AsyncGrpcTransport(self.endpoint)
        )

    async def _call(
        self,
        op: Callable[[float], Awaitable[T]],
        timeout: float | None,
        what: str,
        model: str = "",
        version: str = "",
    ) -> T:
        seconds = self._seconds(timeout)
        translator = self._translator(what, seconds)
        try:
            return await call_async(op, self.retry, self._rng, seconds, translator)
        except ModelNotFoundError as error:
            if not model:
                raise
            raise await self._refine(error, model, version) from error.__cause__

    async def _index_or_none(self) -> list[RepositoryModel] | None:
        """The repository index, to refine another error; None when it cannot be had."""
        try:
            return parse_repository_index(await self._transport.repository_index(self.timeout))
        except Exception:  # only a refinement: the original error stands
            return None

    async def _index_names(self) -> list[str] | None:
        index = await self._index_or_none()
        return None if index is None else [entry.name for entry in index]

    async def _refine(self, error: ModelNotFoundError, model: str, version: str) -> ClientError:
        index = await self._index_or_none()
        return error if index is None else refine_not_found(error, model, index, version)

    async def is_live(self, *, timeout: float | None = None) -> bool:
        return await self._call(self._transport.live, timeout, "is_live")

    async def is_ready(self, *, timeout: float | None = None) -> bool:
        return await self._call(self._transport.ready, timeout, "is_ready")

    async def is_model_ready(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> bool:
        return await self._call(
            lambda t: self._transport.model_ready(model, version, t),
            timeout,
            f"is_model_ready({model!r})",
        )

    async def server_metadata(self, *, timeout: float | None = None) -> ServerMetadata:
        data = await self._call(self._transport.server_metadata, timeout, "server_metadata")
        return parse_server_metadata(data)

    async def model_metadata(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelMetadata:
        data = await self._call(
            lambda t: self._transport.model_metadata(model, version, t),
            timeout,
            f"model_metadata({model!r})",
            model,
            version,
        )
        return parse_model_metadata(data)

    async def model_config(
        self, model: str, version: str = "", *, timeout: float | None = None
    ) -> ModelConfig:
        data = await self._call(
            lambda t: self._transport.model_config(model, version, t),
            timeout,
            f"model_config({model!r})",
            model,
            version,
        )
        return parse_model_config(data)

    async def repository_index(self, *, timeout: float | None = None) -> list[RepositoryModel]:
        data = await self._call(self._transport.repository_index, timeout, "repository_index")
        return parse_repository_index(data)

    async def load_model(
        self,
        model: str,
        *,
        config: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        seconds = self._control_seconds(timeout)
        text = json.dumps(config) if config is not None else None
        try:
            await self._call(
                lambda t: self._transport.load(model, t, text), seconds, f"load_model({model!r})"
            )
        except ServerError as error:
            names = await self._index_names()
            if names is not None and model not in names:
                raise not_in_index(model, names) from error
            raise
        finally:
            self._forget(model)

    async def unload_model(
        self, model: str, *, timeout: float | None = None, wait: bool = True
    ) -> None:
        seconds = self._control_seconds(timeout)
        names = [m.name for m in await self.repository_index(timeout=seconds)]
        if model not in names:
            raise not_in_index(model, names)
        await self._call(
            lambda t: self._transport.unload(model, t), seconds, f"unload_model({model!r})"
        )
        self._forget(model)
        end = time.monotonic() + seconds
        while wait and _unloading(await self.repository_index(timeout=seconds), model):
            if time.monotonic() > end:
                raise DeadlineExceeded(
                    f"unload_model({model!r}) at {self.url}: still unloading after {seconds:g} s"
                )
            await asyncio.sleep(UNLOAD_POLL_SECONDS)

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
        names = requested_outputs(metadata, outputs)
        return await self._call(
            lambda t: self._transport.infer(model, version, tensors, names, t),
            timeout,
            f"infer on model {model!r}",
            model,
            version,
        )

    async def close(self) -> None:
        """Close the connections; later calls raise ClientClosedError. Idempotent."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
