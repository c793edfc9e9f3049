"""clients.core: parsing server replies, input checks, error translation, retries, task helpers.

No server: replies are the JSON that tritonserver 2.51 returned for the ``minilm`` ensemble
(HTTP, and gRPC with ``as_json=True``), and errors are real ``InferenceServerException``s.
"""

from __future__ import annotations

import random
import socket
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc
import tritonclient.http
from tritonclient.utils import InferenceServerException

from clients.core import (
    NO_RETRY,
    RetryPolicy,
    WireTensor,
    call_limit,
    check_timeout,
    chunks,
    classifications,
    next_delay,
    parse_model_config,
    parse_model_metadata,
    parse_repository_index,
    parse_server_metadata,
    prepare_inputs,
    refine_not_found,
    requested_outputs,
    text_array,
    translate,
    wire_inputs,
)
from clients.errors import (
    ClientError,
    ConfigurationError,
    ConnectError,
    DeadlineExceeded,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServerError,
    TransportError,
    UnavailableError,
)
from clients.types import (
    Classification,
    ModelConfig,
    ModelMetadata,
    RepositoryModel,
    ServerMetadata,
    TensorSpec,
)

# --- parsing: the two shapes Triton answers in ------------------------------------------------

HTTP_METADATA = {
    "name": "minilm",
    "versions": ["1"],
    "platform": "ensemble",
    "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1, 1]}],
    "outputs": [{"name": "EMBEDDING", "datatype": "FP32", "shape": [-1, 384]}],
}
GRPC_METADATA = {
    "name": "minilm",
    "versions": ["1"],
    "platform": "ensemble",
    "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": ["-1", "1"]}],
    "outputs": [{"name": "EMBEDDING", "datatype": "FP32", "shape": ["-1", "384"]}],
}
MINILM_METADATA = ModelMetadata(
    name="minilm",
    versions=("1",),
    platform="ensemble",
    inputs=(TensorSpec("TEXT", "BYTES", (-1, 1)),),
    outputs=(TensorSpec("EMBEDDING", "FP32", (-1, 384)),),
)

HTTP_CONFIG = {
    "name": "minilm",
    "platform": "ensemble",
    "backend": "",
    "max_batch_size": 32,
    "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
    "output": [{"name": "EMBEDDING", "data_type": "TYPE_FP32", "dims": [384]}],
    "parameters": {"labels": {"string_value": '["a","b"]'}},
}
GRPC_CONFIG_INNER = {  # as_json leaves out defaults: backend "", optional false
    "name": "minilm",
    "platform": "ensemble",
    "max_batch_size": 32,
    "input": [
        {"name": "TEXT", "data_type": "TYPE_STRING", "dims": ["1"]},
        {"name": "LANG", "data_type": "TYPE_STRING", "dims": ["1"], "optional": True},
    ],
    "output": [{"name": "EMBEDDING", "data_type": "TYPE_FP32", "dims": ["384"]}],
    "parameters": {"labels": {"string_value": '["a","b"]'}},
    "model_transaction_policy": {"decoupled": True},
}
GRPC_CONFIG = {"config": GRPC_CONFIG_INNER}

