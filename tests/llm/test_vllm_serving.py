"""A tiny random Llama served by real vLLM inside a real tritonserver, through the typed
clients: greedy text equals transformers', streams join to the whole text, concurrency,
bad parameters, cancellation, metrics, and the repository entry itself."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from builder.engine_args import DOCUMENTED, known_engine_args
from builder.errors import SpecError
from builder.pipeline import BuildResult
from builder.serve import LocalServer
from builder.spec import parse_spec
from clients import AsyncGenerationClient, GenerationClient, ServerError, TritonClient

pytestmark = [pytest.mark.llm, pytest.mark.triton, pytest.mark.slow]

PROMPTS = ["the server streams", "hello world", "one two three", "triton serves models"]
MAX_TOKENS = 16
PROTOCOLS = ["grpc", "http"]


def url(server: LocalServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.fixture(scope="module")
def reference(tiny_llama: Path) -> list[tuple[str, int]]:
    """transformers' greedy output: (prompt + completion decoded whole, new token count).

    Decoded whole because a SentencePiece-style decoder drops the leading space of a
    sequence: the completion alone would decode without the space it has after the prompt.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32).eval()
    out = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            generated = model.generate(ids, do_sample=False, max_new_tokens=MAX_TOKENS)
        new = generated[0, ids.shape[1] :].tolist()
        whole = tokenizer.decode(generated[0].tolist(), skip_special_tokens=True)
        out.append((whole, len(new)))
    return out


def server_log_tail(server: LocalServer, lines: int = 30) -> str:
    text = server.log_path.read_text(encoding="utf-8", errors="replace")
    return "server log tail:\n" + "\n".join(text.splitlines()[-lines:])


def metric(server: LocalServer, name: str) -> float:
    with urllib.request.urlopen(server.metrics_url) as reply:
        text = reply.read().decode()
    found = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.e+-]+)$", text, re.M)
    assert found, f"{name} not on {server.metrics_url}"
    return float(found.group(1))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_greedy_text_is_token_identical_to_transformers(
    llm_server: LocalServer, reference: list[tuple[str, int]], protocol: str
) -> None:
    client = GenerationClient(url(llm_server, protocol), "llm", protocol)
    for prompt, (text, count) in zip(PROMPTS, reference, strict=True):
        result = client.generate(
            prompt, temperature=0.0, max_tokens=MAX_TOKENS, exclude_input_in_output=False
        )
        assert result.text == text
        assert result.num_output_tokens == count
        assert result.finish_reason in ("length", "stop")
        assert result.num_input_tokens is not None and result.num_input_tokens > 0
    assert any(count == MAX_TOKENS for _, count in reference), "every prompt hit EOS early"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_streamed_deltas_join_to_the_non_streamed_text(
    llm_server: LocalServer, protocol: str
) -> None:
    client = GenerationClient(url(llm_server, protocol), "llm", protocol)
    for prompt in PROMPTS:
        whole = client.generate(prompt, temperature=0.0, max_tokens=MAX_TOKENS)
        with client.stream(prompt, temperature=0.0, max_tokens=MAX_TOKENS) as stream:
            pieces = list(stream)
        assert "".join(pieces) == whole.text
        assert stream.generation.num_output_tokens == whole.num_output_tokens
        assert stream.generation.finish_reason == whole.finish_reason


def test_non_streamed_output_includes_the_prompt_unless_excluded(
    llm_server: LocalServer,
) -> None:
    client = GenerationClient(llm_server.grpc_url, "llm")
    bare = client.generate(PROMPTS[0], temperature=0.0, max_tokens=4)
    full = client.generate(PROMPTS[0], temperature=0.0, max_tokens=4, exclude_input_in_output=False)
    assert full.text == PROMPTS[0] + bare.text


def test_async_generate_and_stream(llm_server: LocalServer) -> None:
    async def run(protocol: str) -> tuple[str, str]:
        client = AsyncGenerationClient(url(llm_server, protocol), "llm", protocol)
        whole = await client.generate(PROMPTS[1], temperature=0.0, max_tokens=MAX_TOKENS)
        stream = await client.stream(PROMPTS[1], temperature=0.0, max_tokens=MAX_TOKENS)
        async with stream:
            pieces = [piece async for piece in stream]
        return whole.text, "".join(pieces)

    for protocol in PROTOCOLS:
        whole, joined = asyncio.run(run(protocol))
        assert joined == whole


def test_eight_concurrent_streams_and_one_bad_request(llm_server: LocalServer) -> None:
    client = GenerationClient(llm_server.grpc_url, "llm")
    expected = {
        i: client.generate(PROMPTS[i % 4], temperature=0.0, max_tokens=MAX_TOKENS).text
        for i in range(8)
    }
    results: dict[int, str] = {}
    errors: dict[str, BaseException] = {}

    def good(index: int) -> None:
        stream = client.stream(PROMPTS[index % 4], temperature=0.0, max_tokens=MAX_TOKENS)
        results[index] = "".join(stream)

    def bad() -> None:
        try:
            client.generate(PROMPTS[0], temperature=0.0, max_tokens=4, top_p=7.5)
        except ServerError as exc:
            errors["bad"] = exc

    threads = [threading.Thread(target=good, args=(i,)) for i in range(8)]
    threads.append(threading.Thread(target=bad))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == expected
    assert "sampling parameter 'top_p'" in str(errors["bad"])


