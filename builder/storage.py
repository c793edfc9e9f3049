"""Object storage: a built repository uploaded to S3, and an S3 repository checked before serving.

The URI forms are Triton's own (what ``tritonserver --model-repository`` takes):

    s3://bucket/prefix                      AWS S3 (region from AWS_DEFAULT_REGION)
    s3://host:port/bucket/prefix            an S3-compatible endpoint, over HTTP
    s3://https://host:port/bucket/prefix    the same over HTTPS (s3://http://… is HTTP)

``parse_repository_uri`` turns one into a typed ``RepositoryURI`` or raises ``StorageError``
naming it. ``upload_repository`` writes a built repository to a fresh, content-addressed
prefix, ``<prefix>/<repository hash>``: every file first, ``manifest.json`` last. A prefix
without a manifest is therefore a build whose upload did not finish, and
``check_remote_repository`` (what ``serve`` runs before starting tritonserver) refuses it.
Credentials and region come from the usual AWS environment (boto3's chain); a missing one, a
missing bucket, or an unreachable endpoint fail before anything is uploaded. botocore's
exceptions are translated in one place, ``_translated``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from builder.errors import StorageError
from builder.manifest import MANIFEST, is_triton_pack, read_manifest
from builder.sources import file_sha256

__all__ = [
    "RepositoryURI",
    "check_remote_repository",
    "fetch_manifest",
    "is_uri",
    "parse_repository_uri",
    "preflight",
    "repository_hash",
    "upload_repository",
]

SCHEMES = ("s3",)
# Triton's other repository schemes: named in the error, not supported here yet
_OTHER = {"gs": "Google Cloud Storage", "as": "Azure Storage"}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})")
HASH_LENGTH = 16  # hex digits of the repository hash in an upload's prefix (64 bits)


def is_uri(text: str) -> bool:
    """Whether ``text`` is meant as a URI (``scheme://…``) rather than a local folder."""
    return "://" in text


@dataclass(frozen=True)
class RepositoryURI:
    """An S3 repository location. ``endpoint`` is ``host:port`` for an S3-compatible server."""

    bucket: str
    prefix: str  # no leading or trailing "/"; "" is the bucket's root
    endpoint: str | None = None
    https: bool = False  # only with an endpoint: s3://https://host:port/…

    def __str__(self) -> str:
        where = ""
        if self.endpoint is not None:
            where = ("https://" if self.https else "") + self.endpoint + "/"
        return f"s3://{where}{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def endpoint_url(self) -> str | None:
        """boto3's ``endpoint_url`` (None: AWS)."""
        if self.endpoint is None:
            return None
        return ("https://" if self.https else "http://") + self.endpoint

    @property
    def plain(self) -> str:
        """``s3://bucket/prefix`` without the endpoint (KServe's storageUri form)."""
        return replace(self, endpoint=None, https=False).__str__()

    def key(self, relative: str) -> str:
        """The object key of ``relative`` (a path inside the repository)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def child(self, name: str) -> RepositoryURI:
        return replace(self, prefix=self.key(name))


def _endpoint(text: str, rest: str) -> tuple[str | None, bool, list[str]]:
    """``[http(s)://]host:port/`` at the start of ``rest``, if there: (endpoint, https, parts)."""
    https = False
    for inner in ("https://", "http://"):
        if rest.startswith(inner):
            https, rest = inner == "https://", rest[len(inner) :]
            break
    parts = rest.split("/")
    found = _HOST_PORT.fullmatch(parts[0])
    if found is None:
        if https or rest != rest.lstrip("/"):
            raise StorageError(f"{text}: expected s3://host:port/bucket/prefix after the scheme")
        return None, False, parts
    if not 0 < int(found["port"]) < 65536:
        raise StorageError(f"{text}: port {found['port']} is not a port")
    return parts[0], https, parts[1:]


def parse_repository_uri(text: str) -> RepositoryURI:
    """Parse Triton's S3 URI forms; raise StorageError naming ``text`` otherwise."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise StorageError(f"{text}: not a URI (expected s3://bucket/prefix)")
    if scheme not in SCHEMES:
        other = f" ({_OTHER[scheme]}: not supported by triton-pack yet)" if scheme in _OTHER else ""
        raise StorageError(
            f"{text}: unknown scheme {scheme + '://'!r}{other}; supported: s3://bucket/prefix "
            "or s3://host:port/bucket/prefix"
        )
    endpoint, https, parts = _endpoint(text, rest)
    bucket = parts[0] if parts else ""
    if not bucket:
        raise StorageError(f"{text}: no bucket (expected s3://bucket/prefix)")
    if not _BUCKET.fullmatch(bucket):
        raise StorageError(
            f"{text}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, "
            "'.' and '-')"
        )
    segments = [p for p in parts[1:] if p]
    if any(p in (".", "..") for p in segments):
        raise StorageError(f"{text}: '.' and '..' are not allowed in the prefix")
    return RepositoryURI(bucket, "/".join(segments), endpoint, https)


def _client(uri: RepositoryURI) -> Any:
    """A boto3 S3 client for ``uri`` (path-style addressing for an S3-compatible endpoint)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise StorageError(
            f"{uri}: boto3 is not installed (pip install 'triton-pack[s3]')"
        ) from None
    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise StorageError(f"{uri}: {_NO_CREDENTIALS}")
    config = Config(
        s3={"addressing_style": "path"} if uri.endpoint else {},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    return session.client("s3", endpoint_url=uri.endpoint_url, config=config)


@contextlib.contextmanager
def _translated(uri: RepositoryURI, action: str) -> Iterator[None]:
    """botocore's exceptions as StorageError naming the URI and what was being done."""
    from botocore import exceptions as bx

    try:
        yield
    except bx.NoCredentialsError:
        raise StorageError(f"{uri}: {action}: {_NO_CREDENTIALS}") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise StorageError(f"{uri}: {action}: the endpoint does not answer ({exc})") from None
    except bx.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        if code in ("NoSuchBucket", "404") and action.startswith("bucket"):
            raise StorageError(f"{uri}: bucket {uri.bucket!r} does not exist") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StorageError(
                f"{uri}: {action}: access denied ({code}{': ' + message if message else ''}); "
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        raise StorageError(f"{uri}: {action}: {code or 'error'} {message}".rstrip()) from None
    except bx.BotoCoreError as exc:
        raise StorageError(f"{uri}: {action}: {exc}") from None


_NO_CREDENTIALS = (
    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); "
    "tritonserver reads the same variables"
)


def preflight(uri: RepositoryURI) -> Any:
    """Credentials, region and bucket, checked before any work; the boto3 client for ``uri``.

    tritonserver needs the region in the environment (AWS_DEFAULT_REGION), so it is required
    here too rather than failing later inside the server.
    """
    if not (os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")):
        raise StorageError(
            f"{uri}: no AWS region: set AWS_DEFAULT_REGION (tritonserver needs it to read S3)"
        )
    client = _client(uri)
    with _translated(uri, "bucket check"):
        client.head_bucket(Bucket=uri.bucket)
    return client


def _files(repository: Path) -> list[Path]:
    return sorted(
        path
        for path in repository.rglob("*")
        if path.is_file() and "__pycache__" not in path.relative_to(repository).parts
    )


def repository_hash(repository: Path) -> str:
    """A content hash of a built repository: every file's path and sha256, manifest included.

    The manifest alone is not enough: it records the exported files, but configs re-rendered
    without an export (``instances``, ``dynamic_batching``) change only ``config.pbtxt``.
    """
    digest = hashlib.sha256()
    for path in _files(repository):
        digest.update(f"{path.relative_to(repository).as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()[:HASH_LENGTH]


def _head(client: Any, uri: RepositoryURI, key: str) -> bool:
    from botocore import exceptions as bx

    try:
        with _translated(uri, f"looking up {key}"):
            client.head_object(Bucket=uri.bucket, Key=key)
    except StorageError as exc:
        if isinstance(exc.__context__, bx.ClientError):
            code = str(exc.__context__.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
        raise
    return True


def upload_repository(
    repository: Path,
    base: RepositoryURI,
    progress: Callable[[str], None] = lambda message: None,
    client: Any = None,
) -> RepositoryURI:
    """Upload a built repository to ``base/<repository hash>``; return that URI.

    Every file is uploaded before ``manifest.json``, so an interrupted upload leaves a prefix
    that ``check_remote_repository`` refuses. A prefix whose manifest is already there holds
    this very build (the hash covers every file) and is not uploaded again.
    """
    if read_manifest(repository) is None:
        raise StorageError(
            f"{repository}: not a built repository (no triton-pack {MANIFEST}); nothing uploaded"
        )
    client = client or preflight(base)
    target = base.child(repository_hash(repository))
    if _head(client, target, target.key(MANIFEST)):
        progress(f"{target}: already uploaded (its {MANIFEST} is there)")
        return target
    files = [p for p in _files(repository) if p.relative_to(repository).as_posix() != MANIFEST]
    total = sum(p.stat().st_size for p in files)
    progress(f"uploading {len(files) + 1} files ({total / 1e6:.1f} MB) to {target}")
    for path in [*files, repository / MANIFEST]:  # the manifest last: it marks a whole upload
        rel = path.relative_to(repository).as_posix()
        with _translated(target, f"uploading {rel}"):
            client.upload_file(str(path), target.bucket, target.key(rel))
        progress(f"uploaded {rel}")
    return target


def fetch_manifest(uri: RepositoryURI, client: Any = None) -> dict[str, Any]:
    """The parsed ``manifest.json`` at ``uri``; StorageError when it is missing or foreign."""
    client = client or preflight(uri)
    if not _head(client, uri, uri.key(MANIFEST)):
        raise StorageError(
            f"no {MANIFEST} at {uri}: the upload did not finish, or this is not a build's "
            "prefix (`build-repo SPEC --upload URI` prints the prefix to serve)"
        )
    with _translated(uri, f"reading {MANIFEST}"):
        body = client.get_object(Bucket=uri.bucket, Key=uri.key(MANIFEST))["Body"].read()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not is_triton_pack(data):
        raise StorageError(f"{uri}/{MANIFEST}: not a triton-pack manifest")
    return dict(data)


def check_remote_repository(uri: RepositoryURI, client: Any = None) -> dict[str, Any]:
    """What ``serve`` checks before starting tritonserver: the manifest and every file it lists."""
    client = client or preflight(uri)
    manifest = fetch_manifest(uri, client)
    listed: set[str] = set()
    with _translated(uri, "listing the prefix"):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=uri.bucket, Prefix=uri.key("")
        )
        for page in pages:
            listed.update(item["Key"] for item in page.get("Contents", ()))
    models = manifest.get("models")
    models = models if isinstance(models, dict) else {}
    wanted = [
        rel
        for record in models.values()
        if isinstance(record, dict)
        for rel in (record.get("artifacts") or {})
    ]
    missing = [rel for rel in wanted if uri.key(rel) not in listed]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if missing[3:] else "")
        raise StorageError(f"{uri}: files of the build are missing ({shown}); upload it again")
    return manifest


def download_files(
    uri: RepositoryURI, relatives: Iterable[str], folder: Path, client: Any = None
) -> Path:
    """Copy the build's ``manifest.json`` and ``relatives`` (repository paths) from ``uri``
    into ``folder``, laid out as the repository is (the API front reads only these: the
    tokenizers and the engines' ``model.json``). Returns ``folder``."""
    client = client or preflight(uri)
    manifest = fetch_manifest(uri, client)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    for relative in relatives:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with _translated(uri, f"reading {relative}"):
            body = client.get_object(Bucket=uri.bucket, Key=uri.key(relative))["Body"].read()
        target.write_bytes(body)
    return folder
