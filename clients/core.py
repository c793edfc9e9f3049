"""The clients' core, without I/O: parsing, input checks, tensors, error mapping, retries.

The sync/async x HTTP/gRPC shells only move bytes; everything they share lives here and is
unit-tested without a server. Streaming (gRPC bidirectional streams, HTTP SSE) will add a
transport method that yields response dicts; parsing, checks and errors stay here.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clients.errors import (
    ClientError,
    ConfigurationError,
    ConnectError,
    DeadlineExceeded,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServerError,
    UnavailableError,
)
from clients.types import (
    Classification,
    Entity,
    ModelConfig,
    ModelMetadata,
    RepositoryModel,
    RerankResult,
    ServerMetadata,
    TensorSpec,
)

__all__ = [
    "MIN_ATTEMPT_SECONDS",
    "NO_RETRY",
    "NUMPY_DTYPES",
    "RetryPolicy",
    "WireTensor",
    "call_limit",
    "check_timeout",
    "check_top_k",
    "chunks",
    "classifications",
    "counts_as_attempt",
    "entities",
    "error_for_status",
    "next_delay",
    "pair_arrays",
    "parse_model_config",
    "parse_model_metadata",
    "parse_repository_index",
    "parse_server_metadata",
    "prepare_inputs",
    "query_array",
    "refine_not_found",
    "requested_outputs",
    "rerank_results",
    "text_array",
    "translate",
    "wire_inputs",
]

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

# --- parsing what the server reports (HTTP JSON and gRPC as_json differ slightly) ---------


def _dims(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)  # gRPC JSON spells int64 as strings


def parse_server_metadata(data: Mapping[str, Any]) -> ServerMetadata:
    return ServerMetadata(
        name=str(data.get("name", "")),
        version=str(data.get("version", "")),
        extensions=tuple(data.get("extensions", ())),
    )


def _tensor(data: Mapping[str, Any]) -> TensorSpec:
    return TensorSpec(str(data["name"]), str(data["datatype"]), _dims(data.get("shape", ())))


def parse_model_metadata(data: Mapping[str, Any]) -> ModelMetadata:
    return ModelMetadata(
        name=str(data["name"]),
        versions=tuple(str(v) for v in data.get("versions", ())),
        platform=str(data.get("platform", "")),
        inputs=tuple(_tensor(t) for t in data.get("inputs", ())),
        outputs=tuple(_tensor(t) for t in data.get("outputs", ())),
    )


def _config_tensor(data: Mapping[str, Any]) -> TensorSpec:
    datatype = str(data.get("data_type", "TYPE_INVALID")).removeprefix("TYPE_")
    return TensorSpec(
        name=str(data["name"]),
        datatype="BYTES" if datatype == "STRING" else datatype,
        shape=_dims(data.get("dims", ())),
        optional=bool(data.get("optional", False)),
    )


def parse_model_config(data: Mapping[str, Any]) -> ModelConfig:
    config = data.get("config", data)  # gRPC wraps it
    parameters = {
        str(k): str(v.get("string_value", "")) for k, v in config.get("parameters", {}).items()
    }
    policy = config.get("model_transaction_policy", {})
    return ModelConfig(
        name=str(config["name"]),
        platform=str(config.get("platform", "")),
        backend=str(config.get("backend", "")),
        max_batch_size=int(config.get("max_batch_size", 0)),
        inputs=tuple(_config_tensor(t) for t in config.get("input", ())),
        outputs=tuple(_config_tensor(t) for t in config.get("output", ())),
        parameters=parameters,
        decoupled=bool(policy.get("decoupled", False)),
        raw=dict(config),
    )


def parse_repository_index(data: Any) -> list[RepositoryModel]:
    entries = data.get("models", []) if isinstance(data, Mapping) else data
    return [
        RepositoryModel(
            name=str(e.get("name", "")),
            version=str(e.get("version", "")),
            state=str(e.get("state", "")),
            reason=str(e.get("reason", "")),
        )
        for e in entries
    ]


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireTensor:
    """An input ready to send: checked against the model's metadata."""

    name: str
    datatype: str
    array: npt.NDArray[Any]


