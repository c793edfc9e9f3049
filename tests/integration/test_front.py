"""The API front (`triton-pack api`, started as users start it) over the session's real
tritonserver (minilm + a tiny classifier), spoken to by the real `openai` SDK, LangChain and
plain HTTP: values equal to sentence-transformers, OpenAI's and TEI's shapes, keys, rate
limits, body limits, health and metrics."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from builder.pipeline import BuildResult
from builder.serve import LocalServer
from builder.verify import SAMPLE_TEXTS
from clients import ClassificationClient
from tests.front_process import Front, running_front
from tests.integration.conftest import LABELS, minilm_source

pytestmark = [pytest.mark.triton, pytest.mark.slow]

KEY = "sk-front-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
SCHEMAS = json.loads((Path(__file__).parent.parent / "golden" / "tei_schemas.json").read_text())


def conforms(value: Any, schema: dict[str, Any]) -> list[str]:
    """Where ``value`` breaks ``schema`` (the subset of OpenAPI TEI's schemas use), field by
    field: types, required fields, and no field the schema does not name."""
    if "$ref" in schema:
        return conforms(value, SCHEMAS[schema["$ref"].removeprefix("#/")])
    if "oneOf" in schema:
        fits = [conforms(value, option) for option in schema["oneOf"]]
        return [] if any(not f for f in fits) else [f"no oneOf fits: {fits}"]
    kind = schema.get("type")
    if value is None and schema.get("nullable"):
        return []
    checks = {
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    if kind in checks and not checks[kind](value):
        return [f"{value!r:.60} is not {kind}"]
    problems = []
    if kind == "array":
        for item in value:
            problems += conforms(item, schema["items"])
    if kind == "object":
        properties = schema.get("properties", {})
        problems += [f"missing {k}" for k in schema.get("required", []) if k not in value]
        problems += [f"unknown field {k}" for k in value if k not in properties]
        for k, v in value.items():
            if k in properties:
                problems += conforms(v, properties[k])
    return problems


def test_the_schema_check_can_fail() -> None:
    assert conforms([{"index": 0, "score": 0.5}], SCHEMAS["RerankResponse"]) == []
    assert conforms([{"index": 0}], SCHEMAS["RerankResponse"]) == ["missing score"]
    assert conforms([{"index": 0, "score": 1, "doc": "x"}], SCHEMAS["RerankResponse"]) == [
        "unknown field doc"
    ]
    assert conforms([[{"label": "a", "score": "1"}]], SCHEMAS["PredictResponse"]) != []


@pytest.fixture(scope="module")
def front(
    server: LocalServer, served_spec: Path, served_build: BuildResult,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Front]:  # fmt: skip
    log = tmp_path_factory.mktemp("front") / "front.log"
    with running_front(server.grpc_url, served_spec, log, ["--api-key", KEY]) as running:
        yield running


@pytest.fixture(scope="module")
def reference() -> Any:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_source()), device="cpu")
    model.max_seq_length = 256
    return model


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_openai_sdk_embeddings_equal_sentence_transformers(
    front: Front, reference: Any, request: pytest.FixtureRequest
) -> None:
    from openai import OpenAI

    texts = list(SAMPLE_TEXTS)
    expected = reference.encode(texts)
    client = OpenAI(base_url=front.v1, api_key=KEY, max_retries=0)
    request.addfinalizer(client.close)
    answer = client.embeddings.create(model="minilm", input=texts)  # the SDK asks for base64
    vectors = np.array([item.embedding for item in answer.data], dtype=np.float32)
    assert [item.index for item in answer.data] == list(range(len(texts)))
    assert cosines(vectors, expected).min() >= 0.9999
    assert answer.model == "minilm"
    tokenizer = reference.tokenizer
    counted = sum(min(len(tokenizer(t)["input_ids"]), 256) for t in texts)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == counted
    as_floats = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
    np.testing.assert_array_equal(
        np.array([item.embedding for item in as_floats.data], dtype=np.float32), vectors
    )
    one = client.embeddings.create(model="minilm", input=texts[0])
    np.testing.assert_allclose(one.data[0].embedding, vectors[0], atol=1e-6)


def test_base64_is_little_endian_float32_of_the_same_vectors(front: Front) -> None:
    body = {"model": "minilm", "input": ["hello", "world"]}
    plain = httpx.post(front.v1 + "/embeddings", json=body, headers=AUTH).json()
    packed = httpx.post(
        front.v1 + "/embeddings", json={**body, "encoding_format": "base64"}, headers=AUTH
    ).json()
    for a, b in zip(plain["data"], packed["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(a["embedding"], dtype=np.float32))


def test_a_list_larger_than_the_batch_is_split_and_kept_in_order(
    front: Front, reference: Any
) -> None:
    texts = [f"text number {i} about {'cats' if i % 2 else 'engines'}" for i in range(75)]
    answer = httpx.post(
        front.v1 + "/embeddings", json={"model": "minilm", "input": texts}, headers=AUTH,
        timeout=120,
    ).json()  # fmt: skip
    vectors = np.array([item["embedding"] for item in answer["data"]])
    assert len(vectors) == 75  # max_batch_size 32: three requests to Triton
    assert cosines(vectors, reference.encode(texts)).min() >= 0.9999


def test_langchain_openai_embeddings_work_unchanged(front: Front, reference: Any) -> None:
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: LangChain otherwise sends tiktoken ids (and fetches
    # tiktoken's table from the internet); the front says so in a 400 if it gets ids
    with httpx.Client(timeout=60) as http:  # ours, so that it is closed
        embeddings = OpenAIEmbeddings(
            model="minilm", base_url=front.v1, api_key=KEY, check_embedding_ctx_length=False,
            max_retries=0, http_client=http,
        )  # fmt: skip
        texts = ["LangChain talks to the front", "and gets the same vectors"]
        vectors = np.array(embeddings.embed_documents(texts))
        query = np.array([embeddings.embed_query(texts[0])])
    assert cosines(vectors, reference.encode(texts)).min() >= 0.9999
    assert cosines(query, vectors[:1]).min() >= 0.999999


def test_models_lists_every_servable_model_with_its_task(front: Front) -> None:
    listed = httpx.get(front.v1 + "/models", headers=AUTH).json()
    assert listed["object"] == "list"
    assert {(m["id"], m["task"]) for m in listed["data"]} == {
        ("minilm", "text-embedding"),
        ("sentiment", "text-classification"),
    }


def openai_error(reply: httpx.Response) -> dict[str, Any]:
    body = reply.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def test_keys(front: Front) -> None:
    from openai import AuthenticationError, OpenAI

    body = {"model": "minilm", "input": "x"}
    missing = httpx.post(front.v1 + "/embeddings", json=body)
    assert missing.status_code == 401
    assert openai_error(missing)["type"] == "authentication_error"
    wrong = httpx.post(front.v1 + "/embeddings", json=body, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401
    with (
        OpenAI(base_url=front.v1, api_key="sk-wrong", max_retries=0) as wrong_key,
        pytest.raises(AuthenticationError),
    ):
        wrong_key.models.list()
    tei = httpx.post(front.url + "/embed", json={"inputs": "x"})
    assert tei.status_code == 401 and set(tei.json()) == {"error", "error_type"}
    # health and metrics stay open for probes and Prometheus
    assert httpx.get(front.url + "/health", timeout=60).status_code == 200
    assert httpx.get(front.url + "/metrics").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "nope", "input": "x"}, 404, "model"),
        ({"model": "sentiment", "input": "x"}, 400, "model"),
        ({"model": "minilm", "input": []}, 400, "input"),
        ({"model": "minilm", "input": [[101, 2023]]}, 400, "input"),
        ({"model": "minilm", "input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"model": "minilm", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "minilm"}, 400, "input"),
    ],
)
def test_openai_errors_name_the_parameter(
    front: Front, body: dict[str, Any], status: int, param: str
) -> None:
    reply = httpx.post(front.v1 + "/embeddings", json=body, headers=AUTH)
    assert reply.status_code == status, reply.text
    error = openai_error(reply)
    assert error["param"] == param
    if status == 404:
        assert error["code"] == "model_not_found"


def test_malformed_json_and_oversized_bodies_are_4xx(front: Front) -> None:
    broken = httpx.post(front.v1 + "/embeddings", content=b'{"model": "minilm", "inp',
                        headers=AUTH)  # fmt: skip
    assert broken.status_code == 400
    openai_error(broken)
    huge = httpx.post(
        front.v1 + "/embeddings",
        json={"model": "minilm", "input": ["x" * 1024] * 5000},  # ~5 MB > the 4 MiB default
        headers=AUTH,
    )
    assert huge.status_code == 413
    assert openai_error(huge)["code"] == "body_too_large"


def test_tei_embed_and_predict_answer_in_tei_shapes(
    front: Front, reference: Any, server: LocalServer
) -> None:
    texts = ["the film was great", "the service was slow"]
    embedded = httpx.post(front.url + "/embed", json={"inputs": texts}, headers=AUTH).json()
    assert conforms(embedded, SCHEMAS["EmbedResponse"]) == []
    assert cosines(np.array(embedded), reference.encode(texts)).min() >= 0.9999
    single = httpx.post(front.url + "/predict", json={"inputs": texts[0]}, headers=AUTH).json()
    assert conforms(single, SCHEMAS["PredictResponse"]) == []
    batch = httpx.post(
        front.url + "/predict", json={"inputs": [[t] for t in texts]}, headers=AUTH
    ).json()
    assert conforms(batch, SCHEMAS["PredictResponse"]) == []
    with ClassificationClient(server.grpc_url, "sentiment", protocol="grpc") as direct:
        expected = direct.classify(texts)
    for got, want in zip(batch, expected, strict=True):
        assert [p["score"] for p in got] == sorted((p["score"] for p in got), reverse=True)
        assert {p["label"] for p in got} == set(LABELS)
        assert got[0]["label"] == want.label
        assert {p["label"]: p["score"] for p in got} == pytest.approx(want.scores, abs=1e-7)
    assert single == batch[0]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/predict", {"inputs": ["a", "b", "c"]}, 422),  # a list of strings is a pair
        ("/predict", {"inputs": ["premise", "hypothesis"]}, 422),  # sentiment is not a pair model
        ("/predict", {"inputs": "x", "raw_scores": True}, 422),
        ("/embed", {"inputs": []}, 422),
        ("/embed", {"inputs": "x", "normalize": False}, 422),  # minilm's graph normalises
        ("/embed", {"inputs": "x", "truncation_direction": "left"}, 422),
        ("/rerank", {"query": "q", "texts": ["a"]}, 424),  # the spec has no reranker
        ("/embed", {"inputs": 3}, 422),
    ],
)
def test_tei_errors_are_tei_bodies(
    front: Front, path: str, body: dict[str, Any], status: int
) -> None:
    reply = httpx.post(front.url + path, json=body, headers=AUTH)
    assert reply.status_code == status, reply.text
    assert conforms(reply.json(), SCHEMAS["ErrorResponse"]) == []
    assert reply.json()["error_type"] in SCHEMAS["ErrorTypeExamples"]


def test_health_is_a_real_inference_and_metrics_count_requests(front: Front) -> None:
    health = httpx.get(front.url + "/health", timeout=60).json()
    assert health["status"] == "ok"
    assert set(health["models"]) == {"minilm", "sentiment"}
    assert all(
        entry["ok"] and "answered in" in entry["detail"] for entry in health["models"].values()
    )

    def count(text: str, route: str, model: str, status: str) -> float:
        wanted = (
            f'triton_pack_api_requests_total{{model="{model}",route="{route}",status="{status}"}}'
        )
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = httpx.get(front.url + "/metrics").text
    for _ in range(3):
        httpx.post(front.v1 + "/embeddings", json={"model": "minilm", "input": "x"}, headers=AUTH)
    httpx.post(front.v1 + "/embeddings", json={"model": "nope", "input": "x"}, headers=AUTH)
    after = httpx.get(front.url + "/metrics").text
    assert (
        count(after, "/v1/embeddings", "minilm", "200")
        == count(before, "/v1/embeddings", "minilm", "200") + 3
    )
    assert (
        count(after, "/v1/embeddings", "unknown", "404")
        == count(before, "/v1/embeddings", "unknown", "404") + 1
    )
    assert (
        'triton_pack_api_request_duration_seconds_bucket{le="0.005",model="minilm",route="/v1/embeddings"}'
        in after
    )
    assert (
        'triton_pack_api_errors_total{model="unknown",route="/v1/embeddings",type="invalid_request_error"}'
        in after
    )


def test_rate_limit_answers_429_with_retry_after(
    server: LocalServer, served_spec: Path, tmp_path: Path
) -> None:
    from openai import OpenAI, RateLimitError

    extra = ["--api-key", "sk-a", "--api-key", "sk-b", "--rate-limit", "3/min"]
    with running_front(server.grpc_url, served_spec, tmp_path / "front.log", extra) as limited:
        body = {"model": "minilm", "input": "x"}
        a = {"Authorization": "Bearer sk-a"}
        statuses = [
            httpx.post(limited.v1 + "/embeddings", json=body, headers=a).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]  # a bucket of 3, refilled at 1 per 20 s
        limited_reply = httpx.post(limited.v1 + "/embeddings", json=body, headers=a)
        assert limited_reply.status_code == 429
        assert 1 <= int(limited_reply.headers["Retry-After"]) <= 20
        assert openai_error(limited_reply)["type"] == "rate_limit_error"
        # the limit is per key: another key still has its bucket
        b = {"Authorization": "Bearer sk-b"}
        assert httpx.post(limited.v1 + "/embeddings", json=body, headers=b).status_code == 200
        with (
            OpenAI(base_url=limited.v1, api_key="sk-a", max_retries=0) as sdk,
            pytest.raises(RateLimitError),
        ):
            sdk.embeddings.create(model="minilm", input="x")


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_long_lived_front_does_not_leak_descriptors(front: Front) -> None:
    """Hundreds of requests, each on a fresh connection (as short-lived callers make them),
    good and bad: the front's descriptors come back to where they were."""
    body = {"model": "minilm", "input": ["a text", "another"]}
    for _ in range(20):  # warm: the gRPC channel, the pools
        httpx.post(front.v1 + "/embeddings", json=body, headers=AUTH)
    before = open_descriptors(front.process.pid)
    for i in range(300):
        with httpx.Client() as fresh:
            if i % 10 == 0:
                reply = fresh.post(front.v1 + "/embeddings", json={"model": "nope", "input": "x"},
                                   headers=AUTH)  # fmt: skip
                assert reply.status_code == 404
            else:
                assert fresh.post(front.v1 + "/embeddings", json=body, headers=AUTH).is_success
    # closed client sockets may take a moment to be reaped by the server's loop
    deadline = time.monotonic() + 60
    while open_descriptors(front.process.pid) > before + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_descriptors(front.process.pid) <= before + 2
