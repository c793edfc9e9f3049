"""Text generation clients for models served by the ``vllm`` backend (sync and asyncio).

``GenerationClient(url, model, protocol)``: over gRPC, requests go through a bidirectional
stream (decoupled models answer on streams); over HTTP, through Triton's ``generate`` and
``generate_stream`` (server-sent events) endpoints. ``stream()`` returns a ``TextStream`` of
text deltas; closing it before the end cancels the request on the server (gRPC) or drops
the connection (HTTP). An error event that arrives after the HTTP 200 raises ``ServerError``.

URL parsing, timeouts, retry policy, HTTP connections (``HttpPool``) and gRPC channel settings
are the ones ``TritonClient`` uses; only the stream reading lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import random
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from clients.client import _Base
from clients.connections import HttpPool, HttpStream
from clients.core import (
    RetryPolicy,
    parse_repository_index,
    refine_not_found,
    translate,
    wire_inputs,
)
from clients.endpoints import Endpoint, http_error, model_path
from clients.endpoints import Protocol as WireProtocol
from clients.errors import (
    ClientClosedError,
    ClientError,
    ConfigurationError,
    DeadlineExceeded,
    ModelNotFoundError,
)
from clients.llm_core import (
    OUTPUTS,
    Chunk,
    Generation,
    chunk_from_arrays,
    chunk_from_json,
    combine,
    generate_body,
    generation_tensors,
    sse_data,
)
from clients.retry import call_async, call_sync

__all__ = ["AsyncGenerationClient", "AsyncTextStream", "GenerationClient", "TextStream"]

T = TypeVar("T")


def _stream_error(error: Any, model: str, index_json: Any) -> ClientError:
    """gRPC stream errors carry no status: tell a missing or unready model by the index."""
    translated = translate(error)
    if getattr(error, "status", lambda: None)() is not None or index_json is None:
        return translated
    index = parse_repository_index(index_json)
    if not any(entry.name == model for entry in index):
        return ModelNotFoundError(translated.args[0] if translated.args else str(error))
    missing = ModelNotFoundError(str(error))
    refined = refine_not_found(missing, model, index)
    return translated if refined is missing else refined


def _grpc_chunk(result: Any) -> tuple[Chunk, bool]:
    """A gRPC stream response as a Chunk, and whether it is the request's final one."""
    final = result.get_response().parameters.get("triton_final_response")
    chunk = chunk_from_arrays({name: result.as_numpy(name) for name in OUTPUTS})
    return chunk, final is not None and bool(final.bool_param)


def _path(model: str, stream: bool) -> str:
    return model_path(model, "", "/generate_stream" if stream else "/generate")


# --- sync sources: one generation each ------------------------------------------------------


class _Source(Protocol):
    def next_chunk(self) -> Chunk | None: ...
    def close(self) -> None: ...


class _GrpcSource:
    def __init__(self, endpoint: Endpoint, model: str, tensors: Any, timeout: float):
        import tritonclient.grpc as grpcclient

        from clients.transports import grpc_channel_args

        self._timeout = timeout
        self._model = model
        self._started = False
        self._done = False
        self._closed = False
        self._responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        # a connection of its own, so that cancelling this stream touches no other
        self._client: Any = grpcclient.InferenceServerClient(
            endpoint.address, ssl=endpoint.ssl, channel_args=grpc_channel_args(own_connection=True)
        )
        try:
            self._client.start_stream(callback=self._on_response)
            self._client.async_stream_infer(
                model,
                wire_inputs(grpcclient, tensors),
                request_id=uuid.uuid4().hex,
                outputs=[grpcclient.InferRequestedOutput(name) for name in OUTPUTS],
            )
        except Exception as exc:
            self.close()
            raise translate(exc) from exc

    def _on_response(self, result: Any, error: Any) -> None:
        self._responses.put((result, error))

    def next_chunk(self) -> Chunk | None:
        if self._done:
            return None
        try:
            result, error = self._responses.get(timeout=self._timeout)
        except queue.Empty:
            self.close()
            raise DeadlineExceeded(f"no response within {self._timeout:g}s") from None
        if error is not None:
            self._done = True
            index = None
            if not self._started:
                try:
                    index = self._client.get_model_repository_index(as_json=True)
                except Exception:  # only a refinement of the error
                    index = None
            self.close()
            raise _stream_error(error, self._model, index) from error
        self._started = True
        chunk, final = _grpc_chunk(result)
        if final:
            self._done = True
            self.close()
        return chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # an unfinished generation is cancelled on the server, which aborts it in vLLM
        self._client.stop_stream(cancel_requests=not self._done)
        self._client.close()
        # let tritonclient's __del__ run now, not at interpreter exit when grpc is torn down
        self._client = None