def _as_bytes_array(model: str, name: str, array: npt.NDArray[Any]) -> npt.NDArray[np.object_]:
    if array.dtype.kind in ("U", "S"):
        array = array.astype(np.object_)
    if array.dtype != np.object_:
        raise InvalidInputError(
            f"model {model!r} input {name!r}: expected BYTES (str or bytes), got {array.dtype}"
        )
    out = np.empty(array.shape, dtype=np.object_)
    for index, item in np.ndenumerate(array):
        if isinstance(item, str):
            out[index] = _utf8(item, f"model {model!r} input {name!r} element {list(index)}")
        elif isinstance(item, bytes):
            out[index] = item
        else:
            raise InvalidInputError(
                f"model {model!r} input {name!r}: expected BYTES (str or bytes), got an "
                f"element of type {type(item).__name__}"
            )
    return out


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{where}: not encodable as UTF-8 ({exc.reason} at character {exc.start}: "
            f"{text[exc.start : exc.end]!r})"
        ) from None


def _check_shape(model: str, spec: TensorSpec, shape: tuple[int, ...], max_batch_size: int) -> None:
    expected = list(spec.shape)
    if max_batch_size > 0 and len(shape) == len(expected) - 1:
        if expected[1:] == [1] and len(shape) == 1:
            hint = f"a batch of {shape[0]} is shape [{shape[0]}, 1]: np.reshape(x, (-1, 1))"
        else:
            hint = f"one row is shape {[1, *shape]}: x[np.newaxis]"
        raise InvalidInputError(
            f"model {model!r} input {spec.name!r}: missing the batch dimension: expected shape "
            f"{expected} (batch first), got {list(shape)}; {hint}"
        )
    if len(shape) != len(expected) or any(
        want not in (-1, have) for want, have in zip(expected, shape, strict=True)
    ):
        raise InvalidInputError(
            f"model {model!r} input {spec.name!r}: expected shape {expected}, got {list(shape)}"
        )
    if max_batch_size > 0 and shape[0] == 0:
        raise InvalidInputError(
            f"model {model!r} input {spec.name!r}: an empty batch (shape {list(shape)}); "
            "send at least one row"
        )
    if max_batch_size > 0 and shape[0] > max_batch_size:
        raise InvalidInputError(
            f"model {model!r} input {spec.name!r}: batch of {shape[0]} exceeds the model's "
            f"max_batch_size {max_batch_size}"
        )


def _prepare_one(model: str, spec: TensorSpec, value: Any, max_batch_size: int) -> WireTensor:
    if isinstance(value, np.ndarray):
        array = value
    elif spec.datatype == "BYTES":
        # not np.asarray: a fixed-width bytes array would drop trailing NUL bytes
        array = np.array(value, dtype=np.object_)
    else:
        array = np.asarray(value)
    if spec.datatype == "BYTES":
        array = _as_bytes_array(model, spec.name, array)
    else:
        expected = NUMPY_DTYPES.get(spec.datatype)
        if expected is None:
            raise InvalidInputError(
                f"model {model!r} input {spec.name!r}: datatype {spec.datatype} has no numpy "
                "equivalent in this client"
            )
        if array.dtype != expected:
            raise InvalidInputError(
                f"model {model!r} input {spec.name!r}: expected {spec.datatype} ({expected}), "
                f"got {array.dtype}"
            )
    _check_shape(model, spec, tuple(array.shape), max_batch_size)
    # np.ascontiguousarray would turn a 0-d array into shape (1,)
    contiguous = array if array.flags.c_contiguous else np.ascontiguousarray(array)
    return WireTensor(spec.name, spec.datatype, contiguous)