INDEX_ENTRIES = [
    {"name": "minilm", "version": "1", "state": "READY"},
    {"name": "x", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
]
INDEX = [
    RepositoryModel("minilm", "1", "READY", ""),
    RepositoryModel("x", "1", "UNAVAILABLE", "unloaded"),
]


def test_parse_server_metadata() -> None:
    data = {"name": "triton", "version": "2.51.0", "extensions": ["classification", "sequence"]}
    assert parse_server_metadata(data) == ServerMetadata(
        "triton", "2.51.0", ("classification", "sequence")
    )


def test_parse_server_metadata_of_an_empty_reply() -> None:
    assert parse_server_metadata({}) == ServerMetadata("", "", ())


@pytest.mark.parametrize("data", [HTTP_METADATA, GRPC_METADATA], ids=["http", "grpc"])
def test_parse_model_metadata(data: dict[str, Any]) -> None:
    metadata = parse_model_metadata(data)
    assert metadata == MINILM_METADATA
    assert all(type(d) is int for t in metadata.inputs + metadata.outputs for d in t.shape)


def test_parse_http_model_config() -> None:
    config = parse_model_config(HTTP_CONFIG)
    assert config == ModelConfig(
        name="minilm",
        platform="ensemble",
        backend="",
        max_batch_size=32,
        inputs=(TensorSpec("TEXT", "BYTES", (1,)),),
        outputs=(TensorSpec("EMBEDDING", "FP32", (384,)),),
        parameters={"labels": '["a","b"]'},
        decoupled=False,
        raw={},
    )
    assert config.raw == HTTP_CONFIG


def test_parse_grpc_model_config() -> None:
    config = parse_model_config(GRPC_CONFIG)
    assert config == ModelConfig(
        name="minilm",
        platform="ensemble",
        backend="",
        max_batch_size=32,
        inputs=(
            TensorSpec("TEXT", "BYTES", (1,)),
            TensorSpec("LANG", "BYTES", (1,), optional=True),
        ),
        outputs=(TensorSpec("EMBEDDING", "FP32", (384,)),),
        parameters={"labels": '["a","b"]'},
        decoupled=True,
        raw={},
    )
    assert all(type(d) is int for t in config.inputs + config.outputs for d in t.shape)
    assert config.raw == GRPC_CONFIG_INNER  # unwrapped


def test_parse_model_config_defaults_omitted_fields() -> None:
    config = parse_model_config({"config": {"name": "m", "input": [{"name": "X"}]}})
    assert (config.max_batch_size, config.decoupled, config.parameters) == (0, False, {})
    assert config.inputs == (TensorSpec("X", "INVALID", ()),)


@pytest.mark.parametrize("data", [INDEX_ENTRIES, {"models": INDEX_ENTRIES}], ids=["http", "grpc"])
def test_parse_repository_index(data: Any) -> None:
    assert parse_repository_index(data) == INDEX


@pytest.mark.parametrize("data", [[], {}], ids=["http", "grpc"])
def test_parse_empty_repository_index(data: Any) -> None:
    assert parse_repository_index(data) == []


# --- prepare_inputs ---------------------------------------------------------------------------

MINILM_CONFIG = ModelConfig(
    name="minilm",
    platform="ensemble",
    backend="",
    max_batch_size=32,
    inputs=(TensorSpec("TEXT", "BYTES", (1,)),),
    outputs=(TensorSpec("EMBEDDING", "FP32", (384,)),),
    parameters={},
    decoupled=False,
    raw={},
)
PAIR_METADATA = ModelMetadata(
    name="pair",
    versions=("1",),
    platform="",
    inputs=(
        TensorSpec("TEXT", "BYTES", (-1, 1)),
        TensorSpec("FEATS", "FP32", (-1, 4)),
        TensorSpec("LANG", "BYTES", (-1, 1)),
    ),
    outputs=(TensorSpec("OUT", "FP32", (-1, 2)),),
)
PAIR_CONFIG = ModelConfig(
    name="pair",
    platform="",
    backend="python",
    max_batch_size=8,
    inputs=(
        TensorSpec("TEXT", "BYTES", (1,)),
        TensorSpec("FEATS", "FP32", (4,)),
        TensorSpec("LANG", "BYTES", (1,), optional=True),
    ),
    outputs=(TensorSpec("OUT", "FP32", (2,)),),
    parameters={},
    decoupled=False,
    raw={},
)


def texts(n: int) -> np.ndarray[Any, Any]:
    return np.array([[f"t{i}".encode()] for i in range(n)], dtype=object)


def feats(n: int) -> np.ndarray[Any, Any]:
    return np.arange(n * 4, dtype=np.float32).reshape(n, 4)


def assert_bytes_tensor(tensor: WireTensor, name: str, expected: list[list[bytes]]) -> None:
    assert (tensor.name, tensor.datatype) == (name, "BYTES")
    assert tensor.array.dtype == np.object_
    assert tensor.array.flags["C_CONTIGUOUS"]
    assert tensor.array.tolist() == expected
    assert all(type(item) is bytes for item in tensor.array.flat)


@pytest.mark.parametrize(
    "value",
    [
        np.array([[b"h\xc3\xa9llo"], [b"b"]], dtype=object),
        np.array([["héllo"], ["b"]], dtype=object),
        np.array([["héllo"], ["b"]]),  # dtype <U5
        [["héllo"], [b"b"]],
    ],
    ids=["bytes-object", "str-object", "numpy-unicode", "list"],
)
def test_prepare_inputs_accepts_text_as_bytes_or_str(value: Any) -> None:
    (tensor,) = prepare_inputs(MINILM_METADATA, MINILM_CONFIG, {"TEXT": value})
    assert_bytes_tensor(tensor, "TEXT", [[b"h\xc3\xa9llo"], [b"b"]])


def test_prepare_inputs_leaves_the_callers_array_alone() -> None:
    value = np.array([["a"], ["b"]], dtype=object)
    prepare_inputs(MINILM_METADATA, MINILM_CONFIG, {"TEXT": value})
    assert value.tolist() == [["a"], ["b"]]


def test_prepare_inputs_makes_numeric_arrays_contiguous() -> None:
    strided = np.arange(16, dtype=np.float32).reshape(2, 8)[:, ::2]
    assert not strided.flags["C_CONTIGUOUS"]
    text, feat = prepare_inputs(PAIR_METADATA, PAIR_CONFIG, {"TEXT": texts(2), "FEATS": strided})
    assert_bytes_tensor(text, "TEXT", [[b"t0"], [b"t1"]])
    assert (feat.name, feat.datatype, feat.array.dtype) == ("FEATS", "FP32", np.dtype(np.float32))
    assert feat.array.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(feat.array, [[0, 2, 4, 6], [8, 10, 12, 14]])


def test_prepare_inputs_may_omit_an_optional_input_or_give_it() -> None:
    without = prepare_inputs(PAIR_METADATA, PAIR_CONFIG, {"TEXT": texts(1), "FEATS": feats(1)})
    assert [t.name for t in without] == ["TEXT", "FEATS"]
    given = {"LANG": [[b"en"]], "TEXT": texts(1), "FEATS": feats(1)}
    with_lang = prepare_inputs(PAIR_METADATA, PAIR_CONFIG, given)
    assert [t.name for t in with_lang] == ["LANG", "TEXT", "FEATS"]  # the caller's order
    assert_bytes_tensor(with_lang[0], "LANG", [[b"en"]])


def test_prepare_inputs_accepts_a_full_batch() -> None:
    tensors = prepare_inputs(PAIR_METADATA, PAIR_CONFIG, {"TEXT": texts(8), "FEATS": feats(8)})
    assert [t.array.shape for t in tensors] == [(8, 1), (8, 4)]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"TEXT": texts(1), "FEATS": feats(1), "EXTRA": feats(1)},
            "model 'pair': unknown input(s) 'EXTRA'; its inputs are 'TEXT', 'FEATS', 'LANG'",
        ),
        ({"TEXT": texts(1)}, "model 'pair': missing input(s) 'FEATS'"),
        (
            {"TEXT": texts(1), "FEATS": feats(1).astype(np.float64)},
            "model 'pair' input 'FEATS': expected FP32 (float32), got float64",
        ),
        (
            {"TEXT": np.zeros((1, 1), dtype=np.float32), "FEATS": feats(1)},
            "model 'pair' input 'TEXT': expected BYTES (str or bytes), got float32",
        ),
        (
            {"TEXT": np.array([[b"a"], [3]], dtype=object), "FEATS": feats(2)},
            "model 'pair' input 'TEXT': expected BYTES (str or bytes), got an element of type int",
        ),
        (
            {"TEXT": texts(2), "FEATS": feats(2)[:, :3]},
            "model 'pair' input 'FEATS': expected shape [-1, 4], got [2, 3]",
        ),
        (
            {"TEXT": texts(2), "FEATS": feats(2).reshape(2, 4, 1)},
            "model 'pair' input 'FEATS': expected shape [-1, 4], got [2, 4, 1]",
        ),
        (
            {"TEXT": texts(9), "FEATS": feats(9)},
            "model 'pair' input 'TEXT': batch of 9 exceeds the model's max_batch_size 8",
        ),
        (
            {"TEXT": texts(2), "FEATS": feats(3)},
            "model 'pair': inputs disagree on batch size: {'TEXT': 2, 'FEATS': 3}",
        ),
    ],
    ids=[
        "unknown",
        "missing",
        "float64-for-fp32",
        "float32-for-bytes",
        "int-element",
        "fixed-dim",
        "rank",
        "batch-too-large",
        "batch-disagrees",
    ],
)
def test_prepare_inputs_rejects(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        prepare_inputs(PAIR_METADATA, PAIR_CONFIG, inputs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_prepare_inputs_names_a_missing_batch_dimension() -> None:
    with pytest.raises(InvalidInputError) as info:
        prepare_inputs(MINILM_METADATA, MINILM_CONFIG, {"TEXT": np.array([b"a"], dtype=object)})
    assert str(info.value) == (
        "model 'minilm' input 'TEXT': missing the batch dimension: expected shape [-1, 1] "
        "(batch first), got [1]; a batch of 1 is shape [1, 1]: np.reshape(x, (-1, 1))"
    )


def test_prepare_inputs_names_a_missing_batch_dimension_of_a_wider_input() -> None:
    metadata = ModelMetadata("m", ("1",), "onnx", (TensorSpec("X", "FP32", (-1, 2, 3)),), ())
    config = ModelConfig("m", "", "", 4, (TensorSpec("X", "FP32", (2, 3)),), (), {}, False, {})
    with pytest.raises(InvalidInputError) as info:
        prepare_inputs(metadata, config, {"X": np.zeros((2, 3), dtype=np.float32)})
    assert str(info.value).endswith("got [2, 3]; one row is shape [1, 2, 3]: x[np.newaxis]")


def test_prepare_inputs_rejects_an_empty_batch() -> None:
    with pytest.raises(InvalidInputError) as info:
        prepare_inputs(MINILM_METADATA, MINILM_CONFIG, {"TEXT": np.zeros((0, 1), dtype=object)})
    assert str(info.value) == (
        "model 'minilm' input 'TEXT': an empty batch (shape [0, 1]); send at least one row"
    )


def test_prepare_inputs_names_a_text_that_is_not_utf8() -> None:
    texts = np.array([["ok"], ["bad \udc80 text"]], dtype=object)
    with pytest.raises(InvalidInputError) as info:
        prepare_inputs(MINILM_METADATA, MINILM_CONFIG, {"TEXT": texts})
    assert str(info.value) == (
        "model 'minilm' input 'TEXT' element [1, 0]: not encodable as UTF-8 "
        "(surrogates not allowed at character 4: '\\udc80')"
    )


def test_requested_outputs_are_checked() -> None:
    assert requested_outputs(MINILM_METADATA, None) == ["EMBEDDING"]
    assert requested_outputs(MINILM_METADATA, ["EMBEDDING"]) == ["EMBEDDING"]
    with pytest.raises(InvalidInputError) as info:
        requested_outputs(MINILM_METADATA, ["EMBEDDINGS"])
    assert str(info.value) == (
        "model 'minilm': unknown output(s) 'EMBEDDINGS'; its outputs are 'EMBEDDING'"
    )


FIXED_METADATA = ModelMetadata(
    name="fixed",
    versions=("1",),
    platform="onnxruntime_onnx",
    inputs=(TensorSpec("X", "FP32", (2, 3)), TensorSpec("IDS", "INT64", (-1,))),
    outputs=(),
)
FIXED_CONFIG = ModelConfig(
    name="fixed",
    platform="onnxruntime_onnx",
    backend="",
    max_batch_size=0,
    inputs=(TensorSpec("X", "FP32", (2, 3)), TensorSpec("IDS", "INT64", (-1,))),
    outputs=(),
    parameters={},
    decoupled=False,
    raw={},
)


def test_a_model_without_batching_takes_exact_shapes() -> None:
    inputs = {"X": np.ones((2, 3), dtype=np.float32), "IDS": np.arange(100, dtype=np.int64)}
    x, ids = prepare_inputs(FIXED_METADATA, FIXED_CONFIG, inputs)  # no batch size limit
    assert (x.name, x.datatype, x.array.shape) == ("X", "FP32", (2, 3))
    assert (ids.name, ids.datatype, ids.array.shape) == ("IDS", "INT64", (100,))


@pytest.mark.parametrize(
    ("shape", "given"), [((1, 2, 3), "[1, 2, 3]"), ((3,), "[3]"), ((3, 2), "[3, 2]")]
)
def test_a_model_without_batching_rejects_other_shapes(shape: tuple[int, ...], given: str) -> None:
    inputs = {"X": np.ones(shape, dtype=np.float32), "IDS": np.arange(2, dtype=np.int64)}
    with pytest.raises(InvalidInputError) as info:
        prepare_inputs(FIXED_METADATA, FIXED_CONFIG, inputs)
    assert str(info.value) == f"model 'fixed' input 'X': expected shape [2, 3], got {given}"


def test_prepare_inputs_rejects_a_datatype_without_numpy_equivalent() -> None:
    metadata = ModelMetadata("bf", ("1",), "", (TensorSpec("X", "BF16", (-1, 2)),), ())
    config = ModelConfig("bf", "", "", 4, (TensorSpec("X", "BF16", (2,)),), (), {}, False, {})
    with pytest.raises(InvalidInputError) as info:
        prepare_inputs(metadata, config, {"X": np.zeros((1, 2), dtype=np.float32)})
    assert str(info.value) == (
        "model 'bf' input 'X': datatype BF16 has no numpy equivalent in this client"
    )


@pytest.mark.parametrize("value", [[[b"a\x00"], [b"b"]], [["a\x00"], ["b"]]], ids=["bytes", "str"])
def test_prepare_inputs_keeps_trailing_nul_bytes(value: Any) -> None:
    (tensor,) = prepare_inputs(MINILM_METADATA, MINILM_CONFIG, {"TEXT": value})
    assert tensor.array.tolist() == [[b"a\x00"], [b"b"]]


def test_prepare_inputs_keeps_a_scalar_a_scalar() -> None:
    metadata = ModelMetadata("s", ("1",), "", (TensorSpec("X", "FP32", ()),), ())
    config = ModelConfig("s", "", "", 0, (TensorSpec("X", "FP32", ()),), (), {}, False, {})
    (tensor,) = prepare_inputs(metadata, config, {"X": np.float32(3.0)})
    assert tensor.array.shape == ()


# --- translate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("404", ModelNotFoundError),
        ("StatusCode.NOT_FOUND", ModelNotFoundError),
        ("500", ServerError),
        (None, ServerError),
    ],
)
def test_translate_server_errors_keep_message_and_status(
    status: str | None, kind: type[ServerError]
) -> None:
    message = "Request for unknown model: 'nope' is not found"
    error = translate(InferenceServerException(message, status=status))
    assert type(error) is kind
    assert (error.message, error.status, str(error)) == (message, status, message)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("503", UnavailableError),
        ("429", UnavailableError),
        ("StatusCode.RESOURCE_EXHAUSTED", UnavailableError),
        ("StatusCode.UNAVAILABLE", ConnectError),  # gRPC: the channel cannot reach the server
        ("504", DeadlineExceeded),
        ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceeded),
    ],
)
def test_translate_transport_statuses(status: str, kind: type[TransportError]) -> None:
    error = translate(InferenceServerException("failed to connect", status=status))
    assert type(error) is kind
    assert str(error) == "failed to connect"


