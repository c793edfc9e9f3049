"""The built repository served by a real tritonserver, queried with real tritonclient.

MiniLM is compared with sentence-transformers on the same real weights; the tiny classifier
with transformers' own forward pass.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from builder.errors import ServeError
from builder.pipeline import BuildResult
from builder.serve import LocalServer, free_ports
from tests.integration.conftest import LABELS, minilm_source

pytestmark = [pytest.mark.triton, pytest.mark.slow]

WORDS = "the quick brown fox jumps over a lazy dog while triton serves embeddings".split()


def sentence(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


TEXTS = [sentence(n) for n in (1, 2, 7, 33, 120, 300)] + [
    "Grüße aus Köln — 東京タワー, naïve café, emoji 🚀🔥",
    "",
]


@pytest.fixture(scope="module")
def reference() -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_source()), device="cpu")


def text_input(module: object, texts: list[str]) -> object:
    array = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
    tensor = module.InferInput("TEXT", list(array.shape), "BYTES")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(array)
    return tensor


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def http(server: LocalServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))


@pytest.fixture(scope="module")
def grpc(server: LocalServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_minilm_batched_equals_sentence_transformers(
    request: pytest.FixtureRequest, reference: object, protocol: str
) -> None:
    client = request.getfixturevalue(protocol)
    module = httpclient if protocol == "http" else grpcclient
    served = client.infer("minilm", [text_input(module, TEXTS)]).as_numpy("EMBEDDING")
    expected = reference.encode(TEXTS, normalize_embeddings=True)  # type: ignore[attr-defined]
    assert served.shape == (len(TEXTS), 384)
    assert served.dtype == np.float32
    assert cosines(served, expected).min() >= 0.9999
    assert np.allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_minilm_concurrent_single_requests(
    http: httpclient.InferenceServerClient, server: LocalServer, reference: object
) -> None:
    texts = [f"{sentence(3 + i % 40)} number {i}" for i in range(48)]

    def one(index: int) -> np.ndarray:
        # tritonclient's HTTP client is not thread-safe: one per thread
        client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
        try:
            reply = client.infer("minilm", [text_input(httpclient, [texts[index]])])
            return reply.as_numpy("EMBEDDING")[0]
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        served = np.stack(list(pool.map(one, range(len(texts)))))
    expected = reference.encode(texts, normalize_embeddings=True)  # type: ignore[attr-defined]
    assert cosines(served, expected).min() >= 0.9999


def test_minilm_concurrent_grpc_async(
    grpc: grpcclient.InferenceServerClient, reference: object
) -> None:
    texts = [sentence(1 + (i * 7) % 90) for i in range(24)]
    results: dict[int, np.ndarray] = {}
    errors: list[object] = []

    def done(index: int):  # type: ignore[no-untyped-def]
        def callback(result, error):  # type: ignore[no-untyped-def]
            if error is not None:
                errors.append(error)
            else:
                results[index] = result.as_numpy("EMBEDDING")[0]

        return callback

    for i, text in enumerate(texts):
        grpc.async_infer("minilm", [text_input(grpcclient, [text])], callback=done(i))
    deadline = time.monotonic() + 60
    while len(results) + len(errors) < len(texts) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors == []
    served = np.stack([results[i] for i in range(len(texts))])
    expected = reference.encode(texts, normalize_embeddings=True)  # type: ignore[attr-defined]
    assert cosines(served, expected).min() >= 0.9999


def test_classifier_matches_transformers(
    http: httpclient.InferenceServerClient, tiny_classifier: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["good movie", "terrible service , very slow", "", "ok", "love the food ! " * 30]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_classifier))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_classifier)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits, dim=-1).numpy()
    reply = http.infer("sentiment", [text_input(httpclient, texts)])
    labels = [row[0].decode() for row in reply.as_numpy("LABEL")]
    scores = reply.as_numpy("SCORES")
    assert labels == [LABELS[i] for i in probs.argmax(axis=1)]
    assert scores.shape == (len(texts), len(LABELS))
    assert np.abs(scores - probs).max() <= 1e-4


def test_label_list_is_readable_from_the_model_config(
    http: httpclient.InferenceServerClient,
) -> None:
    config = http.get_model_config("sentiment")
    assert json.loads(config["parameters"]["labels"]["string_value"]) == LABELS
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs["SCORES"]["dims"] == [3]
    assert outputs["LABEL"]["data_type"] == "TYPE_STRING"


def test_served_contract_metadata(grpc: grpcclient.InferenceServerClient) -> None:
    meta = grpc.get_model_metadata("minilm", as_json=True)
    assert meta["inputs"] == [{"name": "TEXT", "datatype": "BYTES", "shape": ["-1", "1"]}]
    assert meta["outputs"] == [{"name": "EMBEDDING", "datatype": "FP32", "shape": ["-1", "384"]}]


def test_invalid_utf8_gets_an_error_and_other_requests_succeed(
    http: httpclient.InferenceServerClient,
) -> None:
    bad = httpclient.InferInput("TEXT", [1, 1], "BYTES")
    bad.set_data_from_numpy(np.array([[b"\xff\xfe broken"]], dtype=np.object_))
    with pytest.raises(Exception, match="TEXT"):
        http.infer("minilm", [bad])
    good = http.infer("minilm", [text_input(httpclient, ["still fine"])])
    assert good.as_numpy("EMBEDDING").shape == (1, 384)


def _broken_copy(build: BuildResult, dest: Path) -> Path:
    shutil.copytree(build.repository, dest)
    (dest / "sentiment_onnx" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    return dest


def test_load_failure_raises_with_tritons_error(served_build: BuildResult, tmp_path: Path) -> None:
    broken = _broken_copy(served_build, tmp_path / "broken")
    server = LocalServer(broken)
    with pytest.raises(ServeError) as caught:
        server.start(timeout=120)
    message = str(caught.value)
    assert "tritonserver exited" in message
    assert "failed to load 'sentiment_onnx'" in message
    server.close()


def _serve_cli(repository: Path, *extra: str) -> subprocess.Popen[str]:
    http, grpc, metrics = free_ports(3)
    command = [
        sys.executable,
        "-m",
        "builder.cli",
        "serve",
        str(repository),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        *extra,
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ.copy(),
    )


def test_serve_cli_prints_tritons_error_and_exits_nonzero(
    served_build: BuildResult, tmp_path: Path
) -> None:
    broken = _broken_copy(served_build, tmp_path / "broken")
    process = _serve_cli(broken)
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 1
    assert "failed to load 'sentiment_onnx'" in output
    assert "ready:" not in output


def test_serve_cli_ready_line_and_ctrl_c(served_build: BuildResult) -> None:
    process = _serve_cli(served_build.repository)
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ready:"):
            break
    assert lines and lines[-1].startswith("ready: HTTP http://127.0.0.1:"), lines
    url = lines[-1].split()[2].removeprefix("http://")
    client = httpclient.InferenceServerClient(url)
    assert client.is_server_ready()
    assert client.is_model_ready("minilm")
    client.close()
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 0
    with pytest.raises(Exception):  # noqa: B017 - any connection error: the server is gone
        httpclient.InferenceServerClient(url).is_server_live()