def prepare_inputs(
    metadata: ModelMetadata, config: ModelConfig, inputs: Mapping[str, Any]
) -> list[WireTensor]:
    """Check ``inputs`` against the model (names, dtypes, shapes, batch); nothing is sent."""
    model = metadata.name
    specs = {spec.name: spec for spec in metadata.inputs}
    optional = {spec.name for spec in config.inputs if spec.optional}
    unknown = sorted(set(inputs) - set(specs))
    if unknown:
        raise InvalidInputError(
            f"model {model!r}: unknown input(s) {', '.join(map(repr, unknown))}; "
            f"its inputs are {', '.join(map(repr, specs))}"
        )
    missing = [name for name in specs if name not in inputs and name not in optional]
    if missing:
        raise InvalidInputError(
            f"model {model!r}: missing input(s) {', '.join(map(repr, missing))}"
        )
    tensors = [
        _prepare_one(model, specs[name], value, config.max_batch_size)
        for name, value in inputs.items()
    ]
    if config.max_batch_size > 0:
        sizes = {t.name: t.array.shape[0] for t in tensors}
        if len(set(sizes.values())) > 1:
            raise InvalidInputError(f"model {model!r}: inputs disagree on batch size: {sizes}")
    return tensors


def requested_outputs(metadata: ModelMetadata, outputs: Sequence[str] | None) -> list[str]:
    """The output names to ask for: all of the model's, or the given ones checked."""
    known = [spec.name for spec in metadata.outputs]
    if outputs is None:
        return known
    if isinstance(outputs, str):
        outputs = [outputs]
    names = list(outputs)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidInputError(
            f"model {metadata.name!r}: unknown output(s) {', '.join(map(repr, unknown))}; "
            f"its outputs are {', '.join(map(repr, known))}"
        )
    return names


def wire_inputs(module: Any, tensors: Sequence[WireTensor]) -> list[Any]:
    """``InferInput`` objects of ``module`` (tritonclient.http or tritonclient.grpc)."""
    wired = []
    for tensor in tensors:
        item = module.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
        item.set_data_from_numpy(tensor.array)
        wired.append(item)
    return wired


# --- errors ---------------------------------------------------------------------------------

_NOT_FOUND = {"404", "StatusCode.NOT_FOUND"}
_UNAVAILABLE = {"429", "503", "StatusCode.RESOURCE_EXHAUSTED"}
# gRPC says UNAVAILABLE when the channel cannot reach the server (refused, reset, restarting)
_UNREACHABLE = {"StatusCode.UNAVAILABLE"}
_DEADLINE = {"504", "StatusCode.DEADLINE_EXCEEDED"}
_INVALID = {"400", "StatusCode.INVALID_ARGUMENT"}


def error_for_status(status: str | None, message: str) -> ClientError:
    """The error for a server's status (HTTP code or gRPC status name) and message."""
    if status in _NOT_FOUND:
        return ModelNotFoundError(message, status)
    if status in _UNREACHABLE:
        return ConnectError(message)
    if status in _UNAVAILABLE:
        return UnavailableError(message)
    if status in _DEADLINE:
        return DeadlineExceeded(message)
    if status in _INVALID:
        return InvalidInputError(message, status)
    return ServerError(message, status)