@pytest.mark.parametrize("status", ["400", "StatusCode.INVALID_ARGUMENT"])
def test_inputs_the_model_refused_are_invalid_input(status: str) -> None:
    message = "TEXT[0]: not valid UTF-8 (invalid start byte at byte 0)"
    error = translate(InferenceServerException(message, status=status))
    assert type(error) is InvalidInputError
    assert (str(error), error.status) == (message, status)
    assert isinstance(error, ValueError)


def test_a_deadline_is_also_a_timeout_error() -> None:
    error = translate(InferenceServerException("late", status="StatusCode.DEADLINE_EXCEEDED"))
    assert isinstance(error, TimeoutError)


class Boom(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "transport", "kind", "message"),
    [
        (
            ConnectionRefusedError(111, "Connection refused"),
            (),
            ConnectError,
            "ConnectionRefusedError: [Errno 111] Connection refused",
        ),
        (ConnectionResetError("reset"), (), ConnectError, "ConnectionResetError: reset"),
        (TimeoutError("read timed out"), (), DeadlineExceeded, "timed out: read timed out"),
        (TimeoutError(), (), DeadlineExceeded, "timed out"),
        (socket.timeout("timed out"), (), DeadlineExceeded, "timed out: timed out"),  # noqa: UP041
        (Boom("lost"), (Boom,), ConnectError, "Boom: lost"),
        (Boom("lost"), (), ClientError, "Boom: lost"),
        (KeyError("x"), (Boom,), ClientError, "KeyError: 'x'"),
    ],
    ids=[
        "refused",
        "reset",
        "timeout",
        "timeout-empty",
        "socket-timeout",
        "transport-type",
        "unrelated",
        "unrelated-with-transport",
    ],
)
def test_translate_python_exceptions(
    exc: BaseException,
    transport: tuple[type[BaseException], ...],
    kind: type[ClientError],
    message: str,
) -> None:
    error = translate(exc, transport)
    assert type(error) is kind
    assert str(error) == message


