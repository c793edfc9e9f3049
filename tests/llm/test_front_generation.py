"""The API front's chat and completions over real vLLM (the tiny Llama, with a chat template
made in conftest), spoken to by the real `openai` SDK and LangChain's ChatOpenAI: greedy text
equal to transformers', streamed deltas equal to the whole text, usage, OpenAI's errors, and
a client that goes away cancelling its generation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from builder.serve import LocalServer
from tests.front_process import Front, running_front
from tests.llm.test_vllm_serving import GRPC_CANCEL_RACE, metric

pytestmark = [pytest.mark.llm, pytest.mark.triton, pytest.mark.slow]

KEY = "sk-llm"
MAX_TOKENS = 16
CHATS = [
    [{"role": "user", "content": "hello world"}],
    [
        {"role": "system", "content": "the quick brown fox"},
        {"role": "user", "content": "one two three"},
    ],
]
PROMPT = "triton serves models"


@pytest.fixture(scope="module")
def front(
    llm_server: LocalServer, llm_spec: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Front]:
    log = tmp_path_factory.mktemp("front") / "front.log"
    with running_front(llm_server.grpc_url, llm_spec, log, ["--api-key", KEY]) as running:
        yield running


def greedy(tiny_llama: Path, prompt: str) -> tuple[str, int, int]:
    """transformers' greedy completion of ``prompt``: (text, prompt tokens, new tokens). The
    text is cut from the whole decode, as vLLM detokenises with the prompt as context."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, do_sample=False, max_new_tokens=MAX_TOKENS)
    whole = tokenizer.decode(out[0].tolist(), skip_special_tokens=True)
    head = tokenizer.decode(ids[0].tolist(), skip_special_tokens=True)
    assert whole.startswith(head)
    return whole[len(head) :], ids.shape[1], out.shape[1] - ids.shape[1]


def chat_prompt(tiny_llama: Path, messages: list[dict[str, str]]) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


@pytest.fixture(scope="module")
def openai_client(front: Front) -> Iterator[Any]:
    from openai import OpenAI

    with OpenAI(base_url=front.v1, api_key=KEY, max_retries=0, timeout=300) as client:
        yield client