def translate(exc: BaseException, transport: tuple[type[BaseException], ...] = ()) -> ClientError:
    """The one place third-party exceptions become ours (by type and status, not text)."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded(f"timed out: {exc}" if str(exc) else "timed out")
    status_method = getattr(exc, "status", None)
    message_method = getattr(exc, "message", None)
    if callable(status_method) and callable(message_method):  # InferenceServerException
        raw_status = status_method()
        status = str(raw_status) if raw_status is not None else None
        raw_message = message_method()
        message = str(raw_message) if raw_message else f"server error (status {status})"
        return error_for_status(status, message)
    if isinstance(exc, (OSError, *transport)):
        return ConnectError(f"{type(exc).__name__}: {exc}")
    return ClientError(f"{type(exc).__name__}: {exc}")


def refine_not_found(
    error: ModelNotFoundError,
    model: str,
    index: Sequence[RepositoryModel],
    version: str = "",
) -> ServerError:
    """NOT_FOUND for a model (version) that the index lists but not as READY: not ready."""
    for entry in index:
        if entry.name != model or (version and entry.version and entry.version != version):
            continue
        if entry.state == "READY":
            return error  # e.g. a version that does not exist: still "not found"
        shown = entry.state or "not loaded"
        detail = f": {entry.reason}" if entry.reason else ""
        return ModelNotReadyError(
            f"model {model!r} is not ready (state {shown}{detail})",
            entry.state,
            entry.reason,
            status=error.status,
        )
    return error


# --- retries --------------------------------------------------------------------------------


def _finite(name: str, value: object, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"RetryPolicy.{name}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        shown = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        raise ConfigurationError(f"RetryPolicy.{name}: must be finite and {shown}, got {value!r}")
    return number


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures a call retries, how long it waits between tries, and for how long.

    - ``ConnectError`` (the server could not be reached: refused, reset, gRPC UNAVAILABLE)
      is retried until ``deadline`` seconds after the call started; ``attempts`` does not
      end a server restart early.
    - ``UnavailableError`` (HTTP 503/429, gRPC RESOURCE_EXHAUSTED: the server declined the
      request) is retried too, but at most ``attempts`` tries in all.
    - ``DeadlineExceeded`` (the call's ``timeout`` ran out; the server may have run the
      request) is not retried unless ``retry_timeouts``; then it counts like the above.
    - An explicit ``timeout`` longer than ``deadline`` is honoured: the first try always gets
      its whole timeout, and retries may go on until ``max(deadline, timeout)``.

    Waits grow from ``initial_backoff`` by ``multiplier`` up to ``max_backoff``, each scaled
    by a random factor in ``[1 - jitter, 1]``. ``RetryPolicy(deadline=0)`` never retries.
    """

    attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5
    deadline: float = 30.0  # seconds for one call, all tries and waits included
    retry_timeouts: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError(
                f"RetryPolicy.attempts: expected an int >= 1, got {self.attempts!r}"
            )
        if self.attempts < 1:
            raise ConfigurationError(f"RetryPolicy.attempts: must be >= 1, got {self.attempts}")
        _finite("initial_backoff", self.initial_backoff, 0.0)
        _finite("max_backoff", self.max_backoff, 0.0)
        _finite("multiplier", self.multiplier, 1.0)
        _finite("jitter", self.jitter, 0.0, 1.0)
        _finite("deadline", self.deadline, 0.0)
        if self.initial_backoff > self.max_backoff:
            raise ConfigurationError(
                f"RetryPolicy.initial_backoff ({self.initial_backoff:g}) is above "
                f"max_backoff ({self.max_backoff:g})"
            )
        if not isinstance(self.retry_timeouts, bool):
            raise ConfigurationError(
                f"RetryPolicy.retry_timeouts: expected a bool, got {self.retry_timeouts!r}"
            )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())


NO_RETRY = RetryPolicy(attempts=1, deadline=0.0)
MIN_ATTEMPT_SECONDS = 0.05  # a retry is not started with less time than this left


def counts_as_attempt(policy: RetryPolicy, error: ClientError) -> bool | None:
    """Whether a retry of ``error`` is bounded by ``attempts`` (True), only by the deadline
    (False), or not allowed at all (None)."""
    if isinstance(error, ConnectError):
        return False
    if isinstance(error, UnavailableError):
        return True
    if isinstance(error, DeadlineExceeded) and policy.retry_timeouts:
        return True
    return None