@pytest.mark.parametrize(
    "error", [InvalidInputError("bad"), ModelNotFoundError("gone", "404"), ConnectError("down")]
)
def test_translate_passes_client_errors_through(error: ClientError) -> None:
    assert translate(error) is error


@pytest.mark.parametrize(
    ("kind", "parent"),
    [
        (TransportError, ClientError),
        (ConnectError, TransportError),
        (UnavailableError, TransportError),
        (DeadlineExceeded, TransportError),
        (ServerError, ClientError),
        (ModelNotFoundError, ServerError),
        (ModelNotReadyError, ServerError),
        (InvalidInputError, ClientError),
    ],
)
def test_error_tree(kind: type[ClientError], parent: type[ClientError]) -> None:
    assert kind.__bases__[0] is parent
    assert issubclass(kind, ClientError)


# --- refine_not_found -------------------------------------------------------------------------


def test_refine_a_listed_model_as_not_ready() -> None:
    error = refine_not_found(ModelNotFoundError("not found", "404"), "x", INDEX)
    assert type(error) is ModelNotReadyError
    assert str(error) == "model 'x' is not ready (state UNAVAILABLE: unloaded)"
    assert (error.state, error.reason) == ("UNAVAILABLE", "unloaded")


def test_refine_a_listed_model_without_state() -> None:
    index = [RepositoryModel("y", "", "", "")]
    error = refine_not_found(ModelNotFoundError("not found", "404"), "y", index)
    assert type(error) is ModelNotReadyError
    assert str(error) == "model 'y' is not ready (state not loaded)"
    assert (error.state, error.reason) == ("", "")


