"""A closed-loop HTTP load generator, the same for every served system.

N workers share one asyncio loop, each with its own HTTP/1.1 keep-alive connection (a minimal
client: requests are prepared whole before the clock starts; no compression is asked for,
while general clients ask for gzip and tritonserver then compresses every answer). Each
worker sends one text per request and the next one as soon as the answer came back. The
first ``warmup`` seconds are not counted; every request that ends in the measured window
counts towards throughput and latency. Every answer must be a 200 whose body parses to
exactly one ``dim``-long vector of finite numbers, or it counts as a failure.

The generator's own cost is reported as the CPU time of this process per request. The same
file run as a script (``python loadgen.py PORT``) is a trivial endpoint answering every POST
with a canned Triton answer: the generator's ceiling on these cores.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

REQUEST_TIMEOUT_S = 60.0
_HEADERS = {"Content-Type": "application/json"}


class BadAnswer(ValueError):
    """A 200 whose body is not what the route promises."""


def _triton_body(texts: list[str]) -> bytes:
    tensor = {"name": "TEXT", "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}
    return json.dumps({"inputs": [tensor]}).encode()


def _triton_vectors(payload: bytes, output: str = "EMBEDDING") -> list[list[float]]:
    answer = json.loads(payload)
    tensor = next((o for o in answer.get("outputs", []) if o.get("name") == output), None)
    if tensor is None:
        raise BadAnswer(f"no output {output!r} in {payload[:200]!r}")
    rows, dim = tensor["shape"]
    data = tensor["data"]
    return [data[i * dim : (i + 1) * dim] for i in range(rows)]


def _infinity_vectors(payload: bytes) -> list[list[float]]:
    answer = json.loads(payload)
    items = sorted(answer["data"], key=lambda item: item["index"])
    return [item["embedding"] for item in items]


@dataclass(frozen=True)
class Target:
    """Where one system takes texts: its POST route, its body and its answer's vectors."""

    url: str
    body: Callable[[list[str]], bytes]
    vectors: Callable[[bytes], list[list[float]]]
    dim: int = 384

    def check(self, payload: bytes, count: int) -> None:
        """Raise BadAnswer unless ``payload`` holds ``count`` finite vectors of ``dim``."""
        try:
            vectors = self.vectors(payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise BadAnswer(f"unreadable answer ({exc}): {payload[:200]!r}") from None
        if len(vectors) != count or any(len(v) != self.dim for v in vectors):
            shape = [len(v) for v in vectors]
            raise BadAnswer(f"expected {count} vector(s) of {self.dim}, got lengths {shape}")
        if not all(math.isfinite(sum(v)) for v in vectors):  # a NaN or inf propagates
            raise BadAnswer("a vector holds NaN or infinity")


def triton_target(http_url: str, model: str) -> Target:
    """Triton's KServe v2 JSON route: TEXT BYTES [n, 1] in, EMBEDDING FP32 [n, D] out."""
    return Target(f"{http_url}/v2/models/{model}/infer", _triton_body, _triton_vectors)


def infinity_target(http_url: str, model: str) -> Target:
    """infinity-emb's OpenAI-style route: POST /embeddings {"model", "input": [texts]}."""

    def body(texts: list[str]) -> bytes:
        return json.dumps({"model": model, "input": texts}).encode()

    return Target(f"{http_url}/embeddings", body, _infinity_vectors)


@dataclass
class LevelResult:
    """One concurrency level of one system: the measured window's requests."""

    concurrency: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    failures: int = 0  # over warm-up and measured window
    first_failure: str | None = None
    loadgen_cpu_s: float = 0.0  # this process's CPU time over the whole level
    requests_sent: int = 0  # over warm-up and measured window

    def fail(self, reason: str) -> None:
        self.failures += 1
        if self.first_failure is None:
            self.first_failure = reason

    @property
    def texts_per_s(self) -> float:
        return len(self.latencies_s) / self.seconds

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return math.nan
        ordered = sorted(self.latencies_s)
        rank = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
        return ordered[rank] * 1000

    @property
    def loadgen_cpu_us_per_request(self) -> float:
        return self.loadgen_cpu_s / self.requests_sent * 1e6 if self.requests_sent else math.nan

    def as_json(self) -> dict[str, object]:
        return {
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "requests": len(self.latencies_s),
            "texts_per_s": self.texts_per_s,
            "p50_ms": self.percentile_ms(50),
            "p90_ms": self.percentile_ms(90),
            "p99_ms": self.percentile_ms(99),
            "failures": self.failures,
            "first_failure": self.first_failure,
            "loadgen_cpu_us_per_request": self.loadgen_cpu_us_per_request,
        }


class _Connection:
    """One keep-alive HTTP/1.1 connection that speaks just enough of the protocol: it writes
    a request prepared whole beforehand and reads a Content-Length or chunked answer. Lighter
    per request than a general client, so the generator takes less of the shared cores."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``; the answer's status and body. Raises OSError on a broken link."""
        try:
            if self._reader is None or self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._writer.write(request)
            return await self._answer(self._reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            raise ConnectionError("connection broken") from None

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            body = await self._chunks(reader)
        else:
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection") == b"close":
            self.close()
        return status, body

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # no trailers expected
        return b"".join(parts)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _send(connection: _Connection, target: Target, request: bytes) -> str | None:
    """One request; None when the answer is a good one, else why not."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            status, payload = await connection.exchange(request)
    except (ConnectionError, TimeoutError) as exc:
        connection.close()
        return f"{type(exc).__name__}: {exc}"
    if status != 200:
        return f"HTTP {status}: {payload[:200]!r}"
    try:
        target.check(payload, 1)
    except BadAnswer as exc:
        return str(exc)
    return None


async def _closed_loop(
    target: Target, requests: list[bytes], concurrency: int, warmup: float, seconds: float
) -> LevelResult:
    result = LevelResult(concurrency, seconds)
    order = itertools.count()
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds

    async def worker(connection: _Connection) -> None:
        while (began := time.perf_counter()) < end:
            error = await _send(connection, target, requests[next(order) % len(requests)])
            done = time.perf_counter()
            result.requests_sent += 1
            if error is not None:
                result.fail(error)
            elif measure_from <= done <= end:
                result.latencies_s.append(done - began)
        connection.close()

    address = urllib.parse.urlsplit(target.url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    cpu = time.process_time()
    await asyncio.gather(*(worker(_Connection(host, port)) for _ in range(concurrency)))
    result.loadgen_cpu_s = time.process_time() - cpu
    return result


def _request(target: Target, text: str) -> bytes:
    """The whole HTTP request for one text, prepared before the clock starts."""
    address = urllib.parse.urlsplit(target.url)
    body = target.body([text])
    head = (
        f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def run_level(
    target: Target, texts: list[str], concurrency: int, warmup: float, seconds: float
) -> LevelResult:
    """Closed-loop load at ``concurrency``: warm-up, then ``seconds`` measured."""
    requests = [_request(target, text) for text in texts]
    return asyncio.run(_closed_loop(target, requests, concurrency, warmup, seconds))


def embed(target: Target, texts: list[str]) -> list[list[float]]:
    """The vectors for ``texts`` in one request (for the correctness check)."""
    request = urllib.request.Request(target.url, target.body(texts), _HEADERS, method="POST")
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as reply:
        payload = reply.read()
    target.check(payload, len(texts))
    return target.vectors(payload)


# The trivial endpoint: a canned answer of one 384-long vector, keep-alive, no parsing of JSON.
_CANNED = json.dumps(
    {
        "model_name": "trivial",
        "outputs": [
            {"name": "EMBEDDING", "datatype": "FP32", "shape": [1, 384], "data": [0.05] * 384}
        ],
    }
).encode()
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_CANNED)}\r\n\r\n".encode()
    + _CANNED
)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve_trivial(port: int) -> None:
    server = await asyncio.start_server(_answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve_trivial(int(sys.argv[1])))
