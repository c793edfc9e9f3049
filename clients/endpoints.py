"""Where a client talks to, without I/O: URL parsing, Triton's HTTP paths, HTTP error bodies.

Every client (generic, task, generation; sync and asyncio) parses its URL here, once, at
construction: ``"localhost:8000"``, ``"http://host:8000"``, ``"HTTPS://host"``,
``"grpc://host:8001"``. A bad URL is a ``ConfigurationError`` naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from clients.core import error_for_status
from clients.errors import ClientError, ConfigurationError, ServerError

__all__ = [
    "DEFAULT_PORTS",
    "Endpoint",
    "Protocol",
    "http_error",
    "model_path",
    "parse_endpoint",
    "repository_path",
]

Protocol = Literal["http", "grpc"]
DEFAULT_PORTS: dict[str, int] = {"http": 8000, "grpc": 8001}
_SCHEMES: dict[str, tuple[str | None, bool]] = {  # scheme -> (protocol it implies, TLS)
    "http": ("http", False),
    "https": (None, True),  # TLS for either protocol
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
}


@dataclass(frozen=True)
class Endpoint:
    """A parsed server address for one protocol."""

    protocol: Protocol
    host: str
    port: int
    ssl: bool

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts in brackets), as tritonclient and http.client take it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        scheme = {"http": "http", "grpc": "grpc"}[self.protocol] + ("s" if self.ssl else "")
        return f"{scheme}://{self.address}"


def check_protocol(protocol: object) -> Protocol:
    if protocol == "http" or protocol == "grpc":
        return protocol
    raise ConfigurationError(f"protocol must be 'http' or 'grpc', got {protocol!r}")


def parse_endpoint(url: object, protocol: object) -> Endpoint:
    """``url`` for ``protocol``; the port defaults to 8000 (HTTP) or 8001 (gRPC)."""
    chosen = check_protocol(protocol)
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(
            f"url: expected 'host:port' such as 'localhost:{DEFAULT_PORTS[chosen]}', got {url!r}"
        )
    text = url.strip()
    scheme, separator, _ = text.partition("://")
    ssl = False
    if separator:
        known = _SCHEMES.get(scheme.lower())
        if known is None:
            raise ConfigurationError(
                f"url {url!r}: unknown scheme {scheme!r}; use http, https, grpc or grpcs (or none)"
            )
        implied, ssl = known
        if implied is not None and implied != chosen:
            raise ConfigurationError(
                f"url {url!r} is a {implied} URL but the client's protocol is {chosen!r}"
            )
        text = text[len(scheme) + 3 :]
    try:
        parts = urlsplit(f"//{text}")
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"url {url!r}: {exc}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigurationError(
            f"url {url!r}: expected only host and port (Triton serves its API at the root)"
        )
    if not parts.hostname or any(c.isspace() for c in text):
        raise ConfigurationError(f"url {url!r}: no host name")
    return Endpoint(chosen, parts.hostname, port or DEFAULT_PORTS[chosen], ssl)


# --- Triton's HTTP/REST paths (KServe v2) ----------------------------------------------------


def model_path(model: str, version: str = "", suffix: str = "") -> str:
    """``/v2/models/<model>[/versions/<v>]<suffix>`` with both names quoted."""
    path = f"/v2/models/{quote(model, safe='')}"
    if version:
        path += f"/versions/{quote(version, safe='')}"
    return path + suffix


def repository_path(model: str, action: str) -> str:
    """``/v2/repository/models/<model>/<action>`` (load, unload)."""
    return f"/v2/repository/models/{quote(model, safe='')}/{action}"


def http_error(status: int, body: bytes, url: str, model: str = "") -> ClientError:
    """The error for a non-200 reply: Triton's ``{"error": ...}`` (also as an SSE event)."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("data:"):
        text = text[5:].strip()
    try:
        message = str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        shown = text[:200] or "no body"
        return ServerError(
            f"HTTP {status} from {url} without a Triton error body ({shown}); is this a "
            "Triton HTTP endpoint?",
            str(status),
        )
    if status == 404 and not model:
        return ServerError(message, str(status))
    return error_for_status(str(status), message)