@pytest.mark.parametrize("index", [INDEX, []])
def test_refine_keeps_not_found_for_an_absent_model(index: list[RepositoryModel]) -> None:
    original = ModelNotFoundError("not found", "404")
    assert refine_not_found(original, "nope", index) is original


def test_refine_keeps_not_found_for_a_ready_model() -> None:
    # e.g. version "2" of minilm was asked for; only version 1 exists and it is READY
    original = ModelNotFoundError("Request for unknown model: 'minilm' version 2", "404")
    assert refine_not_found(original, "minilm", INDEX) is original


# --- retries ----------------------------------------------------------------------------------


def test_backoff_without_jitter_grows_by_the_multiplier_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=2.0, multiplier=2.0, jitter=0.0)
    delays = [policy.backoff(attempt, random.Random(0)) for attempt in range(7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0], rel=1e-12)


def test_backoff_with_jitter_is_the_base_scaled_by_the_seeded_draw() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=2.0, multiplier=3.0, jitter=0.5)
    rng, draws = random.Random(7), random.Random(7)
    for attempt, base in enumerate([0.1, 0.3, 0.9, 2.0, 2.0]):
        delay = policy.backoff(attempt, rng)
        assert delay == pytest.approx(base * (1 - 0.5 * draws.random()), rel=1e-12)
        assert base * 0.5 <= delay <= base


