"""The typed clients against a real tritonserver: every public method, both protocols,
sync and asyncio, error mapping, deadlines and retries across a server restart."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builder.pipeline import BuildResult
from builder.serve import LocalServer, Ports, free_ports
from clients import (
    AsyncClassificationClient,
    AsyncEmbeddingClient,
    AsyncTritonClient,
    ClassificationClient,
    ClientError,
    EmbeddingClient,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    RetryPolicy,
    TransportError,
    TritonClient,
)
from tests.integration.conftest import LABELS

pytestmark = [pytest.mark.triton, pytest.mark.slow]

PROTOCOLS = ["http", "grpc"]
ALL_MODELS = [
    "minilm",
    "minilm_onnx",
    "minilm_tokenizer",
    "sentiment",
    "sentiment_onnx",
    "sentiment_postprocess",
    "sentiment_tokenizer",
]


def url_for(server: LocalServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.fixture(params=PROTOCOLS)
def client(request: pytest.FixtureRequest, server: LocalServer) -> Iterator[TritonClient]:
    with TritonClient(url_for(server, request.param), request.param) as made:
        yield made


def stats(server: LocalServer, model: str) -> tuple[int, int]:
    """(successful, failed) inference counts from the server's statistics endpoint."""
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/stats") as reply:
        data = json.load(reply)["model_stats"][0]["inference_stats"]
    return int(data["success"]["count"]), int(data["fail"]["count"])


def test_health_metadata_config_and_index(client: TritonClient) -> None:
    assert client.is_live() is True
    assert client.is_ready() is True
    assert client.is_model_ready("minilm") is True
    server = client.server_metadata()
    assert (server.name, server.version) == ("triton", "2.51.0")
    assert "model_repository" in server.extensions
    meta = client.model_metadata("minilm")
    assert meta.platform == "ensemble"
    assert [(t.name, t.datatype, t.shape) for t in meta.inputs] == [("TEXT", "BYTES", (-1, 1))]
    assert [(t.name, t.datatype, t.shape) for t in meta.outputs] == [
        ("EMBEDDING", "FP32", (-1, 384))
    ]
    config = client.model_config("sentiment")
    assert config.max_batch_size == 8
    assert json.loads(config.parameters["labels"]) == LABELS
    assert [(t.name, t.datatype, t.shape) for t in config.outputs] == [
        ("LABEL", "BYTES", (1,)),
        ("SCORES", "FP32", (3,)),
    ]
    index = client.repository_index()
    assert sorted(m.name for m in index) == ALL_MODELS
    assert {m.state for m in index} == {"READY"}


def test_async_health_metadata_config_and_index(server: LocalServer) -> None:
    async def run(protocol: str) -> None:
        async with AsyncTritonClient(url_for(server, protocol), protocol) as client:
            assert await client.is_live() is True
            assert await client.is_ready() is True
            assert await client.is_model_ready("sentiment") is True
            assert (await client.server_metadata()).version == "2.51.0"
            meta = await client.model_metadata("sentiment")
            assert [t.name for t in meta.outputs] == ["LABEL", "SCORES"]
            assert (await client.model_config("minilm")).max_batch_size == 32
            assert sorted(m.name for m in await client.repository_index()) == ALL_MODELS

    for protocol in PROTOCOLS:
        asyncio.run(run(protocol))


def test_infer_generic(client: TritonClient) -> None:
    texts = np.array([["hello world"], ["Grüße 🚀"], [""]], dtype=np.object_)
    out = client.infer("minilm", {"TEXT": texts})
    assert list(out) == ["EMBEDDING"]
    assert out["EMBEDDING"].shape == (3, 384)
    assert out["EMBEDDING"].dtype == np.float32
    again = client.infer("minilm", {"TEXT": [["hello world"]]}, outputs=["EMBEDDING"])
    np.testing.assert_allclose(again["EMBEDDING"][0], out["EMBEDDING"][0], atol=1e-6)


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"TEXT": np.array([b"no batch dim"], dtype=np.object_)}, "missing the batch dimension"),
    ({"TEXT": np.array([[b"a", b"b"]], dtype=np.object_)}, "expected shape [-1, 1], got [1, 2]"),
    ({"TEXT": np.array([[1.5]], dtype=np.float64)}, "expected BYTES (str or bytes), got float64"),
    ({"TXT": np.array([[b"x"]], dtype=np.object_)}, "unknown input(s) 'TXT'"),
    ({}, "missing input(s) 'TEXT'"),
    ({"TEXT": np.array([[b"x"]] * 33, dtype=np.object_)}, "exceeds the model's max_batch_size 32"),
]


