"""HTTP connections the clients own: a sync keep-alive pool and a loop-bound aiohttp session.

Why not tritonclient.http's own clients: its sync client holds one geventhttpclient pool per
client object and a gevent hub per thread that nothing destroys (a long-lived service ran
out of descriptors), and fixes its timeout at construction; its asyncio client caps every
request at 60 s. Here every request carries its own timeout, threads share one pool of idle
connections (a thread borrows one per request and gives it back), and ``close()`` releases
every socket. Request bodies and responses keep tritonclient's wire format
(``InferenceServerClient.generate_request_body`` / ``parse_response_body``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import ssl as ssl_module
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clients.endpoints import Endpoint
from clients.errors import ClientClosedError, ClientError, ConnectError, DeadlineExceeded

__all__ = ["AsyncHttpSession", "HttpPool", "HttpReply", "HttpStream", "LoopGuard"]

MAX_IDLE = 32  # idle keep-alive connections kept per pool; more are closed when returned
_STALE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _protocol_error(url: str, exc: Exception) -> ClientError:
    return ClientError(
        f"{url} did not answer with HTTP/1.1 ({type(exc).__name__}: {exc}); is it Triton's "
        "HTTP port (8000 by default) rather than gRPC (8001) or metrics (8002)?"
    )


class HttpStream:
    """A response being read line by line (server-sent events); holds its connection."""

    def __init__(self, pool: HttpPool, connection: http.client.HTTPConnection, reply: Any):
        self._pool = pool
        self._connection: http.client.HTTPConnection | None = connection
        self._reply = reply
        self.status: int = reply.status
        self.headers: dict[str, str] = {k.lower(): v for k, v in reply.getheaders()}

    def read_all(self) -> bytes:
        try:
            return bytes(self._reply.read())
        except TimeoutError:
            self.close()
            raise DeadlineExceeded("no more data within the timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ConnectError(f"{type(exc).__name__}: {exc}") from exc

    def readline(self, timeout: float) -> bytes:
        if self._connection is None:
            return b""
        if self._connection.sock is not None:
            self._connection.sock.settimeout(timeout)
        try:
            return bytes(self._reply.readline())
        except TimeoutError:
            self.close()
            raise DeadlineExceeded(f"no data within {timeout:g}s") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ConnectError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Give the connection back if the response was read to its end, else drop it (an
        unfinished response cannot be reused). Idempotent."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._reply.isclosed() and not self._reply.will_close:
            self._pool.give_back(connection)
            return
        # an unfinished response: shut the socket down now, so that the server sees the
        # client go (and cancels the request) even while the response object still holds
        # a reference to the socket
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        self._reply.close()
        self._pool.discard(connection)


class _Connections:
    """A pool's connections; closed by ``HttpPool.close()`` or when the pool is collected."""

    def __init__(self) -> None:
        self.idle: list[http.client.HTTPConnection] = []
        self.busy: set[http.client.HTTPConnection] = set()
        self.lock = threading.Lock()
        self.closed = False

    def close(self) -> None:
        with self.lock:
            self.closed = True
            connections = [*self.idle, *self.busy]
            self.idle.clear()
            self.busy.clear()
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            connection.close()


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one server, shared by any number of threads.

    ``close()`` closes them all; a pool that is garbage-collected unclosed closes them too.
    """

    def __init__(self, endpoint: Endpoint, what: str = "client") -> None:
        self.endpoint = endpoint
        self.url = endpoint.url.replace("grpc", "http", 1)
        self._what = what
        self._state = _Connections()
        self._idle = self._state.idle
        self._busy = self._state.busy
        self._lock = self._state.lock
        self._context = ssl_module.create_default_context() if endpoint.ssl else None
        weakref.finalize(self, self._state.close)

    # -- borrowing and returning -----------------------------------------------------------
    def _new(self, timeout: float) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(
                self.endpoint.host, self.endpoint.port, timeout=timeout, context=self._context
            )
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=timeout)

    @property
    def closed(self) -> bool:
        return self._state.closed

    def check_open(self) -> None:
        if self._state.closed:
            raise ClientClosedError(f"the {self._what} for {self.url} is closed")

    def _take(self, timeout: float, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            self.check_open()
            connection = self._idle.pop() if self._idle and not fresh else None
            reused = connection is not None
            if connection is None:
                connection = self._new(timeout)
            self._busy.add(connection)
        return connection, reused

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.discard(connection)
            if (
                not self._state.closed
                and len(self._idle) < MAX_IDLE
                and connection.sock is not None
            ):
                self._idle.append(connection)
                return
        connection.close()

    def discard(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.discard(connection)
        connection.close()

    # -- one request -------------------------------------------------------------------------
    def _connect(self, connection: http.client.HTTPConnection, timeout: float) -> None:
        connection.timeout = timeout
        if connection.sock is None:
            try:
                connection.connect()
            except TimeoutError:
                raise ConnectError(f"cannot connect to {self.url} within {timeout:g}s") from None
            except OSError as exc:
                raise ConnectError(f"cannot connect to {self.url}: {exc}") from exc
        else:
            connection.sock.settimeout(timeout)

    def _send(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Any:
        self._connect(connection, timeout)
        connection.request(method, path, body=body, headers=dict(headers))
        return connection.getresponse()

    def open(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
        fresh: bool = False,
    ) -> HttpStream:
        """Send a request and return its response unread (the caller closes it). ``fresh``:
        on a connection of its own (a stream whose cancellation is the connection's close)."""
        connection, reused = self._take(timeout, fresh)
        try:
            try:
                reply = self._send(connection, method, path, body, headers or {}, timeout)
            except _STALE:
                if not reused:
                    raise
                # the server closed an idle keep-alive connection (e.g. it restarted):
                # the request never reached it, so send it once more on a new connection
                self.discard(connection)
                connection, reused = self._take(timeout)
                reply = self._send(connection, method, path, body, headers or {}, timeout)
        except ClientError:
            self.discard(connection)
            raise
        except TimeoutError:
            self.discard(connection)
            raise DeadlineExceeded(f"no reply from {self.url} within {timeout:g}s") from None
        except OSError as exc:
            self.discard(connection)
            raise ConnectError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        except http.client.HTTPException as exc:
            self.discard(connection)
            raise _protocol_error(self.url, exc) from exc
        return HttpStream(self, connection, reply)

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
    ) -> HttpReply:
        """Send a request and read the whole response; the connection goes back to the pool."""
        stream = self.open(method, path, body, headers, timeout=timeout)
        data = stream.read_all()
        stream.close()
        return HttpReply(stream.status, stream.headers, data)

    def close(self) -> None:
        """Close every connection; requests in flight fail, later ones raise."""
        self._state.close()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._busy)


