"""Errors the clients raise. One root, importable as ``clients.ClientError``::

    ClientError
    ├── TransportError           the request may not have reached the server (retried)
    │   ├── ConnectError         connection refused or reset
    │   ├── UnavailableError     gRPC UNAVAILABLE or HTTP 503: try again later
    │   └── DeadlineExceeded     a per-call timeout or the total deadline ran out
    ├── ServerError              Triton answered with an error; its message is kept
    │   ├── ModelNotFoundError   no such model in the repository
    │   └── ModelNotReadyError   in the repository but not loaded or not ready
    ├── InvalidInputError        inputs refused: by the client before sending, or by the
    │                            model (HTTP 400, gRPC INVALID_ARGUMENT); also a ValueError
    ├── ConfigurationError       a bad URL, protocol, timeout or retry policy (also a ValueError)
    └── ClientClosedError        a call on a client after ``close()``

Third-party exceptions are translated in one place, ``clients.core.translate``.
"""

from __future__ import annotations

__all__ = [
    "ClientClosedError",
    "ClientError",
    "ConfigurationError",
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
    """The request failed on the way (see ``RetryPolicy`` for which ones are retried)."""


class ConnectError(TransportError):
    """The server could not be reached (refused, reset, gRPC UNAVAILABLE): retried until the
    policy's deadline, whatever ``attempts`` says."""


class UnavailableError(TransportError):
    """The server answered 503 or 429 (HTTP) or RESOURCE_EXHAUSTED (gRPC): it did not run the
    request. Retried up to ``RetryPolicy.attempts`` within the deadline."""


class DeadlineExceeded(TransportError, TimeoutError):
    """The call's timeout ran out; the server may have run the request. Not retried unless
    ``RetryPolicy(retry_timeouts=True)``."""


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
    """Inputs the model does not take. ``status`` is None when the client refused them before
    sending (they do not match the model's metadata), else the server's status (HTTP 400,
    gRPC INVALID_ARGUMENT: e.g. a text that is not UTF-8 or is over the model's size limit)."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConfigurationError(ClientError, ValueError):
    """A client was given a bad URL, protocol, timeout or retry policy."""


class ClientClosedError(ClientError):
    """The client (or the task client it belongs to) was closed; make a new one."""
