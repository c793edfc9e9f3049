"""Which vLLM engine arguments a spec's ``engine:`` mapping may use.

When vLLM is importable, the answer is its own ``AsyncEngineArgs`` dataclass (the type the
``vllm`` backend passes ``model.json`` to): its field names and field types. Otherwise it is
``DOCUMENTED_TYPES``, the common arguments of vLLM 0.32 with their types, so that a machine
without vLLM still catches typos and values of the wrong type (``max_model_len: "lots"``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import importlib.util
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

__all__ = [
    "DOCUMENTED",
    "DOCUMENTED_TYPES",
    "engine_arg_types",
    "known_engine_args",
    "mistyped_engine_args",
    "unknown_engine_args",
]

_DTYPES = Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
# The common arguments of vLLM 0.32 and their types, as AsyncEngineArgs declares them.
DOCUMENTED_TYPES: dict[str, Any] = {
    "model": str,
    "tokenizer": str | None,
    "tokenizer_mode": str,
    "revision": str | None,
    "tokenizer_revision": str | None,
    "trust_remote_code": bool,
    "download_dir": str | None,
    "load_format": str,
    "dtype": _DTYPES,
    "kv_cache_dtype": str,
    "seed": int | None,
    "max_model_len": int | None,
    "served_model_name": str | list[str] | None,
    "distributed_executor_backend": str | None,
    "pipeline_parallel_size": int,
    "tensor_parallel_size": int,
    "data_parallel_size": int,
    "block_size": int | None,
    "enable_prefix_caching": bool | None,
    "gpu_memory_utilization": float,
    "max_num_batched_tokens": int | None,
    "max_num_seqs": int | None,
    "max_logprobs": int,
    "disable_log_stats": bool,
    "quantization": str | None,
    "enforce_eager": bool,
    "disable_custom_all_reduce": bool,
    "enable_lora": bool,
    "max_loras": int,
    "max_lora_rank": int,
    "enable_chunked_prefill": bool | None,
    "cpu_offload_gb": float,
    "hf_overrides": dict[str, Any] | None,
    "compilation_config": dict[str, Any] | int | str | None,
    "limit_mm_per_prompt": dict[str, Any] | None,
    "skip_tokenizer_init": bool,
    "speculative_config": dict[str, Any] | None,
}
DOCUMENTED = frozenset(DOCUMENTED_TYPES)


@functools.cache
def engine_arg_types() -> tuple[dict[str, Any], str]:
    """(argument name -> declared type, where they came from)."""
    if importlib.util.find_spec("vllm") is None:
        return (
            DOCUMENTED_TYPES,
            "the documented vLLM 0.32 engine arguments (vLLM is not installed)",
        )
    import vllm
    from vllm.engine.arg_utils import AsyncEngineArgs

    types = {f.name: f.type for f in dataclasses.fields(AsyncEngineArgs)}
    return types, f"vLLM {vllm.__version__}'s AsyncEngineArgs"


def known_engine_args() -> tuple[frozenset[str], str]:
    """(argument names, where they came from)."""
    types, origin = engine_arg_types()
    return frozenset(types), origin


def unknown_engine_args(keys: Iterable[str]) -> list[str]:
    """One message per unknown key, with the closest known names."""
    names, origin = known_engine_args()
    messages = []
    for key in keys:
        if key in names:
            continue
        close = difflib.get_close_matches(key, sorted(names), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        messages.append(f"unknown vLLM engine argument {key!r} (checked against {origin}){hint}")
    return messages


def _is_number(value: object, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, int | float)


def matches(value: object, declared: Any) -> bool:
    """Whether a YAML value fits a declared field type; types it cannot judge pass."""
    origin = typing.get_origin(declared)
    args = typing.get_args(declared)
    if declared is Any or declared is object or isinstance(declared, str | typing.ForwardRef):
        return True
    if declared is type(None) or declared is None:
        return value is None
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin is typing.Union or origin is types.UnionType:
        return any(matches(value, arg) for arg in args)
    if declared in (int, float):
        return _is_number(value, declared)
    if declared in (bool, str):
        return isinstance(value, declared)
    if declared in (dict, list, tuple):
        return isinstance(value, dict if declared is dict else list)
    return _matches_generic(value, origin, args)


def _matches_generic(value: object, origin: Any, args: tuple[Any, ...]) -> bool:
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        return len(args) != 2 or all(matches(v, args[1]) for v in value.values())
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        if not isinstance(value, list):
            return False
        return len(args) != 1 or all(matches(v, args[0]) for v in value)
    # a YAML value is never callable; a config class or anything else: vLLM judges it
    return origin is not collections.abc.Callable


def describe(declared: Any) -> str:
    """A short human name of a declared type: ``int | None``, ``one of 'auto', 'half'``."""
    origin = typing.get_origin(declared)
    args = typing.get_args(declared)
    if origin is Literal:
        shown = ", ".join(repr(arg) for arg in args[:8])
        return f"one of {shown}" + (", ..." if len(args) > 8 else "")
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(describe(arg) for arg in args)
    if declared is type(None):
        return "null"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return "mapping" if name in ("dict", "Mapping") else name
    return getattr(declared, "__name__", str(declared))


def mistyped_engine_args(engine: Mapping[str, Any]) -> list[str]:
    """One message per known argument whose value does not fit its declared type."""
    declared, origin = engine_arg_types()
    messages = []
    for key, value in engine.items():
        if key == "model" or key not in declared or matches(value, declared[key]):
            continue
        shown = json.dumps(value, default=str)
        messages.append(
            f"vLLM engine argument {key!r} must be {describe(declared[key])}, got {shown} "
            f"(checked against {origin})"
        )
    return messages
