"""Pure helpers for text generation (the vllm backend contract): no I/O.

Requests are built the same way for every transport: the prompt, ``stream``, the sampling
parameters as the ``sampling_parameters`` JSON input (so lists such as ``stop`` work), and the
``return_*`` flags for finish reason and token counts. Responses become ``Chunk`` objects;
``combine`` joins them into one ``Generation``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from clients.core import WireTensor
from clients.errors import InvalidInputError, ServerError

__all__ = [
    "OUTPUTS",
    "Chunk",
    "Generation",
    "chunk_from_arrays",
    "chunk_from_json",
    "combine",
    "generate_body",
    "generation_tensors",
    "sampling_json",
    "sse_data",
]

OUTPUTS = ("text_output", "finish_reason", "num_input_tokens", "num_output_tokens")


@dataclass(frozen=True)
class Generation:
    """A finished generation: the text, why it stopped, and the token counts."""

    text: str
    finish_reason: str | None
    num_input_tokens: int | None
    num_output_tokens: int | None


@dataclass(frozen=True)
class Chunk:
    """One response of a (streamed) generation."""

    text: str
    finish_reason: str | None
    num_input_tokens: int | None
    num_output_tokens: int | None


def sampling_json(sampling: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(sampling), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"sampling parameters must be JSON values: {exc}") from None


def _flags(stream: bool, exclude_input_in_output: bool) -> dict[str, bool]:
    return {
        "stream": stream,
        "exclude_input_in_output": exclude_input_in_output,
        "return_finish_reason": True,
        "return_num_input_tokens": True,
        "return_num_output_tokens": True,
    }


def generation_tensors(
    prompt: str, sampling: Mapping[str, Any], stream: bool, exclude_input_in_output: bool
) -> list[WireTensor]:
    if not isinstance(prompt, str):
        raise InvalidInputError(f"prompt: expected str, got {type(prompt).__name__}")
    tensors = [
        WireTensor("text_input", "BYTES", np.array([prompt.encode("utf-8")], dtype=np.object_)),
        WireTensor(
            "sampling_parameters",
            "BYTES",
            np.array([sampling_json(sampling).encode("utf-8")], dtype=np.object_),
        ),
    ]
    for name, value in _flags(stream, exclude_input_in_output).items():
        tensors.append(WireTensor(name, "BOOL", np.array([value], dtype=np.bool_)))
    return tensors


def generate_body(
    prompt: str, sampling: Mapping[str, Any], stream: bool, exclude_input_in_output: bool
) -> bytes:
    """JSON body for Triton's HTTP ``generate`` / ``generate_stream`` endpoints."""
    if not isinstance(prompt, str):
        raise InvalidInputError(f"prompt: expected str, got {type(prompt).__name__}")
    body: dict[str, Any] = {"text_input": prompt, "sampling_parameters": sampling_json(sampling)}
    body.update(_flags(stream, exclude_input_in_output))
    return json.dumps(body).encode("utf-8")


def _reason(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = None if value is None else str(value)
    return None if text in (None, "", "None") else text


def _count(value: Any) -> int | None:
    if value is None:
        return None
    flat = np.asarray(value).reshape(-1)
    return int(flat[0]) if flat.size else None


def _first(value: Any) -> Any:
    if value is None:
        return None
    flat = np.asarray(value, dtype=np.object_).reshape(-1)
    return flat[0] if flat.size else None


def chunk_from_arrays(arrays: Mapping[str, Any]) -> Chunk:
    """A response's output tensors (gRPC) as a Chunk."""
    raw = _first(arrays.get("text_output"))
    text = raw.decode("utf-8") if isinstance(raw, bytes) else ("" if raw is None else str(raw))
    return Chunk(
        text=text,
        finish_reason=_reason(_first(arrays.get("finish_reason"))),
        num_input_tokens=_count(arrays.get("num_input_tokens")),
        num_output_tokens=_count(arrays.get("num_output_tokens")),
    )


def _json_scalar(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def chunk_from_json(data: Mapping[str, Any]) -> Chunk:
    """A ``generate`` reply or one SSE event as a Chunk; an ``error`` key raises."""
    if "error" in data:
        raise ServerError(str(data["error"]))
    text = _json_scalar(data.get("text_output", ""))
    return Chunk(
        text="" if text is None else str(text),
        finish_reason=_reason(_json_scalar(data.get("finish_reason"))),
        num_input_tokens=_count(_json_scalar(data.get("num_input_tokens"))),
        num_output_tokens=_count(_json_scalar(data.get("num_output_tokens"))),
    )


def sse_data(line: str) -> dict[str, Any] | None:
    """The JSON of an SSE ``data:`` line; None for blank lines and other fields."""
    line = line.rstrip("\r\n")
    if not line.startswith("data:"):
        return None
    try:
        data = json.loads(line[5:].strip())
    except ValueError:
        raise ServerError(
            f"generate_stream sent an event that is not JSON: {line[:200]!r}"
        ) from None
    if not isinstance(data, dict):
        raise ServerError(f"generate_stream sent an event that is not an object: {line[:200]!r}")
    return data


def combine(chunks: Iterable[Chunk]) -> Generation:
    """Join a generation's chunks: texts concatenated, counts from the chunks."""
    texts: list[str] = []
    reason: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    for chunk in chunks:
        texts.append(chunk.text)
        reason = chunk.finish_reason or reason
        if prompt_tokens is None:
            prompt_tokens = chunk.num_input_tokens
        if chunk.num_output_tokens is not None:
            output_tokens = (output_tokens or 0) + chunk.num_output_tokens
    return Generation("".join(texts), reason, prompt_tokens, output_tokens)