@pytest.mark.parametrize("jitter", [0.0, 0.25, 1.0])
def test_backoff_stays_within_the_jitter_band(jitter: float) -> None:
    policy = RetryPolicy(initial_backoff=0.05, max_backoff=1.0, jitter=jitter)
    rng = random.Random(1)
    for attempt in range(8):
        base = min(1.0, 0.05 * 2.0**attempt)
        for _ in range(50):
            assert base * (1 - jitter) <= policy.backoff(attempt, rng) <= base


def test_connection_failures_are_retried_until_the_deadline_whatever_attempts_says() -> None:
    policy = RetryPolicy(attempts=2, jitter=0.0)
    for tries in range(1, 50):  # tries made so far; none of them counts against attempts
        assert next_delay(policy, ConnectError("down"), tries, 0, 30.0, random.Random(0)) == (
            policy.backoff(tries - 1, random.Random(0))
        )


def test_a_declined_request_is_retried_up_to_attempts() -> None:
    policy = RetryPolicy(attempts=3)
    busy = UnavailableError("busy")
    for counted in (1, 2):
        delay = next_delay(policy, busy, counted, counted, 30.0, random.Random(3))
        assert delay == policy.backoff(counted - 1, random.Random(3))
    assert next_delay(policy, busy, 3, 3, 30.0, random.Random(3)) is None  # 3 tries made


def test_timeouts_are_not_retried_unless_asked() -> None:
    late = DeadlineExceeded("late")
    assert next_delay(RetryPolicy(), late, 1, 1, 30.0, random.Random(0)) is None
    policy = RetryPolicy(attempts=2, retry_timeouts=True)
    assert next_delay(policy, late, 1, 1, 30.0, random.Random(0)) is not None
    assert next_delay(policy, late, 2, 2, 30.0, random.Random(0)) is None


@pytest.mark.parametrize(
    "error",
    [ServerError("boom", "500"), InvalidInputError("bad"), ModelNotFoundError("gone", "404")],
    ids=lambda e: type(e).__name__,
)
def test_next_delay_does_not_retry_other_errors(error: ClientError) -> None:
    assert next_delay(RetryPolicy(), error, 1, 0, 30.0, random.Random(0)) is None


