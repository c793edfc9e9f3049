"""Pure request/response logic of the vLLM stand-in backend (no Triton, no vLLM imports).

It implements the I/O contract of Triton's official ``vllm`` backend: inputs ``text_input``,
``stream``, ``sampling_parameters``, ``exclude_input_in_output`` and the ``return_*`` flags;
outputs ``text_output``, ``finish_reason``, ``cumulative_logprob``, ``logprobs``,
``num_input_tokens``, ``num_output_tokens``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # inside Triton: `triton-pack serve` copies the contract beside this file
    from vllm_contract import INPUTS, OUTPUTS
except ImportError:  # imported from the repository (tests)
    from python_backends.vllm_contract import INPUTS, OUTPUTS

__all__ = [
    "INPUTS",
    "OUTPUTS",
    "GenerationRequest",
    "Progress",
    "RequestError",
    "parse_request",
    "response_arrays",
]

_RETURN_FLAGS = {
    "return_finish_reason": "finish_reason",
    "return_cumulative_logprob": "cumulative_logprob",
    "return_logprobs": "logprobs",
    "return_num_input_tokens": "num_input_tokens",
    "return_num_output_tokens": "num_output_tokens",
}


class RequestError(ValueError):
    """A bad request: answered with an error response, other requests go on."""


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    stream: bool
    exclude_input_in_output: bool
    sampling: dict[str, Any]
    extra_outputs: tuple[str, ...]  # outputs asked for besides text_output


def _scalar(inputs: Mapping[str, Any], name: str) -> Any:
    array = inputs.get(name)
    if array is None:
        return None
    flat = np.asarray(array).reshape(-1)
    if flat.size != 1:
        raise RequestError(f"input {name!r}: expected one element, got {flat.size}")
    return flat[0]


def _text(value: Any, name: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(f"input {name!r}: not valid UTF-8 ({exc.reason})") from None
    return str(value)


def _json_object(text: str, where: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RequestError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError(f"{where}: expected a JSON object")
    return data


def parse_request(
    inputs: Mapping[str, Any],
    parameters_json: str,
    check_sampling: Callable[[str, Any], None],
) -> GenerationRequest:
    """Inputs and request parameters -> a GenerationRequest; RequestError names what is wrong.

    Sampling parameters come from the ``sampling_parameters`` JSON input and the request
    parameters (the latter win). ``check_sampling(name, value)`` raises for an unknown name
    or a bad value; the error names the parameter.
    """
    prompt_value = _scalar(inputs, "text_input")
    if prompt_value is None:
        raise RequestError("input 'text_input' is required")
    prompt = _text(prompt_value, "text_input")
    flags = {
        name: bool(_scalar(inputs, name))
        for name, kind, _ in INPUTS
        if kind == "TYPE_BOOL" and _scalar(inputs, name) is not None
    }
    sampling: dict[str, Any] = {}
    raw = _scalar(inputs, "sampling_parameters")
    if raw is not None:
        sampling.update(_json_object(_text(raw, "sampling_parameters"), "sampling_parameters"))
    params = _json_object(parameters_json or "", "request parameters")
    # `stream` may also arrive as a request parameter (the generate endpoint's habit)
    if "stream" in params:
        flags.setdefault("stream", bool(params.pop("stream")))
    sampling.update(params)
    for name, value in sampling.items():
        try:
            check_sampling(name, value)
        except Exception as exc:  # vLLM's validation errors are not all ValueErrors
            raise RequestError(f"sampling parameter {name!r}: {exc}") from None
    extra = tuple(output for flag, output in _RETURN_FLAGS.items() if flags.get(flag))
    return GenerationRequest(
        prompt=prompt,
        stream=flags.get("stream", False),
        exclude_input_in_output=flags.get("exclude_input_in_output", False),
        sampling=sampling,
        extra_outputs=extra,
    )


@dataclass
class Progress:
    """What has been sent so far for one request (streaming sends only what is new)."""

    text_sent: int = 0
    tokens_sent: int = 0
    logprobs_sent: int = 0
    deltas: list[str] = field(default_factory=list)


def _logprobs_json(entries: Any) -> str:
    if entries is None:
        return "null"
    out = []
    for position in entries:
        out.append(
            {
                str(token_id): {
                    "logprob": None if math.isinf(lp.logprob) else float(lp.logprob),
                    "rank": lp.rank,
                    "decoded_token": lp.decoded_token,
                }
                for token_id, lp in position.items()
            }
        )
    return json.dumps(out)


def response_arrays(
    request: GenerationRequest, output: Any, progress: Progress, final: bool
) -> dict[str, np.ndarray[Any, Any]]:
    """Output tensors for one response from a vLLM RequestOutput (cumulative)."""
    completion = output.outputs[0]
    if request.stream:
        text = completion.text[progress.text_sent :]
        new_tokens = len(completion.token_ids) - progress.tokens_sent
        new_logprobs = (
            completion.logprobs[progress.logprobs_sent :] if completion.logprobs else None
        )
    else:
        prefix = "" if request.exclude_input_in_output else (output.prompt or request.prompt)
        text = prefix + completion.text
        new_tokens = len(completion.token_ids)
        new_logprobs = completion.logprobs
    progress.text_sent = len(completion.text)
    progress.tokens_sent = len(completion.token_ids)
    progress.logprobs_sent = len(completion.logprobs or ())
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "text_output": np.array([text.encode("utf-8")], dtype=np.object_)
    }
    for name in request.extra_outputs:
        if name == "finish_reason":
            reason = completion.finish_reason if final else None
            arrays[name] = np.array([str(reason).encode("utf-8")], dtype=np.object_)
        elif name == "cumulative_logprob":
            value = completion.cumulative_logprob
            arrays[name] = np.array([value if value is not None else 0.0], dtype=np.float32)
        elif name == "logprobs":
            arrays[name] = np.array([_logprobs_json(new_logprobs).encode()], dtype=np.object_)
        elif name == "num_input_tokens":
            count = len(output.prompt_token_ids or ())
            arrays[name] = np.array([count], dtype=np.uint32)
        elif name == "num_output_tokens":
            arrays[name] = np.array([new_tokens], dtype=np.uint32)
    return arrays
