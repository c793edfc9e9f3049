"""The front's pure parts: keys, token buckets, error bodies and status mapping, the OpenAI
shapes and sampling mapping, the chat prompt's BOS handling, TEI's predict input forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clients.errors import (
    ConnectError,
    DeadlineExceeded,
    InvalidInputError,
    ModelNotFoundError,
    ServerError,
    UnavailableError,
)
from front import generation as gen
from front.errors import APIError, from_client_error, openai_body, tei_body
from front.guard import Keys, RateLimiter, parse_rate, read_keys
from front.schemas import ChatMessage, ChatRequest, CompletionRequest
from front.tei_api import _predict_rows


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "per_second", "burst"),
    [("20/s", 20.0, 20.0), ("20", 20.0, 20.0), ("3/min", 0.05, 3.0), ("0.5/s", 0.5, 1.0)],
)
def test_parse_rate(text: str, per_second: float, burst: float) -> None:
    rate = parse_rate(text)
    assert rate.per_second == pytest.approx(per_second)
    assert rate.burst == burst


@pytest.mark.parametrize("text", ["fast", "0/s", "-1/s", "inf/s", "3/h"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


def test_token_bucket_bursts_refills_and_says_how_long_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(parse_rate("2/s"), clock=clock)
    assert [limiter.wait("a"), limiter.wait("a")] == [0.0, 0.0]
    assert limiter.wait("a") == pytest.approx(0.5)  # empty: one token back in 0.5 s
    assert limiter.wait("b") == 0.0  # per key
    clock.now += 0.5
    assert limiter.wait("a") == 0.0
    clock.now += 60  # refills up to the burst, not beyond
    assert [limiter.wait("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert RateLimiter(None, clock=clock).wait("a") == 0.0


def test_the_limiter_forgets_the_oldest_address_past_its_bound() -> None:
    limiter = RateLimiter(parse_rate("1/min"), clock=Clock(), max_buckets=2)
    for who in ("a", "b", "c"):
        assert limiter.wait(who) == 0.0
    assert limiter.wait("a") == 0.0  # forgotten, so a fresh bucket
    assert limiter.wait("c") > 0.0


def test_keys_match_bearer_tokens_only() -> None:
    keys = Keys.of(["sk-1", "sk-2", "sk-1", ""])
    assert keys.keys == ("sk-1", "sk-2") and keys.required
    assert keys.match("Bearer sk-2") == "sk-2"
    assert keys.match("bearer   sk-1 ") == "sk-1"
    for header in (None, "", "sk-1", "Basic sk-1", "Bearer", "Bearer sk-3"):
        assert keys.match(header) is None
    assert not Keys.of([]).required


def test_read_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# team a\nsk-a\n\n  sk-b  \n", encoding="utf-8")
    assert read_keys(path) == ["sk-a", "sk-b"]
    path.write_text("# none\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no API keys"):
        read_keys(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_keys(tmp_path / "missing")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ConnectError("refused"), 503, "triton_unavailable"),
        (UnavailableError("busy"), 503, "triton_unavailable"),
        (DeadlineExceeded("slow"), 504, "timeout"),
        (ModelNotFoundError("gone"), 404, "model_not_found"),
        (InvalidInputError("bad"), 400, "invalid_input"),
        (ServerError("boom", "INTERNAL"), 502, "triton_error"),
    ],
)
def test_client_errors_map_to_statuses(error: Exception, status: int, code: str) -> None:
    mapped = from_client_error(error, "m")  # type: ignore[arg-type]
    assert (mapped.status, mapped.code) == (status, code)


def test_error_bodies() -> None:
    error = APIError(429, "slow down", code="rate_limit_exceeded", retry_after=0.2)
    assert openai_body(error) == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert tei_body(error) == {"error": "slow down", "error_type": "overloaded"}
    assert error.headers() == {"Retry-After": "1"}  # whole seconds, rounded up, at least 1
    assert APIError(429, "x", retry_after=2.1).headers() == {"Retry-After": "3"}
    assert APIError(400, "x").headers() == {}


def chat(**fields: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], **fields)


def test_sampling_maps_openai_fields_onto_vllm() -> None:
    params = gen.sampling(chat(temperature=0, top_p=0.5, stop="x", seed=3, top_k=4), 16)
    assert params == {"max_tokens": 16, "temperature": 0, "top_p": 0.5, "seed": 3,
                      "stop": ["x"], "top_k": 4}  # fmt: skip
    assert gen.sampling(chat(), 8) == {"max_tokens": 8}
    assert gen.requested_max_tokens(chat(max_tokens=5, max_completion_tokens=7)) == 7


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"min_tokens": 20}, "min_tokens"),
    ],
)
def test_what_is_not_served_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as caught:
        gen.sampling(chat(**fields), 16)
    assert (caught.value.status, caught.value.param) == (400, param)


def test_completion_fields_not_served() -> None:
    with pytest.raises(APIError, match="suffix"):
        gen.sampling(CompletionRequest(model="m", prompt="p", suffix="s"), 4)
    with pytest.raises(APIError, match="best_of"):
        gen.sampling(CompletionRequest(model="m", prompt="p", best_of=3), 4)


def test_chunks_and_responses_have_openai_shapes() -> None:
    env = gen.Envelope("chatcmpl-1", 7, "m")
    counts = gen.usage(3, 2)
    assert counts == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    whole = gen.chat_response(env, "hi", None, counts)
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    first = gen.chat_chunk(env, {"role": "assistant", "content": ""}, with_usage=True)
    assert first["usage"] is None and first["choices"][0]["finish_reason"] is None
    last = gen.chat_chunk(env, None, counts=counts, with_usage=True)
    assert last["choices"] == [] and last["usage"] == counts
    assert "usage" not in gen.chat_chunk(env, {"content": "x"})
    text = gen.completion_chunk(env, "x", "length")
    assert text["object"] == "text_completion" and text["choices"][0]["finish_reason"] == "length"


class FakeTokenizer:
    """A tokenizer with a chat template that writes the BOS token, and may add one itself."""

    bos_token = "<s>"
    bos_token_id = 1
    chat_template = "set"

    def __init__(self, adds_bos: bool) -> None:
        self.adds = adds_bos

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = [10 + i for i, _ in enumerate(text.split())]
        return {"input_ids": ([1] if self.adds and add_special_tokens else []) + ids}

    def apply_chat_template(self, turns: list[dict[str, str]], **_: Any) -> str:
        return "<s>" + " ".join(f"{t['role']}: {t['content']}" for t in turns) + " assistant:"


def test_the_chat_prompt_keeps_one_bos() -> None:
    messages = [ChatMessage(role="user", content=[{"type": "text", "text": "a b"}])]
    doubled = gen.Prompter("m", FakeTokenizer(adds_bos=True), 32).chat_prompt(messages)
    assert doubled == "user: a b assistant:"  # the tokenizer adds it: the template's goes
    kept = gen.Prompter("m", FakeTokenizer(adds_bos=False), 32).chat_prompt(messages)
    assert kept == "<s>user: a b assistant:"


def test_max_tokens_defaults_to_what_the_context_leaves() -> None:
    prompter = gen.Prompter("m", FakeTokenizer(adds_bos=True), 32)
    assert prompter.count("a b c") == 4
    assert prompter.max_tokens(None, 4) == 28
    assert prompter.max_tokens(10, 4) == 10
    with pytest.raises(APIError, match="exceed"):
        prompter.max_tokens(30, 4)
    with pytest.raises(APIError, match="at most 32"):
        prompter.max_tokens(None, 32)
    assert gen.Prompter("m", FakeTokenizer(True), None).max_tokens(None, 4) == 256


def test_image_parts_and_missing_templates_are_400s() -> None:
    prompter = gen.Prompter("m", FakeTokenizer(adds_bos=False), 32)
    with pytest.raises(APIError, match="only text parts"):
        prompter.chat_prompt([ChatMessage(role="user", content=[{"type": "image_url"}])])
    bare = FakeTokenizer(adds_bos=False)
    bare.chat_template = ""
    with pytest.raises(APIError, match="no chat template"):
        gen.Prompter("m", bare, 32).chat_prompt([ChatMessage(role="user", content="x")])


@pytest.mark.parametrize(
    ("inputs", "rows", "batch"),
    [
        ("a", [["a"]], False),
        (["a", "b"], [["a", "b"]], False),
        ([["a"], ["b", "c"]], [["a"], ["b", "c"]], True),
    ],
)
def test_tei_predict_input_forms(inputs: Any, rows: list[list[str]], batch: bool) -> None:
    assert _predict_rows(inputs) == (rows, batch)


@pytest.mark.parametrize("inputs", [["a"], ["a", "b", "c"], [["a", "b", "c"]], [[]], []])
def test_tei_predict_refuses_other_forms(inputs: Any) -> None:
    with pytest.raises(APIError) as caught:
        _predict_rows(inputs)
    assert caught.value.status == 422
