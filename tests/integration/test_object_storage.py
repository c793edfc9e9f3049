"""The repository in object storage, served by a real tritonserver; the autoscaling metric
proven on that server.

moto's real S3 server runs on 127.0.0.1 (no mock of boto3). ``build-repo --upload`` and
``triton-pack serve <URI>`` run as a user runs them (subprocesses of this environment's
commands); tritonserver reads the repository from moto itself, with the AWS variables set
here, as a pod reads it from object storage (``triton-pack deploy`` renders the same
tritonserver arguments). One build (the session's ``served_spec``: MiniLM and a tiny
classifier, so two models are loaded) and one tritonserver serve every test of this module.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builder.autoscale import (
    HELM_EXAMPLE_RULE,
    QUEUE_TIME_RULE,
    REQUEST_SUCCESS,
    parse_metrics,
    per_model_queue_time,
)
from builder.cli import main
from builder.errors import StorageError
from builder.pipeline import BuildResult
from builder.serve import free_ports
from builder.storage import (
    check_remote_repository,
    parse_repository_uri,
    repository_hash,
    upload_repository,
)
from clients import EmbeddingClient, TritonClient
from tests.integration.conftest import minilm_source

pytestmark = [pytest.mark.triton, pytest.mark.slow]

BIN = Path(sys.executable).parent
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "models"


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def build_repo(
    spec: Path, uri: str, env: dict[str, str], *flags: str
) -> subprocess.CompletedProcess[str]:
    """``build-repo SPEC --upload URI`` as a user runs it."""
    return subprocess.run(
        [str(BIN / "build-repo"), str(spec), *flags, "--upload", uri],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, str]]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS.items():
            patch.setenv(name, value)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield dict(os.environ)


@pytest.fixture(scope="module")
def moto(aws: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1; yields ``host:port`` with the bucket made."""
    import boto3

    port = free_ports(1)[0]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=aws,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(answers, 60, "moto_server answers")
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def uploaded(moto: str, served_spec: Path, served_build: BuildResult, aws: dict[str, str]) -> str:
    """``build-repo SPEC --upload URI`` as a user runs it; the URI it printed."""
    result = build_repo(served_spec, f"s3://{moto}/models/repo", aws, "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def served(
    uploaded: str, aws: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """``triton-pack serve <URI>`` (no healing: its canaries would add requests to the
    counters the metric test reads); yields its HTTP and metrics URLs."""
    out = tmp_path_factory.mktemp("serve-s3") / "serve.out"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(BIN / "triton-pack"), "serve", uploaded, "--http-port", "0",
                "--grpc-port", "0", "--metrics-port", "0", "--heal-interval", "0",
                "--timeout", "600",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=aws,
        )  # fmt: skip

    def ready() -> re.Match[str] | None:
        text = out.read_text(encoding="utf-8", errors="replace")
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{text}")
        return re.search(r"ready: HTTP (\S+)\s+gRPC (\S+)\s+metrics (\S+)", text)

    try:
        found = wait_for(ready, 900, "triton-pack serve <s3 URI> is ready", interval=0.5)
        yield {"http": found[1], "grpc": found[2], "metrics": found[3], "uri": uploaded}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


# --- upload ----------------------------------------------------------------------------------


def test_upload_is_content_addressed(uploaded: str, served_build: BuildResult, moto: str) -> None:
    digest = repository_hash(served_build.repository)
    assert uploaded == f"s3://{moto}/models/repo/{digest}"
    manifest = check_remote_repository(parse_repository_uri(uploaded))
    assert sorted(manifest["models"]) == ["minilm", "sentiment"]


def test_upload_again_is_the_same_prefix(
    uploaded: str, served_spec: Path, moto: str, aws: dict[str, str]
) -> None:
    result = build_repo(served_spec, f"s3://{moto}/models/repo", aws)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == uploaded
    assert f"{uploaded}: already uploaded (its manifest.json is there)" in result.stderr


def test_missing_bucket_fails_before_any_upload(
    served_spec: Path, moto: str, aws: dict[str, str]
) -> None:
    result = build_repo(served_spec, f"s3://{moto}/nobucket/x", aws)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: s3://{moto}/nobucket/x: bucket 'nobucket' does not exist"
    )


def test_interrupted_upload_leaves_nothing_serve_accepts(
    served_build: BuildResult, moto: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An upload stopped after three files: the prefix holds them but no manifest, and
    both the check and `triton-pack serve` refuse it before starting tritonserver."""
    import boto3

    base = parse_repository_uri(f"s3://{moto}/models/interrupted")
    uploaded: list[str] = []

    def progress(message: str) -> None:
        if message.startswith("uploaded "):
            uploaded.append(message)
            if len(uploaded) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upload_repository(served_build.repository, base, progress)
    target = base.child(repository_hash(served_build.repository))
    listed = boto3.client("s3", endpoint_url=target.endpoint_url).list_objects_v2(
        Bucket=BUCKET, Prefix=target.key("")
    )
    assert len(listed["Contents"]) == 3
    assert not any(item["Key"].endswith("manifest.json") for item in listed["Contents"])
    message = (
        f"no manifest.json at {target}: the upload did not finish, or this is not a build's prefix"
    )
    with pytest.raises(StorageError, match=re.escape(message)):
        check_remote_repository(target)
    assert main(["serve", str(target), "--http-port", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and "starting tritonserver" not in err


def test_a_prefix_that_lost_a_file_is_refused(uploaded: str, moto: str) -> None:
    """A copy of the upload without one weight file: serve's check names the file."""
    import boto3

    source = parse_repository_uri(uploaded)
    copy = parse_repository_uri(f"s3://{moto}/models/damaged")
    s3 = boto3.client("s3", endpoint_url=source.endpoint_url)
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=source.key(""))["Contents"]:
        relative = item["Key"][len(source.key("")) :]
        if relative != "minilm_onnx/1/model.onnx.data":
            s3.copy_object(
                Bucket=BUCKET,
                Key=copy.key(relative),
                CopySource={"Bucket": BUCKET, "Key": item["Key"]},
            )
    with pytest.raises(StorageError, match=r"missing \(minilm_onnx/1/model\.onnx\.data\)"):
        check_remote_repository(copy)


