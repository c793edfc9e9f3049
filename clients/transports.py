"""Thin I/O shells over tritonclient: sync and asyncio, HTTP and gRPC.

Each transport does one request per method and returns plain dicts and arrays; the caller
(``clients.client``) parses, checks, translates errors and retries. Every method takes the
timeout for this attempt in seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import numpy.typing as npt

from clients.core import WireTensor, wire_inputs

__all__ = ["AsyncGrpcTransport", "AsyncHttpTransport", "GrpcTransport", "HttpTransport"]

T = TypeVar("T")
Arrays = dict[str, npt.NDArray[Any]]


def _host_port(url: str) -> tuple[str, bool]:
    ssl = url.startswith("https://")
    return url.removeprefix("https://").removeprefix("http://").rstrip("/"), ssl


def _outputs(module: Any, names: Sequence[str]) -> list[Any]:
    return [module.InferRequestedOutput(name) for name in names]


class HttpTransport:
    """tritonclient.http; one client per thread and timeout (it is not thread-safe)."""

    transport_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, url: str) -> None:
        self._url, self._ssl = _host_port(url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[Any] = []

    def _client(self, timeout: float) -> Any:
        import tritonclient.http as httpclient

        clients: dict[float, Any] = self._local.__dict__.setdefault("clients", {})
        key = round(max(timeout, 0.05), 1)
        client = clients.get(key)
        if client is None:
            client = httpclient.InferenceServerClient(
                self._url, connection_timeout=key, network_timeout=key, ssl=self._ssl
            )
            clients[key] = client
            with self._lock:
                self._made.append(client)
        return client

    def live(self, timeout: float) -> bool:
        return bool(self._client(timeout).is_server_live())

    def ready(self, timeout: float) -> bool:
        return bool(self._client(timeout).is_server_ready())

    def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return bool(self._client(timeout).is_model_ready(model, version))

    def server_metadata(self, timeout: float) -> Any:
        return self._client(timeout).get_server_metadata()

    def model_metadata(self, model: str, version: str, timeout: float) -> Any:
        return self._client(timeout).get_model_metadata(model, version)

    def model_config(self, model: str, version: str, timeout: float) -> Any:
        return self._client(timeout).get_model_config(model, version)

    def repository_index(self, timeout: float) -> Any:
        return self._client(timeout).get_model_repository_index()

    def load(self, model: str, timeout: float) -> None:
        self._client(timeout).load_model(model)

    def unload(self, model: str, timeout: float) -> None:
        self._client(timeout).unload_model(model)

    def infer(
        self,
        model: str,
        version: str,
        tensors: Sequence[WireTensor],
        outputs: Sequence[str],
        timeout: float,
    ) -> Arrays:
        import tritonclient.http as httpclient

        result = self._client(timeout).infer(
            model,
            wire_inputs(httpclient, tensors),
            model_version=version,
            outputs=_outputs(httpclient, outputs),
        )
        return {name: result.as_numpy(name) for name in outputs}

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for client in made:
            client.close()


class GrpcTransport:
    """tritonclient.grpc; one channel, shared by threads."""

    transport_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, url: str) -> None:
        import tritonclient.grpc as grpcclient

        address, ssl = _host_port(url.removeprefix("grpc://"))
        self._client = grpcclient.InferenceServerClient(address, ssl=ssl)

    def live(self, timeout: float) -> bool:
        return bool(self._client.is_server_live(client_timeout=timeout))

    def ready(self, timeout: float) -> bool:
        return bool(self._client.is_server_ready(client_timeout=timeout))

    def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return bool(self._client.is_model_ready(model, version, client_timeout=timeout))

    def server_metadata(self, timeout: float) -> Any:
        return self._client.get_server_metadata(as_json=True, client_timeout=timeout)

    def model_metadata(self, model: str, version: str, timeout: float) -> Any:
        return self._client.get_model_metadata(model, version, as_json=True, client_timeout=timeout)

    def model_config(self, model: str, version: str, timeout: float) -> Any:
        return self._client.get_model_config(model, version, as_json=True, client_timeout=timeout)

    def repository_index(self, timeout: float) -> Any:
        return self._client.get_model_repository_index(as_json=True, client_timeout=timeout)

    def load(self, model: str, timeout: float) -> None:
        self._client.load_model(model, client_timeout=timeout)

    def unload(self, model: str, timeout: float) -> None:
        self._client.unload_model(model, client_timeout=timeout)

    def infer(
        self,
        model: str,
        version: str,
        tensors: Sequence[WireTensor],
        outputs: Sequence[str],
        timeout: float,
    ) -> Arrays:
        import tritonclient.grpc as grpcclient

        result = self._client.infer(
            model,
            wire_inputs(grpcclient, tensors),
            model_version=version,
            outputs=_outputs(grpcclient, outputs),
            client_timeout=timeout,
        )
        return {name: result.as_numpy(name) for name in outputs}

    def close(self) -> None:
        self._client.close()


async def _within(awaitable: Awaitable[T], timeout: float) -> T:
    return await asyncio.wait_for(awaitable, timeout)


class AsyncHttpTransport:
    """tritonclient.http.aio (aiohttp), created on first use inside the running loop."""

    def __init__(self, url: str) -> None:
        import aiohttp

        self._url, self._ssl = _host_port(url)
        self._client: Any = None
        self.transport_errors: tuple[type[BaseException], ...] = (aiohttp.ClientConnectionError,)

    def _get(self) -> Any:
        if self._client is None:
            import tritonclient.http.aio as aioclient

            self._client = aioclient.InferenceServerClient(self._url, ssl=self._ssl)
        return self._client

    async def live(self, timeout: float) -> bool:
        return bool(await _within(self._get().is_server_live(), timeout))

    async def ready(self, timeout: float) -> bool:
        return bool(await _within(self._get().is_server_ready(), timeout))

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return bool(await _within(self._get().is_model_ready(model, version), timeout))

    async def server_metadata(self, timeout: float) -> Any:
        return await _within(self._get().get_server_metadata(), timeout)

    async def model_metadata(self, model: str, version: str, timeout: float) -> Any:
        return await _within(self._get().get_model_metadata(model, version), timeout)

    async def model_config(self, model: str, version: str, timeout: float) -> Any:
        return await _within(self._get().get_model_config(model, version), timeout)

    async def repository_index(self, timeout: float) -> Any:
        return await _within(self._get().get_model_repository_index(), timeout)

    async def load(self, model: str, timeout: float) -> None:
        await _within(self._get().load_model(model), timeout)

    async def unload(self, model: str, timeout: float) -> None:
        await _within(self._get().unload_model(model), timeout)

    async def infer(
        self,
        model: str,
        version: str,
        tensors: Sequence[WireTensor],
        outputs: Sequence[str],
        timeout: float,
    ) -> Arrays:
        import tritonclient.http as httpclient

        result = await _within(
            self._get().infer(
                model,
                wire_inputs(httpclient, tensors),
                model_version=version,
                outputs=_outputs(httpclient, outputs),
            ),
            timeout,
        )
        return {name: result.as_numpy(name) for name in outputs}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class AsyncGrpcTransport:
    """tritonclient.grpc.aio, created on first use inside the running loop."""

    transport_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, url: str) -> None:
        self._address, self._ssl = _host_port(url.removeprefix("grpc://"))
        self._client: Any = None

    def _get(self) -> Any:
        if self._client is None:
            import tritonclient.grpc.aio as aioclient

            self._client = aioclient.InferenceServerClient(self._address, ssl=self._ssl)
        return self._client

    async def live(self, timeout: float) -> bool:
        return bool(await self._get().is_server_live(client_timeout=timeout))

    async def ready(self, timeout: float) -> bool:
        return bool(await self._get().is_server_ready(client_timeout=timeout))

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return bool(await self._get().is_model_ready(model, version, client_timeout=timeout))

    async def server_metadata(self, timeout: float) -> Any:
        return await self._get().get_server_metadata(as_json=True, client_timeout=timeout)

    async def model_metadata(self, model: str, version: str, timeout: float) -> Any:
        return await self._get().get_model_metadata(
            model, version, as_json=True, client_timeout=timeout
        )

    async def model_config(self, model: str, version: str, timeout: float) -> Any:
        return await self._get().get_model_config(
            model, version, as_json=True, client_timeout=timeout
        )

    async def repository_index(self, timeout: float) -> Any:
        return await self._get().get_model_repository_index(as_json=True, client_timeout=timeout)

    async def load(self, model: str, timeout: float) -> None:
        await self._get().load_model(model, client_timeout=timeout)

    async def unload(self, model: str, timeout: float) -> None:
        await self._get().unload_model(model, client_timeout=timeout)

    async def infer(
        self,
        model: str,
        version: str,
        tensors: Sequence[WireTensor],
        outputs: Sequence[str],
        timeout: float,
    ) -> Arrays:
        import tritonclient.grpc as grpcclient

        result = await self._get().infer(
            model,
            wire_inputs(grpcclient, tensors),
            model_version=version,
            outputs=_outputs(grpcclient, outputs),
            client_timeout=timeout,
        )
        return {name: result.as_numpy(name) for name in outputs}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
