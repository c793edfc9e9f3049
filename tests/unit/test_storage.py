"""builder.storage without a server: URI parsing, the repository hash, checks before any upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cli import build_repo_main, main
from builder.errors import StorageError
from builder.storage import (
    HASH_LENGTH,
    RepositoryURI,
    is_uri,
    parse_repository_uri,
    preflight,
    repository_hash,
    upload_repository,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://models/repo", RepositoryURI("models", "repo")),
        ("s3://models", RepositoryURI("models", "")),
        ("s3://models/", RepositoryURI("models", "")),
        ("s3://models/a/b/c/", RepositoryURI("models", "a/b/c")),
        ("s3://127.0.0.1:9000/models/repo", RepositoryURI("models", "repo", "127.0.0.1:9000")),
        ("s3://minio.local:9000/m-1/x", RepositoryURI("m-1", "x", "minio.local:9000")),
        ("s3://https://s3.example:443/bkt/p", RepositoryURI("bkt", "p", "s3.example:443", True)),
        ("s3://http://127.0.0.1:80/bkt", RepositoryURI("bkt", "", "127.0.0.1:80", False)),
    ],
)
def test_parse_triton_uri_forms(text: str, expected: RepositoryURI) -> None:
    assert parse_repository_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "s3://models/repo",
        "s3://models",
        "s3://127.0.0.1:9000/models/repo",
        "s3://https://s3.example:443/bkt/p",
    ],
)
def test_uri_round_trips(text: str) -> None:
    assert str(parse_repository_uri(text)) == text


def test_uri_parts() -> None:
    uri = parse_repository_uri("s3://127.0.0.1:9000/models/repo")
    assert uri.endpoint_url == "http://127.0.0.1:9000"
    assert uri.plain == "s3://models/repo"
    assert uri.key("manifest.json") == "repo/manifest.json"
    assert str(uri.child("abc")) == "s3://127.0.0.1:9000/models/repo/abc"
    assert parse_repository_uri("s3://b3x/").key("m.json") == "m.json"
    assert parse_repository_uri("s3://https://h:1/b3x").endpoint_url == "https://h:1"
    assert parse_repository_uri("s3://b3x/p").endpoint_url is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gs://bucket/p", "unknown scheme 'gs://' (Google Cloud Storage: not supported"),
        ("as://acct/c/p", "unknown scheme 'as://' (Azure Storage"),
        ("ftp://host/p", "unknown scheme 'ftp://'; supported: s3://bucket/prefix"),
        ("s3://", "no bucket"),
        ("s3://127.0.0.1:9000/", "no bucket"),
        ("s3://127.0.0.1:9000", "no bucket"),
        ("s3:///models", "expected s3://host:port/bucket/prefix"),
        ("s3://https://models/p", "expected s3://host:port/bucket/prefix"),
        ("s3://127.0.0.1:70000/b/p", "port 70000 is not a port"),
        ("s3://Bad_Bucket/p", "'Bad_Bucket' is not a valid bucket name"),
        ("s3://models/a/../b", "'.' and '..' are not allowed"),
        ("models/repo", "not a URI"),
    ],
)
def test_bad_uris_name_the_uri(text: str, message: str) -> None:
    with pytest.raises(StorageError) as caught:
        parse_repository_uri(text)
    assert str(caught.value).startswith(f"{text}: ") and message in str(caught.value)


def test_is_uri() -> None:
    assert is_uri("s3://b/p") and is_uri("gs://b")
    assert not is_uri("model_repository") and not is_uri("/tmp/repo")


def _repo(root: Path) -> Path:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "config.pbtxt").write_text('name: "m"\n')
    (root / "m" / "1" / "model.onnx").write_bytes(b"\0weights")
    (root / "manifest.json").write_text('{"format": "triton-pack-repository/1", "models": {}}\n')
    return root


def test_repository_hash_covers_every_file(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    first = repository_hash(repo)
    assert len(first) == HASH_LENGTH and int(first, 16) >= 0
    (repo / "m" / "__pycache__").mkdir()
    (repo / "m" / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    assert repository_hash(repo) == first
    (repo / "m" / "config.pbtxt").write_text('name: "m"\nmax_batch_size: 8\n')
    second = repository_hash(repo)
    assert second != first  # a config changed without an export still changes the prefix
    (repo / "m" / "config.pbtxt").rename(repo / "m" / "config2.pbtxt")
    assert repository_hash(repo) != second  # paths count, not only contents


def test_upload_refuses_a_folder_that_is_not_a_build(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(StorageError, match=r"not a built repository \(no triton-pack manifest"):
        upload_repository(tmp_path, parse_repository_uri("s3://models/x"))


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    # no shared credentials or config file, and no instance metadata lookups
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_aws")
def test_no_region_fails_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    with pytest.raises(StorageError, match=r"s3://models/x: no AWS region: set AWS_DEFAULT_REGION"):
        preflight(parse_repository_uri("s3://models/x"))


@pytest.mark.usefixtures("no_aws")
def test_no_credentials_fails_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(StorageError, match=r"s3://models/x: no AWS credentials: set AWS_ACCESS"):
        preflight(parse_repository_uri("s3://models/x"))


@pytest.mark.usefixtures("no_aws")
def test_build_repo_upload_checks_before_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad URI or missing credentials: exit 1, one line, and no build started (the spec's
    source does not even exist, so a build would fail differently)."""
    spec = tmp_path / "models.yaml"
    spec.write_text(
        "repository: out\nmodels:\n  - {name: m, task: text-embedding, source: ./nowhere}\n"
    )
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for uri, message in [
        ("gs://models/x", "error: gs://models/x: unknown scheme 'gs://'"),
        ("s3://127.0.0.1:9/", "error: s3://127.0.0.1:9/: no bucket"),
        ("s3://models/x", "error: s3://models/x: no AWS credentials"),
    ]:
        assert build_repo_main([str(spec), "--upload", uri]) == 1
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("no_aws")
def test_serve_rejects_a_bad_uri_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "gs://bucket/p"]) == 1
    assert capsys.readouterr().err.startswith("error: gs://bucket/p: unknown scheme 'gs://'")