@pytest.mark.parametrize("chat", range(len(CHATS)))
def test_chat_equals_transformers_greedy_streamed_or_not(
    front: Front, tiny_llama: Path, chat: int, openai_client: Any
) -> None:
    messages = CHATS[chat]
    text, prompt_tokens, new_tokens = greedy(tiny_llama, chat_prompt(tiny_llama, messages))
    client = openai_client
    whole = client.chat.completions.create(
        model="llm", messages=messages, temperature=0, max_tokens=MAX_TOKENS
    )
    choice = whole.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == text
    assert choice.finish_reason == ("length" if new_tokens == MAX_TOKENS else "stop")
    assert whole.usage.prompt_tokens == prompt_tokens
    assert whole.usage.completion_tokens == new_tokens
    assert whole.usage.total_tokens == prompt_tokens + new_tokens
    assert whole.object == "chat.completion" and whole.model == "llm"

    chunks = list(
        client.chat.completions.create(
            model="llm",
            messages=messages,
            temperature=0,
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == choice.finish_reason and set(finals[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == new_tokens
    assert chunks[-1].usage.prompt_tokens == prompt_tokens
    assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"


def test_completions_equal_transformers_greedy(
    front: Front, tiny_llama: Path, openai_client: Any
) -> None:
    text, prompt_tokens, new_tokens = greedy(tiny_llama, PROMPT)
    client = openai_client
    whole = client.completions.create(
        model="llm", prompt=PROMPT, temperature=0, max_tokens=MAX_TOKENS
    )
    assert whole.choices[0].text == text
    assert whole.usage.prompt_tokens == prompt_tokens
    assert whole.usage.completion_tokens == new_tokens
    streamed = client.completions.create(
        model="llm", prompt=PROMPT, temperature=0, max_tokens=MAX_TOKENS, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == text
    echoed = client.completions.create(
        model="llm", prompt=PROMPT, temperature=0, max_tokens=MAX_TOKENS, echo=True
    )
    assert echoed.choices[0].text == PROMPT + text


def test_sampling_parameters_reach_vllm(front: Front, openai_client: Any) -> None:
    client = openai_client
    one = client.completions.create(
        model="llm", prompt=PROMPT, max_tokens=8, temperature=1.0, seed=7,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    again = client.completions.create(
        model="llm", prompt=PROMPT, max_tokens=8, temperature=1.0, seed=7,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    assert one.choices[0].text == again.choices[0].text  # the seed is honoured
    assert one.usage.completion_tokens == 8 and one.choices[0].finish_reason == "length"
    whole = (
        client.completions.create(model="llm", prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
        .choices[0]
        .text
    )
    assert len(whole) > 8, whole
    stop = whole[5:8]  # cut where this first appears
    stopped = client.completions.create(
        model="llm", prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0, stop=[stop]
    )
    assert stopped.choices[0].text == whole[: whole.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_langchain_chat_openai_works_unchanged(front: Front, tiny_llama: Path) -> None:
    from langchain_openai import ChatOpenAI

    messages = CHATS[0]
    text, _, _ = greedy(tiny_llama, chat_prompt(tiny_llama, messages))
    with httpx.Client(timeout=300) as http:  # ours, so that it is closed
        chat = ChatOpenAI(
            model="llm", base_url=front.v1, api_key=KEY, temperature=0, max_tokens=MAX_TOKENS,
            max_retries=0, http_client=http,
        )  # fmt: skip
        assert chat.invoke([("user", "hello world")]).content == text
        assert "".join(str(c.content) for c in chat.stream([("user", "hello world")])) == text


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"n": 2}, 400, "n"),
        ({"logprobs": True}, 400, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools"),
        ({"model": "nope"}, 404, "model"),
        ({"max_tokens": 5000}, 400, "max_tokens"),  # max_model_len is 4096
        ({"temperature": 3}, 400, "temperature"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, None),
    ],
)
def test_chat_errors_are_openai_errors(
    front: Front, body: dict[str, Any], status: int, param: str | None
) -> None:
    request = {"model": "llm", "messages": CHATS[0], "max_tokens": 4, **body}
    reply = httpx.post(
        front.v1 + "/chat/completions", json=request, headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    )  # fmt: skip
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param


def test_vllm_parameters_are_checked_before_the_stream_starts(
    front: Front, openai_client: Any
) -> None:
    from openai import BadRequestError

    client = openai_client
    with pytest.raises(BadRequestError, match="top_k"):
        client.chat.completions.create(
            model="llm", messages=CHATS[0], max_tokens=4, stream=True, extra_body={"top_k": -7}
        )
    with pytest.raises(BadRequestError, match="min_tokens"):
        client.completions.create(
            model="llm", prompt=PROMPT, max_tokens=4, extra_body={"min_tokens": 9}
        )


def test_no_key_is_401_and_n2_through_the_sdk_is_400(front: Front, openai_client: Any) -> None:
    from openai import AuthenticationError, BadRequestError, OpenAI

    with (
        OpenAI(base_url=front.v1, api_key="sk-other", max_retries=0) as other,
        pytest.raises(AuthenticationError),
    ):
        other.chat.completions.create(model="llm", messages=CHATS[0], max_tokens=4)
    with pytest.raises(BadRequestError, match="n=2"):
        openai_client.chat.completions.create(model="llm", messages=CHATS[0], max_tokens=4, n=2)


def test_health_generates_one_token(front: Front) -> None:
    health = httpx.get(front.url + "/health", timeout=120).json()
    assert health == {
        "status": "ok",
        "models": {"llm": {"ok": True, "task": "text-generation",
                           "detail": health["models"]["llm"]["detail"]}},
    }  # fmt: skip


def cancelled(front: Front) -> float:
    for line in httpx.get(front.url + "/metrics").text.splitlines():
        if line.startswith('triton_pack_api_generation_cancelled_total{model="llm"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def read_a_few_events_and_leave(front: Front) -> list[str]:
    """Start a long streamed completion (4,000 tokens: seconds here), read a few events,
    close the connection."""
    body = {
        "model": "llm", "prompt": PROMPT, "max_tokens": 4000, "stream": True,
        "ignore_eos": True, "temperature": 0,
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", front.v1 + "/completions", json=body, headers=headers, timeout=120
    ) as reply:
        lines = reply.iter_lines()
        return [line for _, line in zip(range(6), lines, strict=False) if line.startswith("data")]


def test_a_client_that_goes_away_cancels_its_stream_in_the_front(front: Front) -> None:
    before = cancelled(front)
    assert len(read_a_few_events_and_leave(front)) >= 2
    # the connection is closed: the front closes its gRPC stream to Triton (a cancellation)
    deadline = time.monotonic() + 120
    while cancelled(front) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cancelled(front) == before + 1


@GRPC_CANCEL_RACE
def test_the_cancellation_reaches_vllm(front: Front, llm_server: LocalServer) -> None:
    before = metric(llm_server, "vllm:request_aborted_total")
    read_a_few_events_and_leave(front)
    deadline = time.monotonic() + 120
    while metric(llm_server, "vllm:request_aborted_total") == before:
        assert time.monotonic() < deadline, "vLLM never aborted the request"
        time.sleep(0.2)


def test_many_streams_finished_or_abandoned_leave_no_descriptors(
    front: Front, openai_client: Any
) -> None:
    """Every stream opens its own gRPC stream to Triton: finished, abandoned or refused, each
    is closed (a long-lived front must not collect them)."""
    import os

    def descriptors() -> int:
        return len(os.listdir(f"/proc/{front.process.pid}/fd"))

    client = openai_client
    client.chat.completions.create(model="llm", messages=CHATS[0], max_tokens=4)  # warm
    before = descriptors()
    for i in range(24):
        if i % 3 == 0:
            read_a_few_events_and_leave(front)
        elif i % 3 == 1:
            chunks = client.chat.completions.create(
                model="llm", messages=CHATS[1], max_tokens=8, stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            with pytest.raises(Exception, match="min_tokens"):
                client.completions.create(
                    model="llm", prompt=PROMPT, max_tokens=4, extra_body={"min_tokens": 9}
                )
    deadline = time.monotonic() + 120
    while descriptors() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert descriptors() <= before + 2