def test_no_retry_policy_never_retries() -> None:
    assert next_delay(NO_RETRY, ConnectError("down"), 1, 0, 30.0, random.Random(0)) is None
    assert (
        next_delay(RetryPolicy(deadline=0), ConnectError("down"), 1, 0, 0.0, random.Random(0))
        is None
    )


@pytest.mark.parametrize(
    ("remaining", "delay"), [(0.6, 0.5), (0.55, 0.5), (0.5, None), (0.1, None), (-1, None)]
)
def test_next_delay_leaves_time_for_the_next_try(remaining: float, delay: float | None) -> None:
    policy = RetryPolicy(initial_backoff=0.5, jitter=0.0)
    assert next_delay(policy, ConnectError("down"), 1, 0, remaining, random.Random(0)) == delay


def test_an_explicit_timeout_extends_the_call_past_the_deadline() -> None:
    assert call_limit(RetryPolicy(deadline=30.0), 120.0) == 120.0
    assert call_limit(RetryPolicy(deadline=30.0), 5.0) == 30.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "RetryPolicy.attempts: must be >= 1, got 0"),
        ({"attempts": 2.5}, "RetryPolicy.attempts: expected an int >= 1, got 2.5"),
        ({"attempts": True}, "RetryPolicy.attempts: expected an int >= 1, got True"),
        ({"deadline": -1}, "RetryPolicy.deadline: must be finite and >= 0, got -1"),
        ({"deadline": float("inf")}, "RetryPolicy.deadline: must be finite and >= 0, got inf"),
        ({"jitter": 1.5}, "RetryPolicy.jitter: must be finite and [0, 1], got 1.5"),
        ({"multiplier": 0.5}, "RetryPolicy.multiplier: must be finite and >= 1, got 0.5"),
        ({"initial_backoff": "1"}, "RetryPolicy.initial_backoff: expected a number, got '1'"),
        (
            {"initial_backoff": 3.0},
            "RetryPolicy.initial_backoff (3) is above max_backoff (2)",
        ),
        ({"retry_timeouts": 1}, "RetryPolicy.retry_timeouts: expected a bool, got 1"),
    ],
)
def test_retry_policy_values_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RetryPolicy(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "timeout: must be a finite number of seconds > 0, got 0"),
        (-1.0, "timeout: must be a finite number of seconds > 0, got -1.0"),
        (float("nan"), "timeout: must be a finite number of seconds > 0, got nan"),
        ("5", "timeout: expected seconds as a number, got '5'"),
        (None, "timeout: expected seconds as a number, got None"),
    ],
)
def test_check_timeout(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_timeout(value)
    assert str(info.value) == message


# --- task helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize("items", [["héllo", "", "b"], ("héllo", "", "b")], ids=["list", "tuple"])
def test_text_array(items: list[str]) -> None:
    array = text_array(items)
    assert (array.shape, array.dtype) == ((3, 1), np.dtype(np.object_))
    assert array.tolist() == [[b"h\xc3\xa9llo"], [b""], [b"b"]]


def test_text_array_takes_any_iterable() -> None:
    array = text_array(text for text in ["a", "b"])
    assert array.tolist() == [[b"a"], [b"b"]]


def test_text_array_of_nothing() -> None:
    array = text_array([])
    assert (array.shape, array.dtype) == ((0, 1), np.dtype(np.object_))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ("hello", "texts: expected a sequence of str, got a single str; wrap it in a list"),
        (b"hello", "texts: expected a sequence of str, got a single bytes; wrap it in a list"),
        (42, "texts: expected a sequence of str, got int"),
        (
            ["a", "\ud800"],
            "texts[1]: not encodable as UTF-8 (surrogates not allowed at character 0: '\\ud800')",
        ),
        (["a", b"b"], "texts[1]: expected str, got bytes"),
        (["a", "b", None], "texts[2]: expected str, got NoneType"),
    ],
)
def test_text_array_rejects(items: Any, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        text_array(items)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("count", "size", "ranges"),
    [
        (0, 32, []),
        (1, 32, [(0, 1)]),
        (32, 32, [(0, 32)]),
        (33, 32, [(0, 32), (32, 33)]),
        (100, 32, [(0, 32), (32, 64), (64, 96), (96, 100)]),
        (3, 0, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_chunks(count: int, size: int, ranges: list[tuple[int, int]]) -> None:
    assert chunks(count, size) == ranges


@pytest.mark.parametrize(
    "labels",
    [np.array([[b"neg"], [b"pos"]], dtype=object), np.array([["neg"], ["pos"]])],
    ids=["bytes", "str"],
)
def test_classifications(labels: np.ndarray[Any, Any]) -> None:
    scores = np.array([[0.75, 0.25], [0.125, 0.875]], dtype=np.float32)
    result = classifications(labels, scores, ["neg", "pos"])
    assert result == [
        Classification("neg", 0.75, {"neg": 0.75, "pos": 0.25}),
        Classification("pos", 0.875, {"neg": 0.125, "pos": 0.875}),
    ]
    assert [list(c.scores) for c in result] == [["neg", "pos"], ["neg", "pos"]]
    assert all(type(c.score) is float for c in result)


# --- wire_inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "raw"),
    [(tritonclient.http, "_get_binary_data"), (tritonclient.grpc, "_get_content")],
    ids=["http", "grpc"],
)
def test_wire_inputs(module: Any, raw: str) -> None:
    tensors = [
        WireTensor("TEXT", "BYTES", np.array([[b"hi"], [b"abc"]], dtype=object)),
        WireTensor("FEATS", "FP32", np.array([[1.0, 2.0]], dtype=np.float32)),
    ]
    text, feat = wire_inputs(module, tensors)
    assert isinstance(text, module.InferInput)
    assert (text.name(), text.shape(), text.datatype()) == ("TEXT", [2, 1], "BYTES")
    assert (feat.name(), feat.shape(), feat.datatype()) == ("FEATS", [1, 2], "FP32")
    assert getattr(text, raw)() == b"\x02\x00\x00\x00hi\x03\x00\x00\x00abc"
    assert getattr(feat, raw)() == np.array([1.0, 2.0], dtype="<f4").tobytes()


# --- pairs, reranking, entities -----------------------------------------------------------------


def test_pair_arrays_need_one_pair_per_text() -> None:
    from clients.core import pair_arrays

    first, second = pair_arrays(["a", "b"], ["c", "d"])
    assert first.tolist() == [[b"a"], [b"b"]] and second.tolist() == [[b"c"], [b"d"]]
    with pytest.raises(InvalidInputError, match="pairs: 1 given for 2 texts: one per text"):
        pair_arrays(["a", "b"], ["c"])
    with pytest.raises(InvalidInputError, match=r"pairs\[0\]: expected str, got int"):
        pair_arrays(["a"], [1])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="pairs: expected a sequence of str"):
        pair_arrays(["a"], "c")


def test_query_array_and_top_k() -> None:
    from clients.core import check_top_k, query_array

    assert query_array("q", 3).tolist() == [[b"q"]] * 3
    assert query_array("q", 0).shape == (0, 1)
    with pytest.raises(InvalidInputError, match="query: expected str, got list"):
        query_array(["q"], 1)  # type: ignore[arg-type]
    assert check_top_k(None) is None and check_top_k(2) == 2
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(InvalidInputError, match="top_k: expected an int >= 1 or None"):
            check_top_k(bad)


def test_rerank_results_best_first_ties_in_document_order() -> None:
    from clients.core import rerank_results
    from clients.types import RerankResult

    scores = np.array([[0.25], [0.75], [0.25], [0.5]], dtype=np.float32)
    documents = ["a", "b", "c", "d"]
    assert rerank_results(scores, documents, None) == [
        RerankResult(1, 0.75, "b"),
        RerankResult(3, 0.5, "d"),
        RerankResult(0, 0.25, "a"),
        RerankResult(2, 0.25, "c"),
    ]
    assert rerank_results(scores, documents, 2) == rerank_results(scores, documents, None)[:2]
    with pytest.raises(ServerError, match="SCORE has 4 values for 3 documents"):
        rerank_results(scores, documents[:3], None)


def test_entities_parse_grouped_and_per_token_json() -> None:
    from clients.core import entities
    from clients.types import Entity

    grouped = '[{"entity_group": "PER", "score": 0.5, "word": "ann", "start": 0, "end": 3}]'
    tokens = '[{"entity": "B-PER", "score": 0.25, "index": 1, "word": "an", "start": 0, "end": 2}]'
    raw = np.array([[grouped.encode()], [b"[]"], [tokens.encode()]], dtype=object)
    assert entities(raw) == [
        [Entity("PER", 0.5, "ann", 0, 3)],
        [],
        [Entity("B-PER", 0.25, "an", 0, 2, index=1)],
    ]
    with pytest.raises(ServerError, match=r"ENTITIES\[0\]: not JSON"):
        entities(np.array([[b"{"]], dtype=object))
    with pytest.raises(ServerError, match=r"ENTITIES\[0\]\[0\]: not an entity"):
        entities(np.array([[b'[{"score": 1}]']], dtype=object))
