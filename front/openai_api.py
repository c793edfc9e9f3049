"""OpenAI's routes: ``/v1/embeddings``, ``/v1/chat/completions``, ``/v1/completions``,
``/v1/models``. Bodies and errors in OpenAI's shapes; streams as server-sent events of
OpenAI's chunks ending with ``data: [DONE]``."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import numpy as np
import numpy.typing as npt
import orjson
from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse

from clients import AsyncTextStream, ClientError, Generation
from front import generation as gen
from front.errors import APIError, from_client_error, openai_body
from front.schemas import ChatRequest, CompletionRequest, EmbeddingsRequest
from front.state import front_of, resolve

__all__ = ["json_response", "router"]

router = APIRouter()


def json_response(body: Any, status: int = 200) -> Response:
    """orjson, numpy arrays included: a float32 vector is written in its shortest exact
    form (17x faster than json + tolist for a 384-d vector, measured)."""
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    if isinstance(value, list) and not value:
        raise APIError(400, "input: must not be empty", "input")
    if isinstance(value, list) and all(isinstance(i, int | list) for i in value):
        raise APIError(
            400,
            "input: token arrays are not served (their ids belong to another tokenizer); send "
            "text. With LangChain's OpenAIEmbeddings set check_embedding_ctx_length=False.",
            "input",
        )
    raise APIError(400, "input: expected a string or a list of strings", "input")


def _vector(row: npt.NDArray[np.float32], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(row.astype("<f4", copy=False).tobytes()).decode("ascii")
    return row


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
    model = resolve(request, body.model, "text-embedding", "/v1/embeddings")
    texts = _texts(body.input)
    backend = front_of(request).live
    try:
        vectors = await backend.tasks[model.name].embed(texts)
    except ClientError as exc:
        raise from_client_error(exc, model.name) from None
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise APIError(
            400,
            f"dimensions={body.dimensions}: model {model.name!r} serves {vectors.shape[1]}-"
            "dimensional embeddings and does not shorten them",
            "dimensions",
        )
    tokens = backend.counters[model.name].count(texts)
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(row, body.encoding_format)}
        for i, row in enumerate(vectors)
    ]
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": model.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.get("/v1/models")
async def models(request: Request) -> Response:
    return json_response(
        {
            "object": "list",
            "data": [_model_card(m.name, m.task) for m in front_of(request).catalog.models],
        }
    )


def _model_card(name: str, task: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "triton-pack", "task": task}


@router.get("/v1/models/{name}")
async def model(name: str, request: Request) -> Response:
    found = front_of(request).catalog.get(name)
    if found is None:
        raise APIError(404, f"model {name!r} does not exist", "model", "model_not_found")
    return json_response(_model_card(found.name, found.task))


# --- generation ---------------------------------------------------------------------------


async def _open(
    request: Request, name: str, prompt: str, params: dict[str, Any]
) -> tuple[AsyncTextStream, str | None]:
    """Open the stream and wait for its first piece, so that errors get a status code."""
    client = front_of(request).live.generators[name]
    stream: AsyncTextStream | None = None
    try:
        stream = await client.stream(prompt, **params)
        first = await anext(stream, None)
    except ClientError as exc:
        if stream is not None:
            await stream.close()
        raise from_client_error(exc, name) from None
    return stream, first


def _events(
    request: Request,
    name: str,
    stream: AsyncTextStream,
    first: str | None,
    chunks: Callable[[str], list[dict[str, Any]]],
    closing: Callable[[AsyncTextStream], list[dict[str, Any]]],
) -> AsyncIterator[dict[str, str]]:
    """The SSE events: ``chunks(piece)`` per text piece, ``closing`` at the end, [DONE]. A
    client that goes away cancels the generation on Triton (the stream's close)."""
    metrics = front_of(request).metrics

    async def events() -> AsyncIterator[dict[str, str]]:
        done = False
        try:
            pieces = [first] if first is not None else []
            for piece in pieces:
                for chunk in chunks(piece):
                    yield {"data": json.dumps(chunk)}
            async for piece in stream:
                for chunk in chunks(piece):
                    yield {"data": json.dumps(chunk)}
            for chunk in closing(stream):
                yield {"data": json.dumps(chunk)}
            done = True
            yield {"data": "[DONE]"}
        except ClientError as exc:
            done = True  # Triton ended it: say so in OpenAI's error body, as OpenAI does
            yield {"data": json.dumps(openai_body(from_client_error(exc, name)))}
        finally:
            if not done:
                metrics.cancelled.labels(name).inc()
            with anyio.CancelScope(shield=True):
                await stream.close()

    return events()


def _counts(result: Generation) -> dict[str, int]:
    return gen.usage(result.num_input_tokens or 0, result.num_output_tokens or 0)


async def _generate(
    request: Request, name: str, prompt: str, params: dict[str, Any], echo: bool = False
) -> Any:
    client = front_of(request).live.generators[name]
    try:
        return await client.generate(prompt, exclude_input_in_output=not echo, **params)
    except ClientError as exc:
        raise from_client_error(exc, name) from None


@router.post("/v1/chat/completions")
async def chat(body: ChatRequest, request: Request) -> Response:
    model = resolve(request, body.model, "text-generation", "/v1/chat/completions")
    prompter = front_of(request).live.prompters[model.name]
    prompt = prompter.chat_prompt(body.messages)
    max_tokens = prompter.max_tokens(gen.requested_max_tokens(body), prompter.count(prompt))
    params = gen.sampling(body, max_tokens)
    env = gen.Envelope.new("chatcmpl", model.name)
    with_usage = bool(body.stream_options and body.stream_options.include_usage)
    if not body.stream:
        result = await _generate(request, model.name, prompt, params)
        counts = _counts(result)
        return json_response(gen.chat_response(env, result.text, result.finish_reason, counts))
    stream, first = await _open(request, model.name, prompt, params)
    opened = [gen.chat_chunk(env, {"role": "assistant", "content": ""}, with_usage=with_usage)]

    def chunks(piece: str) -> list[dict[str, Any]]:
        head = opened[:]
        opened.clear()
        return [*head, gen.chat_chunk(env, {"content": piece}, with_usage=with_usage)]

    def closing(done: AsyncTextStream) -> list[dict[str, Any]]:
        reason = gen.finish(done.generation.finish_reason)
        out = [*opened, gen.chat_chunk(env, {}, reason, with_usage=with_usage)]
        if with_usage:
            out.append(gen.chat_chunk(env, None, counts=_counts(done.generation), with_usage=True))
        return out

    return EventSourceResponse(_events(request, model.name, stream, first, chunks, closing))


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    model = resolve(request, body.model, "text-generation", "/v1/completions")
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise APIError(400, f"prompt: one prompt a request is served, got {len(prompts)}", "prompt")
    prompt = prompts[0]
    prompter = front_of(request).live.prompters[model.name]
    max_tokens = prompter.max_tokens(gen.requested_max_tokens(body), prompter.count(prompt))
    params = gen.sampling(body, max_tokens)
    env = gen.Envelope.new("cmpl", model.name)
    with_usage = bool(body.stream_options and body.stream_options.include_usage)
    if not body.stream:
        result = await _generate(request, model.name, prompt, params, echo=body.echo)
        counts = _counts(result)
        return json_response(
            gen.completion_response(env, result.text, result.finish_reason, counts)
        )
    stream, first = await _open(request, model.name, prompt, params)
    echoed = [gen.completion_chunk(env, prompt, with_usage=with_usage)] if body.echo else []

    def chunks(piece: str) -> list[dict[str, Any]]:
        head = echoed[:]
        echoed.clear()
        return [*head, gen.completion_chunk(env, piece, with_usage=with_usage)]

    def closing(done: AsyncTextStream) -> list[dict[str, Any]]:
        reason = gen.finish(done.generation.finish_reason)
        out = [*echoed, gen.completion_chunk(env, "", reason, with_usage=with_usage)]
        if with_usage:
            out.append(
                gen.completion_chunk(env, None, counts=_counts(done.generation), with_usage=True)
            )
        return out

    return EventSourceResponse(_events(request, model.name, stream, first, chunks, closing))