def next_delay(
    policy: RetryPolicy,
    error: ClientError,
    tries: int,
    counted: int,
    remaining: float,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before trying again, or None to raise ``error`` now.

    ``tries``: tries made so far (sets the backoff); ``counted``: how many of them count
    against ``policy.attempts`` (this one included); ``remaining``: seconds left in the call.
    """
    counts = counts_as_attempt(policy, error)
    if policy.deadline <= 0 or counts is None or (counts and counted >= policy.attempts):
        return None
    delay = policy.backoff(tries - 1, rng)
    return delay if delay + MIN_ATTEMPT_SECONDS <= remaining else None


def call_limit(policy: RetryPolicy, timeout: float) -> float:
    """Seconds one call may take in all: the deadline, grown to cover an explicit timeout."""
    return max(policy.deadline, timeout)


def check_timeout(timeout: object, what: str = "timeout") -> float:
    """A timeout in seconds: a finite number > 0 (0 is not "the default")."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigurationError(f"{what}: expected seconds as a number, got {timeout!r}")
    seconds = float(timeout)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{what}: must be a finite number of seconds > 0, got {timeout!r}")
    return seconds


# --- task helpers ---------------------------------------------------------------------------


def text_array(texts: Iterable[str], what: str = "texts") -> npt.NDArray[np.object_]:
    """Texts (any iterable of str) as a [n, 1] BYTES array: the TEXT input of the contracts.
    ``what`` names the argument in errors."""
    if isinstance(texts, str | bytes):
        raise InvalidInputError(
            f"{what}: expected a sequence of str, got a single {type(texts).__name__}; "
            "wrap it in a list"
        )
    try:
        items = list(texts)
    except TypeError:
        raise InvalidInputError(
            f"{what}: expected a sequence of str, got {type(texts).__name__}"
        ) from None
    array = np.empty((len(items), 1), dtype=np.object_)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidInputError(f"{what}[{index}]: expected str, got {type(text).__name__}")
        array[index, 0] = _utf8(text, f"{what}[{index}]")
    return array


def chunks(count: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``count`` items in pieces of at most ``size``."""
    step = max(1, size)
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def classifications(
    labels: npt.NDArray[Any], scores: npt.NDArray[np.float32], names: Sequence[str]
) -> list[Classification]:
    if scores.ndim != 2 or scores.shape[1] != len(names):
        raise ServerError(f"SCORES has shape {list(scores.shape)} for {len(names)} labels")
    out = []
    for row_label, row_scores in zip(labels.reshape(-1), scores, strict=True):
        label = row_label.decode("utf-8") if isinstance(row_label, bytes) else str(row_label)
        by_label = {name: float(s) for name, s in zip(names, row_scores, strict=True)}
        if label not in by_label:
            raise ServerError(f"LABEL {label!r} is not one of the model's labels {list(names)}")
        out.append(Classification(label, by_label[label], by_label))
    return out


def pair_arrays(
    texts: Iterable[str], pairs: Iterable[str], what: tuple[str, str] = ("texts", "pairs")
) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
    """Two [n, 1] BYTES arrays, row i of both one pair; their lengths must agree."""
    first, second = text_array(texts, what[0]), text_array(pairs, what[1])
    if len(first) != len(second):
        raise InvalidInputError(
            f"{what[1]}: {len(second)} given for {len(first)} {what[0]}: one per text"
        )
    return first, second


def query_array(query: str, count: int) -> npt.NDArray[np.object_]:
    """``query`` repeated on ``count`` rows, as a [count, 1] BYTES array (the QUERY input)."""
    if not isinstance(query, str):
        raise InvalidInputError(f"query: expected str, got {type(query).__name__}")
    array = np.empty((count, 1), dtype=np.object_)
    array[:, 0] = _utf8(query, "query")
    return array


def check_top_k(top_k: object) -> int | None:
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k: expected an int >= 1 or None, got {top_k!r}")
    return top_k


def rerank_results(
    scores: npt.NDArray[np.float32], documents: Sequence[str], top_k: int | None
) -> list[RerankResult]:
    """Documents with their scores, best first (equal scores keep the documents' order)."""
    flat = scores.reshape(-1)
    if len(flat) != len(documents):
        raise ServerError(f"SCORE has {len(flat)} values for {len(documents)} documents")
    order = sorted(range(len(flat)), key=lambda i: -float(flat[i]))
    return [RerankResult(i, float(flat[i]), documents[i]) for i in order[:top_k]]


def _entity(item: Any, where: str) -> Entity:
    try:
        label = item["entity_group"] if "entity_group" in item else item["entity"]
        index = item.get("index")
        return Entity(
            label=str(label),
            score=float(item["score"]),
            word=str(item["word"]),
            start=int(item["start"]),
            end=int(item["end"]),
            index=None if index is None else int(index),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ServerError(f"{where}: not an entity: {item!r}") from None


def entities(raw: npt.NDArray[Any]) -> list[list[Entity]]:
    """The ENTITIES output ([n, 1] BYTES, a JSON list per text) as Entity lists."""
    out = []
    for row, value in enumerate(raw.reshape(-1)):
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        try:
            items = json.loads(text)
        except ValueError:
            raise ServerError(f"ENTITIES[{row}]: not JSON: {text[:80]!r}") from None
        if not isinstance(items, list):
            raise ServerError(f"ENTITIES[{row}]: expected a JSON list, got {text[:80]!r}")
        out.append([_entity(item, f"ENTITIES[{row}][{i}]") for i, item in enumerate(items)])
    return out