GRPC_CANCEL_RACE = pytest.mark.xfail(
    strict=False,
    reason="tritonserver 2.51 (the nvidia-pytriton build) drops a gRPC stream cancellation "
    "that arrives while a response is being written, so the request runs on (about half "
    "the suite runs here); later Triton releases fixed gRPC cancellation races (server PR "
    "8078). The client does cancel the RPC.",
)
HTTP_CANCEL_RACE = pytest.mark.xfail(
    strict=False,
    reason="tritonserver 2.51's HTTP frontend stops reading a connection while its request "
    "runs and notices a closed client only when a write fails (server issue 7077, fix "
    "proposed in PR 8982): with both cores busy the generation can finish before the "
    "frontend's writes fail, so no abort comes (seen in 2 of 4 runs under a CPU hog; on an "
    "idle machine the abort came every time). The client does close its socket at once.",
)


@pytest.mark.parametrize(
    "protocol",
    [pytest.param("grpc", marks=GRPC_CANCEL_RACE), pytest.param("http", marks=HTTP_CANCEL_RACE)],
)
def test_closing_a_stream_after_three_chunks_aborts_the_request(
    llm_server: LocalServer, llm_build: BuildResult, protocol: str
) -> None:
    before = metric(llm_server, "vllm:request_aborted_total")
    tokens_before = metric(llm_server, "vllm:generation_tokens_total")
    client = GenerationClient(url(llm_server, protocol), "llm", protocol)
    # ~4,000 tokens take seconds here, so the request is still running when it is cancelled
    stream = client.stream(PROMPTS[0], temperature=0.0, max_tokens=4000, ignore_eos=True)
    chunks = [next(stream) for _ in range(3)]
    stream.close()
    assert len(chunks) == 3
    # the stand-in aborts the vLLM request when it sees the cancellation; on a busy machine
    # the server may take a while to notice the closed connection: wait on the condition
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if metric(llm_server, "vllm:request_aborted_total") > before:
            break
        threading.Event().wait(0.2)
    after = metric(llm_server, "vllm:request_aborted_total")
    generated = metric(llm_server, "vllm:generation_tokens_total") - tokens_before
    assert after == before + 1, (
        f"no abort; {generated:.0f} tokens generated since the request began (4000 means it ran "
        "to its end): " + server_log_tail(llm_server)
    )
    log = llm_server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "aborted request" in log


def test_metrics_count_tokens(llm_server: LocalServer) -> None:
    before = metric(llm_server, "vllm:generation_tokens_total")
    result = GenerationClient(llm_server.grpc_url, "llm").generate(
        PROMPTS[2], temperature=0.0, max_tokens=5, ignore_eos=True
    )
    assert result.num_output_tokens == 5
    assert metric(llm_server, "vllm:generation_tokens_total") == before + 5


def test_served_config_is_the_rendered_one(llm_server: LocalServer, llm_build: BuildResult) -> None:
    repo = llm_build.repository
    model_json = json.loads((repo / "llm" / "1" / "model.json").read_text())
    assert model_json["dtype"] == "float32"
    config = TritonClient(llm_server.http_url).model_config("llm")
    assert config.backend == "vllm"
    assert config.max_batch_size == 0
    assert config.decoupled is True
    assert [t.name for t in config.inputs][:2] == ["text_input", "stream"]
    assert config.parameters["REPORT_CUSTOM_METRICS"] == "true"
    assert config.raw["instance_group"][0]["kind"] == "KIND_MODEL"


def test_engine_arguments_are_checked_against_vllm_itself() -> None:
    names, origin = known_engine_args()
    assert origin.startswith("vLLM ") and "AsyncEngineArgs" in origin
    assert names >= DOCUMENTED, sorted(DOCUMENTED - names)
    with pytest.raises(SpecError) as caught:
        parse_spec(
            "models:\n  - {name: llm, task: text-generation, backend: vllm, "
            "engine: {model: m, disable_log_requests: true}}\n",
            Path("models.yaml"),
        )
    assert "unknown vLLM engine argument 'disable_log_requests'" in str(caught.value)
    assert "AsyncEngineArgs" in str(caught.value)


def test_unload_shuts_the_engine_down_cleanly(llm_server: LocalServer) -> None:
    client = TritonClient(llm_server.http_url, timeout=120.0)
    client.unload_model("llm")
    try:
        # unloading is asynchronous: wait for the model's finalize to log
        log = ""
        for _ in range(600):
            log = llm_server.log_path.read_text(encoding="utf-8", errors="replace")
            if "vllm stand-in: shutting down the engine" in log:
                break
            threading.Event().wait(0.1)
        assert "vllm stand-in: shutting down the engine" in log
        assert client.is_model_ready("llm") is False
    finally:
        client.load_model("llm")
    generated: Any = GenerationClient(llm_server.grpc_url, "llm").generate(
        PROMPTS[0], temperature=0.0, max_tokens=2, ignore_eos=True
    )
    assert generated.num_output_tokens == 2
