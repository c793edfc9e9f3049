"""GenerationClient against a real tritonserver serving a small Python model that speaks the
vllm backend's contract and misbehaves on purpose: an error after two streamed chunks (after
HTTP 200), and a slow stream to check client deadlines. vLLM itself is tested in tests/llm."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.plan import plan_vllm
from builder.render import render_vllm
from builder.serve import LocalServer
from builder.spec import parse_spec
from clients import (
    AsyncGenerationClient,
    DeadlineExceeded,
    GenerationClient,
    ModelNotFoundError,
    ServerError,
)

pytestmark = [pytest.mark.triton, pytest.mark.slow]

MODEL_PY = textwrap.dedent(
    """
    import json
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils

    FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


    def text(value):
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("text_output", np.array([value.encode()], dtype=object))
            ]
        )


    class TritonPythonModel:
        def initialize(self, args):
            pass

        def execute(self, requests):
            for request in requests:
                sender = request.get_response_sender()
                prompt = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()[0]
                prompt = prompt.decode()
                if prompt == "fail later":
                    sender.send(text("one "))
                    sender.send(text("two "))
                    error = pb_utils.TritonError("the engine fell over after two chunks")
                    failed = pb_utils.InferenceResponse(output_tensors=[], error=error)
                    sender.send(failed, flags=FINAL)
                elif prompt == "slow":
                    time.sleep(3)
                    sender.send(text("late"), flags=FINAL)
                else:
                    sender.send(text("echo: " + prompt), flags=FINAL)
            return None
    """
)


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A repository whose `fake_llm` has the vllm config, served by a Python model."""
    repo = tmp_path_factory.mktemp("contract") / "repo"
    spec = parse_spec(
        "models:\n  - {name: fake_llm, task: text-generation, backend: vllm, "
        "engine: {model: unused}}\n",
        Path("models.yaml"),
    )
    config = render_vllm(plan_vllm(spec.models[0]), "models.yaml")["fake_llm"]
    # the same contract, served by a plain Python model instead of vLLM
    config = config.replace('backend: "vllm"', 'backend: "python"')
    (repo / "fake_llm" / "1").mkdir(parents=True)
    (repo / "fake_llm" / "config.pbtxt").write_text(config)
    (repo / "fake_llm" / "1" / "model.py").write_text(MODEL_PY)
    with LocalServer(repo) as server:
        yield server


def url(server: LocalServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_error_after_two_chunks_raises_after_yielding_them(
    contract_server: LocalServer, protocol: str
) -> None:
    received = []
    with (
        GenerationClient(url(contract_server, protocol), "fake_llm", protocol) as client,
        pytest.raises(ServerError) as caught,
    ):
        for piece in client.stream("fail later"):
            received.append(piece)
    assert received == ["one ", "two "]
    assert "the engine fell over after two chunks" in str(caught.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_async_error_after_two_chunks(contract_server: LocalServer, protocol: str) -> None:
    async def run() -> list[str]:
        client = AsyncGenerationClient(url(contract_server, protocol), "fake_llm", protocol)
        received: list[str] = []
        stream = await client.stream("fail later")
        with pytest.raises(ServerError, match="fell over"):
            async for piece in stream:
                received.append(piece)
        return received

    assert asyncio.run(run()) == ["one ", "two "]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_generate_and_unknown_model(contract_server: LocalServer, protocol: str) -> None:
    with GenerationClient(url(contract_server, protocol), "fake_llm", protocol) as client:
        assert client.generate("hi").text == "echo: hi"
    with (
        GenerationClient(url(contract_server, protocol), "no_such_llm", protocol) as missing,
        pytest.raises(ModelNotFoundError),
    ):
        missing.generate("hi")

    async def run() -> None:
        amissing = AsyncGenerationClient(url(contract_server, protocol), "no_such_llm", protocol)
        with pytest.raises(ModelNotFoundError):
            await amissing.generate("hi")

    asyncio.run(run())


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_slow_response_hits_the_per_call_timeout(
    contract_server: LocalServer, protocol: str
) -> None:
    with (
        GenerationClient(url(contract_server, protocol), "fake_llm", protocol, timeout=1.0) as c,
        pytest.raises(DeadlineExceeded),
    ):
        list(c.stream("slow"))
