"""Request bodies the front accepts (pydantic), OpenAI's and TEI's field names.

Unknown fields are ignored, as OpenAI-compatible servers do, except the ones whose meaning we
would silently drop (``n > 1``, ``logprobs``, ``tools``, a JSON ``response_format``...): the
routes answer those with a 400 that names the field. vLLM sampling parameters that OpenAI lacks
(``top_k``, ``min_p``, ``min_tokens``, ``repetition_penalty``, ``ignore_eos``) are taken, as
vLLM's own OpenAI server takes them, and checked here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingsRequest",
    "NerRequest",
    "PredictRequest",
    "RerankRequest",
    "StreamOptions",
    "TeiEmbedRequest",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class EmbeddingsRequest(_Body):
    model: str
    input: Any  # str | list[str]; token arrays are answered with a 400 that says why
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class ChatMessage(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _Sampling(_Body):
    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: Any = None
    user: str | None = None
    # vLLM's own (its OpenAI server takes them too); checked here with vLLM 0.32's bounds
    # because a rejection from inside a gRPC stream reaches the front without its error code
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    min_tokens: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    ignore_eos: bool | None = None

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, value: int | None) -> int | None:
        if value is not None and value < 0 and value != -1:
            raise ValueError("top_k must be -1 or 0 (disabled), or at least 1")
        return value


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None


# --- TEI ------------------------------------------------------------------------------------


class _TeiBody(_Body):
    truncate: bool | None = None
    truncation_direction: Literal["right", "left", "Right", "Left"] = "right"
    model: str | None = None  # ours: which model, when the spec serves several of the task


class TeiEmbedRequest(_TeiBody):
    inputs: str | list[str]
    normalize: bool = True
    prompt_name: str | None = None
    dimensions: int | None = None


class RerankRequest(_TeiBody):
    query: str
    texts: list[str]
    raw_scores: bool = False
    return_text: bool = False


class PredictRequest(_TeiBody):
    inputs: str | list[str] | list[list[str]]
    raw_scores: bool = False


class NerRequest(_TeiBody):
    inputs: str | list[str]