class LoopGuard:
    """Remembers the event loop an async client first ran in, and whether it was closed.

    asyncio connections (aiohttp's, grpc.aio's) belong to the loop that made them; using them
    from another loop fails deep inside the library, or leaks. A client is therefore bound to
    its first loop, and says so plainly when used from another one or after ``close()``.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def check(self) -> None:
        if self.closed:
            raise ClientClosedError(f"the {self._what} is closed; make a new one")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ClientError(
                f"the {self._what} was first used in another event loop; asyncio clients "
                "belong to one loop: make one per loop (e.g. inside each asyncio.run)"
            )


class AsyncHttpSession:
    """One aiohttp session per client, made in (and bound to) the loop of its first call."""

    def __init__(self, endpoint: Endpoint, what: str = "client") -> None:
        import aiohttp  # imported here, at construction: not inside the loop's first call

        self._aiohttp = aiohttp
        self.endpoint = endpoint
        self.url = endpoint.url.replace("grpc", "http", 1)
        self.guard = LoopGuard(f"{what} for {self.url}")
        self._session: Any = None

    def _get(self) -> Any:
        self.guard.check()
        if self._session is None:
            # no session-wide timeout (aiohttp's default caps every request at 5 min, and
            # tritonclient's at 60 s): each request passes its own
            self._session = self._aiohttp.ClientSession(
                timeout=self._aiohttp.ClientTimeout(total=None),
                headers={"Accept-Encoding": "identity"},  # tensors are not worth gzipping
                auto_decompress=False,  # parse_response_body decodes what the server encoded
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
    ) -> HttpReply:
        aiohttp = self._aiohttp
        session = self._get()
        limits = aiohttp.ClientTimeout(total=timeout)
        try:
            async with session.request(
                method, self.url + path, data=body, headers=headers, timeout=limits
            ) as reply:
                data = await reply.read()
                found = {k.lower(): v for k, v in reply.headers.items()}
                return HttpReply(reply.status, found, data)
        except TimeoutError:
            raise DeadlineExceeded(f"no reply from {self.url} within {timeout:g}s") from None
        except aiohttp.ClientConnectionError as exc:
            raise ConnectError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        except aiohttp.ClientResponseError as exc:
            raise ClientError(
                f"{self.url} did not answer with HTTP/1.1 ({exc}); is it Triton's HTTP port?"
            ) from exc

    async def close(self) -> None:
        self.guard.closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