@pytest.mark.parametrize(("inputs", "message"), BAD_INPUTS)
def test_invalid_inputs_raise_before_anything_is_sent(
    client: TritonClient, server: LocalServer, inputs: dict[str, Any], message: str
) -> None:
    client.model_info("minilm")  # metadata fetched up front, so only infer could reach it
    before = stats(server, "minilm")
    with pytest.raises(InvalidInputError) as caught:
        client.infer("minilm", inputs)
    assert message in str(caught.value)
    assert "'minilm'" in str(caught.value)
    assert stats(server, "minilm") == before


def test_wrong_dtype_for_a_numeric_input_is_named(
    client: TritonClient, server: LocalServer
) -> None:
    before = stats(server, "minilm_onnx")
    ids = np.ones((1, 4), dtype=np.int32)
    with pytest.raises(InvalidInputError) as caught:
        client.infer(
            "minilm_onnx", {"input_ids": ids, "attention_mask": ids, "token_type_ids": ids}
        )
    assert "input 'input_ids': expected INT64 (int64), got int32" in str(caught.value)
    assert stats(server, "minilm_onnx") == before


def test_unknown_model_raises_model_not_found(client: TritonClient) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        client.infer("no_such_model", {"TEXT": [["x"]]})
    assert "no_such_model" in str(caught.value)
    with pytest.raises(ModelNotFoundError):
        client.model_metadata("no_such_model")


def test_async_unknown_model_raises_model_not_found(server: LocalServer) -> None:
    async def run(protocol: str) -> None:
        async with AsyncTritonClient(url_for(server, protocol), protocol) as client:
            with pytest.raises(ModelNotFoundError):
                await client.infer("no_such_model", {"TEXT": [["x"]]})

    for protocol in PROTOCOLS:
        asyncio.run(run(protocol))


def test_unload_load_and_model_not_ready(server: LocalServer) -> None:
    for protocol in PROTOCOLS:
        with TritonClient(url_for(server, protocol), protocol) as client:
            texts = {"TEXT": [["good"]]}
            assert client.infer("sentiment", texts)["LABEL"].shape == (1, 1)
            client.unload_model("sentiment")
            try:
                assert client.is_model_ready("sentiment") is False
                with pytest.raises(ModelNotReadyError) as caught:
                    client.infer("sentiment", texts)
                assert caught.value.state == "UNAVAILABLE"
                assert caught.value.reason == "unloaded"
            finally:
                client.load_model("sentiment")
            assert client.is_model_ready("sentiment") is True
            assert client.infer("sentiment", texts)["SCORES"].shape == (1, 3)


def test_async_unload_and_load(server: LocalServer) -> None:
    async def run(protocol: str) -> None:
        async with AsyncTritonClient(url_for(server, protocol), protocol) as client:
            await client.unload_model("sentiment")
            try:
                assert await client.is_model_ready("sentiment") is False
                with pytest.raises(ModelNotReadyError):
                    await client.infer("sentiment", {"TEXT": [["ok"]]})
            finally:
                await client.load_model("sentiment")
            assert await client.is_model_ready("sentiment") is True

    for protocol in PROTOCOLS:
        asyncio.run(run(protocol))


def thousand_texts() -> list[str]:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    return [
        f"{i}: " + " ".join(words[(i + k) % len(words)] for k in range(1 + i % 9))
        for i in range(1000)
    ]


@pytest.fixture(scope="module")
def one_by_one(server: LocalServer) -> np.ndarray:
    texts = thousand_texts()
    with TritonClient(server.grpc_url, "grpc") as client:
        rows = [client.infer("minilm", {"TEXT": [[t]]})["EMBEDDING"][0] for t in texts]
    return np.stack(rows)


def test_embed_1000_texts_concurrently_in_order(
    server: LocalServer, one_by_one: np.ndarray
) -> None:
    texts = thousand_texts()
    for protocol in PROTOCOLS:
        with EmbeddingClient(
            url_for(server, protocol), protocol=protocol, concurrency=8
        ) as embedder:
            vectors = embedder.embed(texts)
        assert vectors.shape == (1000, 384)
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)


def test_async_embed_1000_texts_concurrently_in_order(
    server: LocalServer, one_by_one: np.ndarray
) -> None:
    async def run(protocol: str) -> np.ndarray:
        async with AsyncTritonClient(url_for(server, protocol), protocol) as client:
            embedder = AsyncEmbeddingClient(client, concurrency=8)
            return await embedder.embed(thousand_texts())

    for protocol in PROTOCOLS:
        np.testing.assert_allclose(asyncio.run(run(protocol)), one_by_one, atol=1e-5)