# --- serve <s3 URI> --------------------------------------------------------------------------


def test_serve_s3_uri_embeds_like_sentence_transformers(served: dict[str, str]) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["hello world", "Triton reads the repository from S3", "", "ünïcödé 日本語"]
    expected = SentenceTransformer(str(minilm_source()), device="cpu").encode(texts)
    with EmbeddingClient(served["http"], "minilm") as embedder:
        got = embedder.embed(texts)
    cosine = (got * expected).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() >= 0.9999, cosine


def test_probe_passes_on_the_served_models(served: dict[str, str]) -> None:
    """The pods' exec probe, against the server that reads from S3."""
    result = subprocess.run(
        [
            str(BIN / "triton-pack"), "probe", "--url", served["http"], "-q",
            "--model", "minilm", "--model", "sentiment",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    missing = subprocess.run(
        [str(BIN / "triton-pack"), "probe", "--url", served["http"], "--model", "nosuch"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert "FAIL nosuch: not in the repository" in missing.stdout


# --- the autoscaling metric ------------------------------------------------------------------


def scrape(served: dict[str, str], models: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One /metrics scrape and each model's statistics (Triton's own report)."""
    with urllib.request.urlopen(served["metrics"], timeout=30) as reply:
        metrics = parse_metrics(reply.read().decode())
    stats = {}
    for model in models:
        with urllib.request.urlopen(f"{served['http']}/v2/models/{model}/stats", timeout=30) as r:
            stats[model] = json.load(r)["model_stats"][0]["inference_stats"]
    return metrics, stats


def successes(metrics: dict[str, Any], model: str) -> float:
    return sum(v for k, v in metrics[REQUEST_SUCCESS].items() if ("model", model) in k)


def test_queue_time_rule_equals_the_servers_own_mean_with_two_models_loaded(
    served: dict[str, str],
) -> None:
    with TritonClient(served["http"]) as client:
        models = sorted(entry.name for entry in client.repository_index())
    assert {"minilm", "sentiment"} <= set(models) and len(models) == 7  # both ensembles' members
    before_metrics, before_stats = scrape(served, models)

    requests = 64
    with EmbeddingClient(served["http"], "minilm") as embedder, ThreadPoolExecutor(8) as pool:
        # one text per request, eight in flight: the ONNX member's batcher queues them
        list(pool.map(lambda i: embedder.embed([f"text number {i}"]), range(requests)))

    def settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
        metrics, stats = scrape(served, models)
        busy = ("minilm", "minilm_tokenizer", "minilm_onnx")
        counted = all(
            successes(metrics, m) - successes(before_metrics, m) == requests
            and stats[m]["success"]["count"] - before_stats[m]["success"]["count"] == requests
            for m in busy
        )
        return (metrics, stats) if counted else None

    after_metrics, after_stats = wait_for(settled, 60, "every member counted the requests")
    ours = per_model_queue_time(before_metrics, after_metrics)
    assert sorted(ours) == ["minilm", "minilm_onnx", "minilm_tokenizer"]  # idle models: none

    # Triton's statistics extension reports queue time in ns over the requests it queued
    for model, value in ours.items():
        queued = after_stats[model]["queue"]["count"] - before_stats[model]["queue"]["count"]
        ns = after_stats[model]["queue"]["ns"] - before_stats[model]["queue"]["ns"]
        assert queued == requests
        own_mean_us = ns / queued / 1000
        # the metric adds each request's queue time truncated to whole µs: at most 1 µs less
        assert 0 <= own_mean_us - value < 1.0, (model, own_mean_us, value)
    rule = QUEUE_TIME_RULE.value(before_metrics, after_metrics)
    assert rule == max(ours.values()) and rule > 0
    # the Helm example averages over all 7 loaded models: the 4 idle ones count as zero
    helm = HELM_EXAMPLE_RULE.value(before_metrics, after_metrics)
    assert helm is not None and helm < rule * 3 / 7, (helm, rule)


# --- the API front reading the repository from the same URI ----------------------------------


def test_front_takes_its_tokenizers_from_the_uploaded_uri(
    served: dict[str, str], served_spec: Path, tmp_path: Path
) -> None:
    """As the rendered front Deployment runs it: `--repository <URI>`, no local build."""
    import httpx

    from tests.front_process import running_front

    extra = ["--repository", served["uri"]]
    with running_front(served["grpc"], served_spec, tmp_path / "front.log", extra) as front:
        texts = ["hello world", "read from S3"]
        answer = httpx.post(
            front.v1 + "/embeddings", json={"model": "minilm", "input": texts}, timeout=60
        ).json()
        with EmbeddingClient(served["http"], "minilm") as embedder:
            direct = embedder.embed(texts)
        got = np.array([item["embedding"] for item in answer["data"]], dtype=np.float32)
        np.testing.assert_array_equal(got, direct)
        # [CLS] hello world [SEP] and [CLS] read from s ##3 [SEP]
        assert answer["usage"]["prompt_tokens"] == 4 + 6
        assert httpx.get(front.url + "/health", timeout=60).json()["status"] == "ok"
