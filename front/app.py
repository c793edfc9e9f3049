"""The ASGI app: routes, the guard (keys, rate limit, body size), metrics, errors, health.

``create_app`` wires a ``Front`` (catalog, keys, limiter, metrics) to the routes; the
connections to Triton are made in the app's lifespan, inside uvicorn's event loop. ``serve``
runs it with uvicorn.

One ASGI middleware does, in order: the body-size limit (413), the API key (401) and the
per-key token bucket (429 with ``Retry-After``) for every route but ``/health`` and
``/metrics``; then it times the request and counts it by route, model and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError

from front import openai_api, tei_api
from front.backend import Backend, FrontSettings
from front.catalog import ServedModel
from front.errors import APIError, openai_body, tei_body
from front.metrics import CONTENT_TYPE
from front.state import Front, front_of

__all__ = ["create_app", "serve"]

log = logging.getLogger("triton_pack.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/health", "/live", "/metrics"})
ROUTES = frozenset(
    {
        "/v1/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/ner",
        "/embed",
        "/rerank",
        "/predict",
        "/health",
        "/live",
        "/metrics",
    }
)
HEALTH_TIMEOUT = 20.0


def _is_openai(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1"


def error_response(path: str, error: APIError) -> Response:
    body = openai_body(error) if _is_openai(path) else tei_body(error)
    return Response(
        json.dumps(body),
        status_code=error.status,
        media_type="application/json",
        headers=error.headers(),
    )


class _ClientGone(Exception):
    """The client disconnected before its body was read: there is no one to answer."""


class Guard:
    """Body limit, keys, rate limit and metrics, around the whole app."""

    def __init__(self, app: ASGIApp, front: Front, max_body_bytes: int) -> None:
        self.app = app
        self.front = front
        self.max_body_bytes = max_body_bytes

    def _check(self, scope: Scope) -> None:
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise APIError(
                413, f"request body over {self.max_body_bytes} bytes", code="body_too_large"
            )
        if path in OPEN_PATHS:
            return
        keys = self.front.keys
        who = ""
        if keys.required:
            key = keys.match(headers.get("authorization"))
            if key is None:
                given = "a wrong" if headers.get("authorization") else "no"
                raise APIError(
                    401,
                    f"{given} API key: send 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                )
            who = "key:" + key
        else:
            client = scope.get("client")
            who = "addr:" + (client[0] if client else "")
        wait = self.front.limiter.wait(who)
        if wait > 0:
            raise APIError(
                429,
                f"rate limit of {self.front.limiter.rate} requests reached; retry in {wait:.2f} s",
                code="rate_limit_exceeded",
                retry_after=wait,
            )

    async def _buffered(self, receive: Receive) -> Receive | None:
        """The whole body read up front (bounded), replayed; None if over the limit."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away mid-body
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        route = (
            path
            if path in ROUTES
            else ("/v1/models/{name}" if path.startswith("/v1/models/") else "other")
        )
        scope.setdefault("state", {})

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                model = str(scope["state"].get("model", ""))
                seconds = time.perf_counter() - started
                self.front.metrics.observe(route, model, int(message["status"]), seconds)
            await send(message)

        try:
            self._check(scope)
            if scope["method"] == "POST":
                replay = await self._buffered(receive)
                if replay is None:
                    raise APIError(
                        413, f"request body over {self.max_body_bytes} bytes", code="body_too_large"
                    )
                receive = replay
                _as_json(scope)
        except APIError as error:
            await error_response(path, error)(scope, receive, counted)
            return
        except _ClientGone:
            return
        await self.app(scope, receive, counted)


def invalid_body(errors: Sequence[Any], status: int) -> APIError:
    """pydantic's (or FastAPI's) validation errors as one APIError naming the fields."""
    problems = []
    param = None
    for item in errors:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        param = param or where or None
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return APIError(status, "; ".join(problems), param, "invalid_request")


def crash(path: str, error: Exception) -> APIError:
    log.error("unexpected failure on %s", path, exc_info=error)
    return APIError(500, f"internal error: {type(error).__name__}: {error}", code="internal")


def _as_json(scope: Scope) -> None:
    """Every body is JSON here: ``curl -d`` without a Content-Type is read as JSON too."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    scope["headers"] = headers


async def _health(front: Front) -> tuple[bool, dict[str, Any]]:
    """A real inference on each model (one token for a generation model)."""
    backend = front.live

    async def check(model: ServedModel) -> tuple[str, dict[str, Any]]:
        name, task = model.name, model.task
        started = time.perf_counter()
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                if task == "text-generation":
                    await backend.generators[name].generate("health", max_tokens=1)
                elif task == "text-embedding":
                    await backend.tasks[name].embed(["health"])
                elif task == "text-classification":
                    client = backend.tasks[name]
                    pairs = ["probe"] if model.pair else None
                    await client.classify(["health"], pairs)
                elif task == "text-reranking":
                    await backend.tasks[name].rerank("health", ["probe"])
                else:
                    await backend.tasks[name].entities(["health"])
        except Exception as exc:  # any failure is the answer
            return name, {"ok": False, "task": task, "detail": f"{type(exc).__name__}: {exc}"}
        seconds = time.perf_counter() - started
        return name, {"ok": True, "task": task, "detail": f"answered in {seconds:.3f} s"}

    results = await asyncio.gather(*(check(m) for m in front.catalog.models))
    models = dict(results)
    return all(entry["ok"] for entry in models.values()), models


def create_app(front: Front, settings: FrontSettings, max_body_bytes: int = 4 << 20) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        front.backend = Backend(settings, front.catalog)
        try:
            yield
        finally:
            backend, front.backend = front.backend, None
            await backend.close()

    app = FastAPI(
        title="triton-pack API front",
        description="OpenAI- and TEI-compatible routes over a triton-pack repository.",
        lifespan=lifespan,
    )
    app.state.front = front
    app.include_router(openai_api.router)
    app.include_router(tei_api.router)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> Response:
        return error_response(request.url.path, error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        status = 400 if _is_openai(request.url.path) else 422
        return error_response(request.url.path, invalid_body(error.errors(), status))

    @app.exception_handler(Exception)
    async def crashed(request: Request, error: Exception) -> Response:
        return error_response(request.url.path, crash(request.url.path, error))

    @app.get("/health")
    async def health(request: Request) -> Response:
        ok, models = await _health(front_of(request))
        body = {"status": "ok" if ok else "unhealthy", "models": models}
        return Response(
            json.dumps(body), status_code=200 if ok else 503, media_type="application/json"
        )

    @app.get("/live")
    async def live() -> Response:
        """The process answers (no call to Triton): Kubernetes' liveness probe."""
        return Response(b'{"status": "ok"}', media_type="application/json")

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(front_of(request).metrics.render(), media_type=CONTENT_TYPE)

    return Guard(app, front, max_body_bytes)


def serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    # no access log, no proxy-header rewriting, no Server/Date headers: each costs CPU per
    # request on a machine whose cores the models need
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
