"""Errors the clients raise. One root, importable as ``clients.ClientError``::

    ClientError
    ├── TransportError           the request may not have reached the server (retried)
    │   ├── ConnectError         connection refused or reset
    │   ├── UnavailableError     gRPC UNAVAILABLE or HTTP 503: try again later
    │   └── DeadlineExceeded     a per-call timeout or the total deadline ran out
    ├── ServerError              Triton answered with an error; its message is kept
    │   ├── ModelNotFoundError   no such model in the repository
    │   └── ModelNotReadyError   in the repository but not loaded or not ready
    └── InvalidInputError        raised before anything is sent (also a ValueError)

Third-party exceptions are translated in one place, ``clients.core.translate``.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "ConnectError",
    "DeadlineExceeded",
    "InvalidInputError",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "ServerError",
    "TransportError",
    "UnavailableError",
]


class ClientError(Exception):
    """Root of every error the clients raise on purpose."""


class TransportError(ClientError):
    """The request failed on the way: retried with backoff within the deadline."""


class ConnectError(TransportError):
    """The server could not be reached."""


class UnavailableError(TransportError):
    """The server or channel said UNAVAILABLE (gRPC) or 503 (HTTP)."""


class DeadlineExceeded(TransportError, TimeoutError):
    """A per-call timeout or the total deadline ran out."""


class ServerError(ClientError):
    """Triton answered with an error. ``status`` is the HTTP code or gRPC status name."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ModelNotFoundError(ServerError):
    """The model is not in the server's repository."""


class ModelNotReadyError(ServerError):
    """The model is in the repository but not ready (``state``, ``reason`` from the index)."""

    def __init__(
        self, message: str, state: str = "", reason: str = "", status: str | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.state = state
        self.reason = reason


class InvalidInputError(ClientError, ValueError):
    """Inputs do not match the model's metadata; nothing was sent."""
