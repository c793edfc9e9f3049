"""Client errors are client errors, and inputs are bounded: against a real tritonserver.

A text that is not UTF-8 gets HTTP 400 / gRPC INVALID_ARGUMENT naming TEXT (binary HTTP, JSON
HTTP and gRPC), and the typed clients raise InvalidInputError with the server's status; a
text over the model's max_text_bytes is refused the same way before anything is tokenized; a
long text under the limit is answered from the head the tokenizer needs, equal to
sentence-transformers' answer for the whole text.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from builder.serve import LocalServer
from clients import EmbeddingClient, InvalidInputError, TritonClient
from tests.integration.conftest import minilm_source

pytestmark = [pytest.mark.triton, pytest.mark.slow]

NOT_UTF8 = b"caf\xe9 \xff"  # Latin-1, not UTF-8
LIMIT = 256 * 1024  # minilm: max_sequence_length 256 x 1024 bytes


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_not_utf8_over_binary_http_is_400_naming_text(server: LocalServer) -> None:
    item = httpclient.InferInput("TEXT", [1, 1], "BYTES")
    item.set_data_from_numpy(np.array([[NOT_UTF8]], dtype=np.object_))
    body, json_size = httpclient.InferenceServerClient.generate_request_body([item])
    headers = {"Inference-Header-Content-Length": str(json_size)}
    status, text = post(f"{server.http_url}/v2/models/minilm/infer", body, headers)
    assert status == 400
    assert "TEXT[0]: not valid UTF-8" in json.loads(text)["error"]


JSON_HEAD = b'{"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["'


def test_not_utf8_in_a_json_http_request_is_400_naming_text(server: LocalServer) -> None:
    body = JSON_HEAD + NOT_UTF8 + b'"]}]}'  # the raw bytes inside the JSON string
    url = f"{server.http_url}/v2/models/minilm/infer"
    status, text = post(url, body, {"Content-Type": "application/json"})
    assert status == 400, text
    assert "TEXT[0]: not valid UTF-8" in json.loads(text)["error"]


def test_an_escaped_lone_surrogate_is_refused_by_tritons_own_json_parser(
    server: LocalServer,
) -> None:
    """tritonserver 2.51 rejects it before any model sees it, with 500 (upstream; kept here
    so that a Triton upgrade that changes it shows up)."""
    body = JSON_HEAD + b'bad \\ud800 text"]}]}'
    status, text = post(
        f"{server.http_url}/v2/models/minilm/infer", body, {"Content-Type": "application/json"}
    )
    assert (status, json.loads(text)["error"]) == (
        500,
        "failed to parse the request JSON buffer: The surrogate pair in string is invalid. at 81",
    )


def test_not_utf8_over_grpc_is_invalid_argument_naming_text(server: LocalServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    item = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    item.set_data_from_numpy(np.array([[NOT_UTF8]], dtype=np.object_))
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer("minilm", [item])
    finally:
        client.close()
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "TEXT[0]: not valid UTF-8" in caught.value.message()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_typed_clients_raise_invalid_input_with_the_status(
    server: LocalServer, protocol: str
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    with TritonClient(url, protocol) as client:  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError) as caught:
            client.infer("minilm", {"TEXT": np.array([[b"ok"], [NOT_UTF8]], dtype=np.object_)})
        assert caught.value.status in ("400", "StatusCode.INVALID_ARGUMENT")
        assert "TEXT[1]: not valid UTF-8" in str(caught.value)
        # the same client goes on
        assert client.infer("minilm", {"TEXT": [["fine"]]})["EMBEDDING"].shape == (1, 384)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_text_over_the_limit_is_refused_naming_the_limit(
    server: LocalServer, protocol: str
) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    huge = "word " * (2 * 1024 * 1024)  # 10 MiB
    with (
        EmbeddingClient(url, "minilm", protocol=protocol) as embedder,  # type: ignore[arg-type]
        pytest.raises(InvalidInputError) as caught,
    ):
        embedder.embed([huge])
    assert f"TEXT[0]: {len(huge)} bytes is more than this model takes ({LIMIT} bytes" in str(
        caught.value
    )


def test_a_long_text_under_the_limit_equals_sentence_transformers(server: LocalServer) -> None:
    from sentence_transformers import SentenceTransformer

    words = "the quick brown fox jumps over the lazy dog and keeps running ".split()
    long_text = " ".join(words[i % len(words)] for i in range(40_000))  # about 190 KB
    assert len(long_text.encode()) < LIMIT
    reference: Any = SentenceTransformer(str(minilm_source()), device="cpu").encode(
        [long_text], normalize_embeddings=True
    )
    with EmbeddingClient(server.http_url, "minilm") as embedder:
        started = time.monotonic()
        served = embedder.embed([long_text])
        print(f"a {len(long_text)}-character text answered in {time.monotonic() - started:.3f} s")
    cosine = float(served[0] @ reference[0])
    assert cosine >= 0.9999