def test_embed_empty_list(server: LocalServer) -> None:
    embedder = EmbeddingClient(server.http_url)
    assert embedder.embed([]).shape == (0, 384)
    embedder.close()


def reference_probabilities(source: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForSequenceClassification.from_pretrained(str(source)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**batch).logits, dim=-1).numpy()


def test_classify_sync_and_async(server: LocalServer, tiny_classifier: Path) -> None:
    # 20 texts with max_batch_size 8: three requests, sent concurrently
    texts = [f"good movie {i}" if i % 3 else f"bad service , very slow {i}" for i in range(20)]
    probs = reference_probabilities(tiny_classifier, texts)
    for protocol in PROTOCOLS:
        with ClassificationClient(
            url_for(server, protocol), "sentiment", protocol=protocol
        ) as classifier:
            assert classifier.labels() == LABELS
            results = classifier.classify(texts)
        assert [r.label for r in results] == [LABELS[i] for i in probs.argmax(axis=1)]
        for result, row in zip(results, probs, strict=True):
            assert list(result.scores) == LABELS
            np.testing.assert_allclose(list(result.scores.values()), row, atol=1e-4)
            assert result.score == result.scores[result.label]

        async def run(protocol: str = protocol) -> list[Any]:
            async with AsyncClassificationClient(
                url_for(server, protocol), "sentiment", protocol=protocol
            ) as aclassifier:
                assert await aclassifier.labels() == LABELS
                return await aclassifier.classify(texts)

        assert [r.label for r in asyncio.run(run())] == [r.label for r in results]


def test_stopped_server_raises_transport_error_within_deadline(
    served_build: BuildResult,
) -> None:
    server = LocalServer(served_build.repository)
    server.start()
    urls = {p: url_for(server, p) for p in PROTOCOLS}
    server.close()
    policy = RetryPolicy(attempts=100, deadline=3.0)
    for protocol, url in urls.items():
        with TritonClient(url, protocol, timeout=1.0, retry=policy) as client:
            started = time.monotonic()
            with pytest.raises(TransportError):
                client.is_live()
            assert time.monotonic() - started < 3.0 + 1.5

        async def run(protocol: str = protocol, url: str = url) -> None:
            async with AsyncTritonClient(url, protocol, timeout=1.0, retry=policy) as client:
                with pytest.raises(TransportError):
                    await client.server_metadata()

        started = time.monotonic()
        asyncio.run(run())
        assert time.monotonic() - started < 3.0 + 1.5


def test_retries_reach_a_restarted_server(served_build: BuildResult) -> None:
    ports = Ports(*free_ports(3))
    first = LocalServer(served_build.repository, ports=ports)
    first.start()
    policy = RetryPolicy(attempts=1000, max_backoff=1.0, deadline=180.0)
    results: dict[str, list[Any]] = {p: [] for p in PROTOCOLS}
    errors: list[BaseException] = []
    stop = threading.Event()

    def calls(protocol: str) -> None:
        url = first.http_url if protocol == "http" else first.grpc_url
        with TritonClient(url, protocol, timeout=5.0, retry=policy) as client:
            while not stop.is_set():
                try:
                    out = client.infer("sentiment", {"TEXT": [["good movie"]]})
                    results[protocol].append(out["LABEL"][0, 0])
                except ClientError as exc:
                    errors.append(exc)
                    return
                time.sleep(0.05)

    workers = [threading.Thread(target=calls, args=(p,)) for p in PROTOCOLS]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    first.close()  # calls now fail and retry
    before = {p: len(r) for p, r in results.items()}
    second = LocalServer(served_build.repository, ports=ports)
    second.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(len(results[p]) <= before[p] + 3 for p in PROTOCOLS):
        time.sleep(0.2)
    stop.set()
    for worker in workers:
        worker.join(timeout=60)
    second.close()
    assert errors == []
    for protocol in PROTOCOLS:
        assert before[protocol] >= 1
        assert len(results[protocol]) > before[protocol] + 3


def test_load_with_a_config_loads_the_model_anew(server: LocalServer) -> None:
    for protocol in PROTOCOLS:
        with TritonClient(url_for(server, protocol), protocol) as client:
            config = dict(client.model_config("sentiment_postprocess").raw)
            parameters = dict(config.get("parameters") or {})
            parameters["reloaded_by"] = {"string_value": protocol}
            config["parameters"] = parameters
            client.load_model("sentiment_postprocess", config=config)
            after = client.model_config("sentiment_postprocess")
            assert after.parameters["reloaded_by"] == protocol
            assert client.infer("sentiment", {"TEXT": [["good"]]})["SCORES"].shape == (1, 3)
