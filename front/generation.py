"""Chat and completions on a ``text-generation`` model: prompts, sampling, OpenAI's shapes.

``Prompter`` renders a chat with the model's own chat template (its tokenizer, read from the
engine's model folder) and counts prompt tokens as vLLM will (the prompt string tokenized with
special tokens). When the template already writes the BOS token and the tokenizer also adds
one, the template's is dropped, so the model sees one BOS, as it does with vLLM's own chat
server. ``sampling`` maps an OpenAI request onto vLLM ``SamplingParams``; the ``*_response``
and ``*_chunk`` functions build OpenAI's bodies. All pure except the tokenizer load.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from front.errors import APIError
from front.schemas import ChatMessage, ChatRequest, CompletionRequest

__all__ = [
    "Prompter",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "sampling",
    "usage",
]

# vLLM SamplingParams that OpenAI's API lacks: passed through from the body when present
PASS_THROUGH = ("top_k", "min_p", "min_tokens", "repetition_penalty", "ignore_eos")
DEFAULT_MAX_TOKENS = 256  # when the engine's max_model_len is unknown


def _unsupported(request: ChatRequest | CompletionRequest) -> None:
    if request.n not in (None, 1):
        raise APIError(400, f"n={request.n}: only n=1 is served (one choice per request)", "n")
    if request.logprobs not in (None, False):
        raise APIError(400, "logprobs are not served by this front", "logprobs")
    if isinstance(request, ChatRequest):
        if request.tools:
            raise APIError(400, "tools (function calling) are not served by this front", "tools")
        kind = (request.response_format or {}).get("type", "text")
        if kind != "text":
            raise APIError(
                400, f"response_format {kind!r} is not served (only 'text')", "response_format"
            )
    else:
        if request.suffix:
            raise APIError(400, "suffix is not served by this front", "suffix")
        if request.best_of not in (None, 1):
            raise APIError(400, f"best_of={request.best_of}: only 1 is served", "best_of")


def _message_text(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise APIError(
                400,
                f"messages[{index}].content: only text parts are served, got {part.get('type')!r}",
                f"messages[{index}].content",
            )
        parts.append(part["text"])
    return "".join(parts)


@dataclass
class Prompter:
    """The model's tokenizer: chat template and token counts."""

    model: str
    tokenizer: Any
    max_model_len: int | None

    @classmethod
    def load(cls, model: str, folder: str, max_model_len: int | None) -> Prompter:
        from transformers import AutoTokenizer

        return cls(model, AutoTokenizer.from_pretrained(folder), max_model_len)

    @cached_property
    def adds_bos(self) -> bool:
        bos = self.tokenizer.bos_token_id
        ids = self.tokenizer("x", add_special_tokens=True)["input_ids"]
        return bos is not None and bool(ids) and ids[0] == bos

    def chat_prompt(self, messages: list[ChatMessage]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise APIError(
                400,
                f"model {self.model!r} has no chat template (its tokenizer_config.json has no "
                "chat_template): use /v1/completions with a prompt",
                "messages",
            )
        turns = [{"role": m.role, "content": _message_text(m, i)} for i, m in enumerate(messages)]
        try:
            prompt = self.tokenizer.apply_chat_template(
                turns, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # the template's own raise_exception, or a jinja error
            raise APIError(400, f"chat template of {self.model!r}: {exc}", "messages") from None
        bos = self.tokenizer.bos_token
        if bos and prompt.startswith(bos) and self.adds_bos:
            prompt = prompt[len(bos) :]
        return str(prompt)

    def count(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])

    def max_tokens(self, requested: int | None, prompt_tokens: int) -> int:
        limit = self.max_model_len
        if limit is not None and prompt_tokens >= limit:
            raise APIError(
                400,
                f"the prompt is {prompt_tokens} tokens; model {self.model!r} takes at most "
                f"{limit} in all (max_model_len)",
                "messages",
                "context_length_exceeded",
            )
        if requested is None:
            return limit - prompt_tokens if limit is not None else DEFAULT_MAX_TOKENS
        if limit is not None and prompt_tokens + requested > limit:
            raise APIError(
                400,
                f"max_tokens={requested} plus the prompt's {prompt_tokens} tokens exceed model "
                f"{self.model!r}'s max_model_len {limit}",
                "max_tokens",
                "context_length_exceeded",
            )
        return requested


def sampling(request: ChatRequest | CompletionRequest, max_tokens: int) -> dict[str, Any]:
    """vLLM SamplingParams for the request (None values left to vLLM's defaults)."""
    _unsupported(request)
    params: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
    }
    if request.stop is not None:
        params["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    for name in PASS_THROUGH:
        params[name] = getattr(request, name)
    if request.min_tokens is not None and request.min_tokens > max_tokens:
        raise APIError(
            400,
            f"min_tokens={request.min_tokens} is more than max_tokens={max_tokens}",
            "min_tokens",
        )
    return {key: value for key, value in params.items() if value is not None}


def requested_max_tokens(request: ChatRequest | CompletionRequest) -> int | None:
    if isinstance(request, ChatRequest) and request.max_completion_tokens is not None:
        return request.max_completion_tokens
    return request.max_tokens


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass(frozen=True)
class Envelope:
    """What every response and chunk of one request shares."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, prefix: str, model: str) -> Envelope:
        return cls(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), model)


def finish(reason: str | None) -> str:
    return reason if reason in ("stop", "length") else "stop"


def _body(
    env: Envelope,
    kind: str,
    choice: dict[str, Any] | None,
    reason: str | None,
    counts: Mapping[str, int] | None,
    with_usage: bool,
) -> dict[str, Any]:
    """What every response and chunk holds: the envelope, at most one choice (``choice``
    plus ``index``, ``logprobs``, ``finish_reason``) and, when asked, ``usage``."""
    body: dict[str, Any] = {
        "id": env.id,
        "object": kind,
        "created": env.created,
        "model": env.model,
        "choices": []
        if choice is None
        else [{"index": 0, **choice, "logprobs": None, "finish_reason": reason}],
    }
    if with_usage:
        body["usage"] = dict(counts) if counts is not None else None
    return body


def chat_response(
    env: Envelope, text: str, reason: str | None, counts: Mapping[str, int]
) -> dict[str, Any]:
    message = {"message": {"role": "assistant", "content": text}}
    return _body(env, "chat.completion", message, finish(reason), counts, True)


def chat_chunk(
    env: Envelope,
    delta: dict[str, Any] | None,
    reason: str | None = None,
    counts: Mapping[str, int] | None = None,
    with_usage: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` is the usage-only chunk (no choices)."""
    choice = None if delta is None else {"delta": delta}
    return _body(env, "chat.completion.chunk", choice, reason, counts, with_usage)


def completion_response(
    env: Envelope, text: str, reason: str | None, counts: Mapping[str, int]
) -> dict[str, Any]:
    return _body(env, "text_completion", {"text": text}, finish(reason), counts, True)


def completion_chunk(
    env: Envelope,
    text: str | None,
    reason: str | None = None,
    counts: Mapping[str, int] | None = None,
    with_usage: bool = False,
) -> dict[str, Any]:
    """One streamed ``text_completion``; ``text=None`` is the usage-only chunk."""
    choice = None if text is None else {"text": text}
    return _body(env, "text_completion", choice, reason, counts, with_usage)