class _HttpSource:
    def __init__(self, pool: HttpPool, model: str, body: bytes, stream: bool, timeout: float):
        self._stream = stream
        self._timeout = timeout
        self._pending: Chunk | None = None
        path = _path(model, stream)
        self._reply: HttpStream = pool.open(
            "POST", path, body, {"Content-Type": "application/json"}, timeout=timeout, fresh=stream
        )
        try:
            if self._reply.status != 200:
                raise http_error(self._reply.status, self._reply.read_all(), pool.url + path, model)
            if not stream:
                self._pending = chunk_from_json(json.loads(self._reply.read_all()))
        except ClientError:
            self.close()
            raise
        except ValueError as exc:
            self.close()
            raise ClientError(f"{pool.url + path}: the reply is not JSON ({exc})") from exc

    def next_chunk(self) -> Chunk | None:
        if not self._stream:
            chunk, self._pending = self._pending, None
            if chunk is None:
                self.close()
            return chunk
        while True:
            line = self._reply.readline(self._timeout)
            if not line:
                self.close()
                return None
            data = sse_data(line.decode("utf-8"))
            if data is not None:
                try:
                    return chunk_from_json(data)
                except ClientError:
                    self.close()
                    raise

    def close(self) -> None:
        self._reply.close()


class TextStream:
    """The text deltas of one generation. ``close()`` (or leaving ``with``) cancels it."""

    def __init__(self, source: _Source) -> None:
        self._source = source
        self.chunks: list[Chunk] = []

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        while True:
            chunk = self._source.next_chunk()
            if chunk is None:
                raise StopIteration
            self.chunks.append(chunk)
            if chunk.text:
                return chunk.text

    @property
    def generation(self) -> Generation:
        """What has arrived so far, joined (complete once the iteration has ended)."""
        return combine(self.chunks)

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Settings(_Base):
    """The clients' shared settings (URL, protocol, timeout, retry policy, error context),
    as ``TritonClient`` has them, plus the generation model."""

    def __init__(
        self, url: str, model: str, protocol: str, timeout: float, retry: RetryPolicy | None
    ):
        super().__init__(url, protocol, timeout, retry, None)
        if not isinstance(model, str) or not model:
            raise ConfigurationError(f"model: expected the served model's name, got {model!r}")
        self.model = model

    def seconds(self, timeout: float | None) -> float:
        return self._seconds(timeout)

    @property
    def rng(self) -> random.Random:
        return self._rng

    def translator(self, seconds: float) -> Callable[[Exception], ClientError]:
        return self._translator(f"generate on model {self.model!r}", seconds)


