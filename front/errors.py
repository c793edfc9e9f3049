"""Every failure the front answers: its HTTP status and its body.

Routes under ``/v1/`` answer in OpenAI's error body
(``{"error": {"message", "type", "param", "code"}}``); the TEI routes in TEI's
(``{"error", "error_type"}``). ``from_client_error`` maps the typed clients' errors: Triton
unreachable is 503, a request Triton rejected as invalid is 400, a model Triton does not know
is 404, a timeout 504, anything else Triton said 502.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clients.errors import (
    ClientError,
    ConnectError,
    DeadlineExceeded,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    UnavailableError,
)

__all__ = ["APIError", "from_client_error", "openai_body", "tei_body"]

# OpenAI's error "type" for each status we answer
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    424: "invalid_request_error",
    429: "rate_limit_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}
# TEI's error_type for each status (TEI's documented ErrorType values, in the case it sends)
_TEI_TYPES = {
    400: "validation",
    401: "validation",
    404: "validation",
    413: "validation",
    422: "validation",
    424: "backend",
    429: "overloaded",
    502: "backend",
    503: "unhealthy",
    504: "backend",
}


@dataclass
class APIError(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None  # seconds, for 429

    def __str__(self) -> str:
        return self.message

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, int(-(-self.retry_after // 1))))}


def openai_body(error: APIError) -> dict[str, Any]:
    return {
        "error": {
            "message": error.message,
            "type": _OPENAI_TYPES.get(error.status, "server_error"),
            "param": error.param,
            "code": error.code,
        }
    }


def tei_body(error: APIError) -> dict[str, Any]:
    return {"error": error.message, "error_type": _TEI_TYPES.get(error.status, "backend")}


def from_client_error(error: ClientError, model: str) -> APIError:
    text = str(error)
    if isinstance(error, ConnectError):
        return APIError(503, f"Triton is unreachable: {text}", code="triton_unavailable")
    if isinstance(error, UnavailableError):
        return APIError(503, f"Triton declined the request: {text}", code="triton_unavailable")
    if isinstance(error, DeadlineExceeded):
        return APIError(504, f"model {model!r} did not answer in time: {text}", code="timeout")
    if isinstance(error, ModelNotFoundError):
        return APIError(
            404, f"model {model!r} is not served by Triton: {text}", "model", "model_not_found"
        )
    if isinstance(error, ModelNotReadyError):
        return APIError(503, f"model {model!r} is not ready: {text}", code="model_not_ready")
    if isinstance(error, InvalidInputError):
        return APIError(400, text, code="invalid_input")
    return APIError(502, f"Triton failed on model {model!r}: {text}", code="triton_error")
