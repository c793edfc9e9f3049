"""URL parsing, HTTP paths and HTTP error bodies (clients.endpoints): pure, no server."""

from __future__ import annotations

from typing import Any

import pytest

from clients.endpoints import Endpoint, http_error, model_path, parse_endpoint, repository_path
from clients.errors import (
    ConfigurationError,
    InvalidInputError,
    ModelNotFoundError,
    ServerError,
    UnavailableError,
)


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("localhost:8000", "http", Endpoint("http", "localhost", 8000, False)),
        ("localhost", "http", Endpoint("http", "localhost", 8000, False)),
        ("localhost", "grpc", Endpoint("grpc", "localhost", 8001, False)),
        ("http://h:9", "http", Endpoint("http", "h", 9, False)),
        ("HTTP://h:9/", "http", Endpoint("http", "h", 9, False)),
        ("https://h", "http", Endpoint("http", "h", 8000, True)),
        ("https://h:9", "grpc", Endpoint("grpc", "h", 9, True)),
        ("grpc://h:9", "grpc", Endpoint("grpc", "h", 9, False)),
        ("GRPCS://h:9", "grpc", Endpoint("grpc", "h", 9, True)),
        (" 127.0.0.1:8001 ", "grpc", Endpoint("grpc", "127.0.0.1", 8001, False)),
        ("[::1]:8000", "http", Endpoint("http", "::1", 8000, False)),
    ],
)
def test_parse_endpoint(url: str, protocol: str, expected: Endpoint) -> None:
    assert parse_endpoint(url, protocol) == expected


def test_endpoint_address_and_url() -> None:
    assert Endpoint("http", "::1", 8000, False).address == "[::1]:8000"
    assert Endpoint("grpc", "h", 1, True).url == "grpcs://h:1"
    assert Endpoint("http", "h", 1, False).url == "http://h:1"


@pytest.mark.parametrize(
    ("url", "protocol", "message"),
    [
        (None, "http", "url: expected 'host:port' such as 'localhost:8000', got None"),
        ("", "grpc", "url: expected 'host:port' such as 'localhost:8001', got ''"),
        (8000, "http", "url: expected 'host:port' such as 'localhost:8000', got 8000"),
        ("h:1", "HTTP", "protocol must be 'http' or 'grpc', got 'HTTP'"),
        ("ftp://h:1", "http", "url 'ftp://h:1': unknown scheme 'ftp'; use http, https, grpc"),
        ("grpc://h:1", "http", "url 'grpc://h:1' is a grpc URL but the client's protocol is"),
        ("http://h:1", "grpc", "url 'http://h:1' is a http URL but the client's protocol is"),
        ("h:99999", "http", "url 'h:99999': Port out of range 0-65535"),
        ("h:port", "http", "url 'h:port': Port could not be cast to integer value as 'port'"),
        ("h:1/v2", "http", "url 'h:1/v2': expected only host and port"),
        ("http://:1", "http", "url 'http://:1': no host name"),
        ("my host:1", "http", "url 'my host:1': no host name"),
    ],
)
def test_parse_endpoint_rejects(url: Any, protocol: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_endpoint(url, protocol)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


def test_paths_quote_names() -> None:
    assert model_path("m") == "/v2/models/m"
    assert model_path("a/b c", "2", "/infer") == "/v2/models/a%2Fb%20c/versions/2/infer"
    assert repository_path("m x", "load") == "/v2/repository/models/m%20x/load"


def test_http_error_from_triton_json() -> None:
    error = http_error(404, b'{"error":"Request for unknown model: \'x\'"}', "http://h/u", "x")
    assert type(error) is ModelNotFoundError
    assert (str(error), error.status) == ("Request for unknown model: 'x'", "404")
    busy = http_error(503, b'{"error":"busy"}', "http://h/u")
    assert type(busy) is UnavailableError


def test_http_error_of_an_sse_event() -> None:
    error = http_error(500, b'data: {"error": "engine died"}\n\n', "http://h/u", "llm")
    assert type(error) is ServerError
    assert str(error) == "engine died"
    refused = http_error(400, b'data: {"error": "bad top_p"}\n\n', "http://h/u", "llm")
    assert (type(refused), str(refused), refused.status) == (InvalidInputError, "bad top_p", "400")


def test_a_404_about_no_model_is_not_model_not_found() -> None:
    error = http_error(404, b'{"error":"Not Found"}', "http://h/v2/x")
    assert type(error) is ServerError


def test_a_reply_without_tritons_body_says_so() -> None:
    error = http_error(404, b"<html>nope</html>", "http://h:1/v2/models/m", "m")
    assert type(error) is ServerError
    assert str(error) == (
        "HTTP 404 from http://h:1/v2/models/m without a Triton error body (<html>nope</html>); "
        "is this a Triton HTTP endpoint?"
    )