class GenerationClient:
    """``GenerationClient("localhost:8001", "llm").generate("Hello", max_tokens=16)``.

    ``timeout`` (default 120 s) bounds a whole non-streamed generation, and each wait for the
    next piece of a stream; it is honoured even where it exceeds the retry deadline.
    """

    def __init__(
        self,
        url: str = "localhost:8001",
        model: str = "llm",
        protocol: WireProtocol = "grpc",
        *,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = _Settings(url, model, protocol, timeout, retry)
        self._pool = HttpPool(self._settings.endpoint, "GenerationClient")

    def _open(
        self, prompt: str, sampling: dict[str, Any], stream: bool, exclude: bool, timeout: float
    ) -> _Source:
        s = self._settings
        if s.protocol == "grpc":
            self._pool.check_open()
            tensors = generation_tensors(prompt, sampling, stream, exclude)
            return _GrpcSource(s.endpoint, s.model, tensors, timeout)
        body = generate_body(prompt, sampling, stream, exclude)
        return _HttpSource(self._pool, s.model, body, stream, timeout)

    def generate(
        self,
        prompt: str,
        *,
        exclude_input_in_output: bool = True,
        timeout: float | None = None,
        **sampling: Any,
    ) -> Generation:
        """The whole completion at once. Sampling parameters are vLLM's SamplingParams."""
        s = self._settings
        seconds = s.seconds(timeout)

        def once(per_try: float) -> Generation:
            with TextStream(
                self._open(prompt, sampling, False, exclude_input_in_output, per_try)
            ) as stream:
                for _ in stream:
                    pass
            return stream.generation

        return call_sync(once, s.retry, s.rng, seconds, s.translator(seconds))

    def stream(self, prompt: str, *, timeout: float | None = None, **sampling: Any) -> TextStream:
        """Text deltas as they are generated; they join to ``generate``'s text."""
        seconds = self._settings.seconds(timeout)
        return TextStream(self._open(prompt, sampling, True, True, seconds))

    def close(self) -> None:
        """Close idle HTTP connections; later calls raise ClientClosedError."""
        self._pool.close()

    def __enter__(self) -> GenerationClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- asyncio ------------------------------------------------------------------------------


class _AsyncSource(Protocol):
    async def next_chunk(self) -> Chunk | None: ...
    async def close(self) -> None: ...


async def _within(awaitable: Awaitable[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise DeadlineExceeded(f"no response within {timeout:g}s") from None


class _AioGrpcSource:
    def __init__(self, endpoint: Endpoint, model: str, tensors: Any, timeout: float):
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as aioclient

        from clients.transports import grpc_channel_args

        self._timeout = timeout
        self._model = model
        self._started = False
        self._done = False
        self._closed = False
        self._client = aioclient.InferenceServerClient(
            endpoint.address, ssl=endpoint.ssl, channel_args=grpc_channel_args(own_connection=True)
        )
        request = {
            "model_name": model,
            "inputs": wire_inputs(grpcclient, tensors),
            "outputs": [grpcclient.InferRequestedOutput(name) for name in OUTPUTS],
            "request_id": uuid.uuid4().hex,
        }

        async def requests() -> Any:
            yield request

        self._responses = self._client.stream_infer(requests())

    async def next_chunk(self) -> Chunk | None:
        if self._done:
            return None
        try:
            result, error = await _within(self._responses.__anext__(), self._timeout)
        except StopAsyncIteration:
            self._done = True
            await self.close()
            return None
        except ClientError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise translate(exc) from exc
        if error is not None:
            self._done = True
            index = None
            if not self._started:
                try:
                    index = await self._client.get_model_repository_index(as_json=True)
                except Exception:  # only a refinement of the error
                    index = None
            await self.close()
            raise _stream_error(error, self._model, index) from error
        self._started = True
        chunk, final = _grpc_chunk(result)
        if final:
            self._done = True
            await self.close()
        return chunk

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._done:
            self._responses.cancel()  # cancels the RPC: the server aborts the request
        else:
            await self._drain()
        await self._client.close()

    async def _drain(self) -> None:
        """Read the stream to its end (the server's status) before closing the channel.

        Closing right after the final response reaches tritonserver 2.51 as a cancellation of
        a finished stream, which it never completes: the model then counts an inference in
        flight forever and cannot be unloaded.
        """
        with contextlib.suppress(Exception):
            while True:
                await _within(self._responses.__anext__(), self._timeout)


class _AioHttpSource:
    def __init__(self, endpoint: Endpoint, model: str, body: bytes, stream: bool, timeout: float):
        self._url = endpoint.url + _path(model, stream)
        self._model = model
        self._body = body
        self._stream = stream
        self._timeout = timeout
        self._session: Any = None
        self._reply: Any = None
        self._pending: Chunk | None = None
        self._done = False

    async def open(self) -> None:
        import aiohttp

        # no session-wide cap (aiohttp's default is 5 min): _within bounds each wait
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        try:
            self._reply = await _within(
                self._session.post(
                    self._url, data=self._body, headers={"Content-Type": "application/json"}
                ),
                self._timeout,
            )
            if self._reply.status != 200:
                raise http_error(
                    self._reply.status, await self._reply.read(), self._url, self._model
                )
            if not self._stream:
                self._pending = chunk_from_json(json.loads(await self._reply.read()))
        except ClientError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise translate(exc, (aiohttp.ClientConnectionError,)) from exc

    async def next_chunk(self) -> Chunk | None:
        if not self._stream:
            chunk, self._pending = self._pending, None
            return chunk
        while not self._done:
            line = await _within(self._reply.content.readline(), self._timeout)
            if not line:
                self._done = True
                break
            data = sse_data(line.decode("utf-8"))
            if data is not None:
                try:
                    return chunk_from_json(data)
                except ClientError:
                    await self.close()
                    raise
        await self.close()
        return None

    async def close(self) -> None:
        if self._reply is not None:
            self._reply.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


class AsyncTextStream:
    """Async iterator of text deltas; ``await close()`` (or ``async with``) cancels."""

    def __init__(self, source: _AsyncSource) -> None:
        self._source = source
        self.chunks: list[Chunk] = []

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def __anext__(self) -> str:
        while True:
            chunk = await self._source.next_chunk()
            if chunk is None:
                raise StopAsyncIteration
            self.chunks.append(chunk)
            if chunk.text:
                return chunk.text

    @property
    def generation(self) -> Generation:
        return combine(self.chunks)

    async def close(self) -> None:
        await self._source.close()

    async def __aenter__(self) -> AsyncTextStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class AsyncGenerationClient:
    """asyncio twin of GenerationClient."""

    def __init__(
        self,
        url: str = "localhost:8001",
        model: str = "llm",
        protocol: WireProtocol = "grpc",
        *,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._settings = _Settings(url, model, protocol, timeout, retry)
        self._closed = False

    async def _open(
        self, prompt: str, sampling: dict[str, Any], stream: bool, exclude: bool, timeout: float
    ) -> _AsyncSource:
        s = self._settings
        if self._closed:
            raise ClientClosedError(f"the AsyncGenerationClient for {s.endpoint.url} is closed")
        if s.protocol == "grpc":
            tensors = generation_tensors(prompt, sampling, stream, exclude)
            return _AioGrpcSource(s.endpoint, s.model, tensors, timeout)
        body = generate_body(prompt, sampling, stream, exclude)
        source = _AioHttpSource(s.endpoint, s.model, body, stream, timeout)
        await source.open()
        return source

    async def generate(
        self,
        prompt: str,
        *,
        exclude_input_in_output: bool = True,
        timeout: float | None = None,
        **sampling: Any,
    ) -> Generation:
        s = self._settings

        async def once(seconds: float) -> Generation:
            source = await self._open(prompt, sampling, False, exclude_input_in_output, seconds)
            async with AsyncTextStream(source) as stream:
                async for _ in stream:
                    pass
            return stream.generation

        seconds = s.seconds(timeout)
        return await call_async(once, s.retry, s.rng, seconds, s.translator(seconds))

    async def stream(
        self, prompt: str, *, timeout: float | None = None, **sampling: Any
    ) -> AsyncTextStream:
        seconds = self._settings.seconds(timeout)
        source = await self._open(prompt, sampling, True, True, seconds)
        return AsyncTextStream(source)

    async def close(self) -> None:
        """Streams own their connections; after this, new calls raise ClientClosedError."""
        self._closed = True

    async def __aenter__(self) -> AsyncGenerationClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
