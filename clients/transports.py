"""Thin I/O shells: sync and asyncio, HTTP and gRPC.

Each transport does one request per method and returns plain dicts and arrays; the caller
(``clients.client``) parses, checks, translates errors and retries. Every method takes the
timeout for this attempt in seconds. HTTP goes through ``clients.connections`` (our own
keep-alive pool and aiohttp session, with tritonclient's wire format); gRPC through
tritonclient.grpc, one channel per client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy.typing as npt

from clients.connections import AsyncHttpSession, HttpPool, HttpReply, LoopGuard
from clients.core import WireTensor, wire_inputs
from clients.endpoints import Endpoint, http_error, model_path, repository_path
from clients.errors import ClientClosedError, ClientError, ServerError

__all__ = [
    "AsyncGrpcTransport",
    "AsyncHttpTransport",
    "GrpcTransport",
    "HttpTransport",
    "grpc_channel_args",
]

Arrays = dict[str, npt.NDArray[Any]]
_INT32_MAX = 2**31 - 1


def grpc_channel_args(own_connection: bool = False) -> list[tuple[str, int]]:
    """tritonclient's message limits, and reconnect backoff capped at 1 s so that a restarted
    server is reached within a second (gRPC's default backoff grows to 120 s)."""
    args = [
        ("grpc.max_send_message_length", _INT32_MAX),
        ("grpc.max_receive_message_length", _INT32_MAX),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if own_connection:  # a connection no other channel shares (cancelling touches no other)
        args.append(("grpc.use_local_subchannel_pool", 1))
    return args


def _outputs(module: Any, names: Sequence[str]) -> list[Any]:
    return [module.InferRequestedOutput(name) for name in names]


# --- HTTP: request bodies and replies (shared by the sync and asyncio shells) ----------------


def _infer_request(
    tensors: Sequence[WireTensor], outputs: Sequence[str]
) -> tuple[bytes, dict[str, str]]:
    import tritonclient.http as httpclient

    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        wire_inputs(httpclient, tensors), outputs=_outputs(httpclient, outputs)
    )
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return bytes(body), headers


def _infer_result(reply: HttpReply, outputs: Sequence[str]) -> Arrays:
    import tritonclient.http as httpclient

    length = reply.headers.get("inference-header-content-length")
    try:
        result = httpclient.InferenceServerClient.parse_response_body(
            reply.body,
            header_length=int(length) if length is not None else None,
            content_encoding=reply.headers.get("content-encoding"),
        )
        arrays = {name: result.as_numpy(name) for name in outputs}
    except Exception as exc:  # a reply we cannot read is not worth retrying
        raise ClientError(f"the server's inference reply could not be read: {exc}") from exc
    missing = [name for name, array in arrays.items() if array is None]
    if missing:
        raise ServerError(f"the server's reply has no output(s) {missing}")
    return arrays


def _load_body(config: str | None) -> bytes:
    """A load request; with ``config`` (ModelConfig JSON) Triton loads the model anew with it."""
    return json.dumps({"parameters": {"config": config}} if config else {}).encode()


def _json(reply: HttpReply, url: str, model: str = "", *, required: bool = False) -> Any:
    if reply.status != 200:
        raise http_error(reply.status, reply.body, url, model)
    if not reply.body and not required:
        return {}
    try:
        return json.loads(reply.body)
    except ValueError:
        shown = reply.body[:100].decode("utf-8", "replace") or "an empty body"
        raise ServerError(
            f"{url} answered 200 with {shown!r}, not Triton's JSON; is this a Triton HTTP "
            "endpoint (not the metrics port)?",
            "200",
        ) from None


class HttpTransport:
    """HTTP/1.1 through a keep-alive pool that any number of threads share."""

    def __init__(self, endpoint: Endpoint) -> None:
        import tritonclient.http  # noqa: F401  (its wire helpers, loaded once up front)

        self._pool = HttpPool(endpoint)

    @property
    def url(self) -> str:
        return self._pool.url

    def _get(self, path: str, timeout: float, model: str = "") -> Any:
        reply = self._pool.request("GET", path, timeout=timeout)
        return _json(reply, self.url + path, model, required=True)

    def _post(self, path: str, timeout: float, model: str = "", body: bytes = b"{}") -> Any:
        reply = self._pool.request("POST", path, body, timeout=timeout)
        return _json(reply, self.url + path, model)

    def _ok(self, path: str, timeout: float) -> bool:
        return self._pool.request("GET", path, timeout=timeout).status == 200

    def live(self, timeout: float) -> bool:
        return self._ok("/v2/health/live", timeout)

    def ready(self, timeout: float) -> bool:
        return self._ok("/v2/health/ready", timeout)

    def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return self._ok(model_path(model, version, "/ready"), timeout)

    def server_metadata(self, timeout: float) -> Any:
        return self._get("/v2", timeout)

    def model_metadata(self, model: str, version: str, timeout: float) -> Any:
        return self._get(model_path(model, version), timeout, model)

    def model_config(self, model: str, version: str, timeout: float) -> Any:
        return self._get(model_path(model, version, "/config"), timeout, model)

    def repository_index(self, timeout: float) -> Any:
        return self._post("/v2/repository/index", timeout)

    def load(self, model: str, timeout: float, config: str | None = None) -> None:
        self._post(repository_path(model, "load"), timeout, model, _load_body(config))

    def unload(self, model: str, timeout: float) -> None:
        self._post(repository_path(model, "unload"), timeout, model)

    def infer(
        self,
        model: str,
        version: str,
        tensors: Sequence[WireTensor],
        outputs: Sequence[str],
        timeout: float,
    ) -> Arrays:
        body, headers = _infer_request(tensors, outputs)
        path = model_path(model, version, "/infer")
        reply = self._pool.request("POST", path, body, headers, timeout=timeout)
        if reply.status != 200:
            raise http_error(reply.status, reply.body, self.url + path, model)
        return _infer_result(reply, outputs)

    @property
    def pool(self) -> HttpPool:
        return self._pool

    def close(self) -> None:
        self._pool.close()


class GrpcTransport:
    """tritonclient.grpc; one channel, shared by threads."""

    def __init__(self, endpoint: Endpoint) -> None:
        import tritonclient.grpc as grpcclient

        self.url = endpoint.url
        self._closed = False
        self._client = grpcclient.InferenceServerClient(
            endpoint.address, ssl=endpoint.ssl, channel_args=grpc_channel_args()
        )

    def _c(self) -> Any:
        if self._closed:
            raise ClientClosedError(f"the client for {self.url} is closed")
        return self._client

    def live(self, timeout: float) -> bool:
        return bool(self._c().is_server_live(client_timeout=timeout))

    def ready(self, timeout: float) -> bool:
        return bool(self._c().is_server_ready(client_timeout=timeout))

    def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return bool(self._c().is_model_ready(model, version, client_timeout=timeout))

    def server_metadata(self, timeout: float) -> Any:
        return self._c().get_server_metadata(as_json=True, client_timeout=timeout)

    def model_metadata(self, model: str, version: str, timeout: float) -> Any:
        return self._c().get_model_metadata(model, version, as_json=True, client_timeout=timeout)

    def model_config(self, model: str, version: str, timeout: float) -> Any:
        return self._c().get_model_config(model, version, as_json=True, client_timeout=timeout)

    def repository_index(self, timeout: float) -> Any:
        return self._c().get_model_repository_index(as_json=True, client_timeout=timeout)

    def load(self, model: str, timeout: float, config: str | None = None) -> None:
        self._c().load_model(model, config=config, client_timeout=timeout)

    def unload(self, model: str, timeout: float) -> None:
        self._c().unload_model(model, client_timeout=timeout)

    def infer(
        self,
        model: str,
        version: str,
        tensors: Sequence[WireTensor],
        outputs: Sequence[str],
        timeout: float,
    ) -> Arrays:
        import tritonclient.grpc as grpcclient

        result = self._c().infer(
            model,
            wire_inputs(grpcclient, tensors),
            model_version=version,
            outputs=_outputs(grpcclient, outputs),
            client_timeout=timeout,
        )
        return {name: result.as_numpy(name) for name in outputs}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client.close()


class AsyncHttpTransport:
    """aiohttp, one session made in the loop of the first call (and bound to it)."""

    def __init__(self, endpoint: Endpoint) -> None:
        import tritonclient.http  # noqa: F401  (its wire helpers; imported here, not in the loop)

        self._session = AsyncHttpSession(endpoint)

    @property
    def url(self) -> str:
        return self._session.url

    async def _request(self, method: str, path: str, timeout: float) -> HttpReply:
        body = b"{}" if method == "POST" else b""
        return await self._session.request(method, path, body, timeout=timeout)

    async def _json(self, method: str, path: str, timeout: float, model: str = "") -> Any:
        reply = await self._request(method, path, timeout)
        return _json(reply, self.url + path, model, required=method == "GET")

    async def _ok(self, path: str, timeout: float) -> bool:
        return (await self._request("GET", path, timeout)).status == 200

    async def live(self, timeout: float) -> bool:
        return await self._ok("/v2/health/live", timeout)

    async def ready(self, timeout: float) -> bool:
        return await self._ok("/v2/health/ready", timeout)

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return await self._ok(model_path(model, version, "/ready"), timeout)

    async def server_metadata(self, timeout: float) -> Any:
        return await self._json("GET", "/v2", timeout)

    async def model_metadata(self, model: str, version: str, timeout: float) -> Any:
        return await self._json("GET", model_path(model, version), timeout, model)

    async def model_config(self, model: str, version: str, timeout: float) -> Any:
        return await self._json("GET", model_path(model, version, "/config"), timeout, model)

    async def repository_index(self, timeout: float) -> Any:
        return await self._json("POST", "/v2/repository/index", timeout)

    async def load(self, model: str, timeout: float, config: str | None = None) -> None:
        path = repository_path(model, "load")
        reply = await self._session.request("POST", path, _load_body(config), timeout=timeout)
        _json(reply, self.url + path, model)

    async def unload(self, model: str, timeout: float) -> None:
        await self._json("POST", repository_path(model, "unload"), timeout, model)

    async def infer(
        self,
        model: str,
        version: str,
        tensors: Sequence[WireTensor],
        outputs: Sequence[str],
        timeout: float,
    ) -> Arrays:
        body, headers = _infer_request(tensors, outputs)
        path = model_path(model, version, "/infer")
        reply = await self._session.request("POST", path, body, headers, timeout=timeout)
        if reply.status != 200:
            raise http_error(reply.status, reply.body, self.url + path, model)
        return _infer_result(reply, outputs)

    async def close(self) -> None:
        await self._session.close()


class AsyncGrpcTransport:
    """tritonclient.grpc.aio, made in the loop of the first call (and bound to it)."""

    def __init__(self, endpoint: Endpoint) -> None:
        import tritonclient.grpc.aio as aioclient  # at construction, not in the loop

        self._module = aioclient
        self._endpoint = endpoint
        self.url = endpoint.url
        self._guard = LoopGuard(f"client for {endpoint.url}")
        self._client: Any = None

    def _get(self) -> Any:
        self._guard.check()
        if self._client is None:
            self._client = self._module.InferenceServerClient(
                self._endpoint.address,
                ssl=self._endpoint.ssl,
                channel_args=grpc_channel_args(),
            )
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

    async def load(self, model: str, timeout: float, config: str | None = None) -> None:
        await self._get().load_model(model, config=config, client_timeout=timeout)

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
        self._guard.closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()
