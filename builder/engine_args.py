"""Which vLLM engine arguments a spec's ``engine:`` mapping may use.

When vLLM is importable, the answer is its own ``AsyncEngineArgs`` dataclass (the type the
``vllm`` backend passes ``model.json`` to). Otherwise it is ``DOCUMENTED``, the common
arguments of vLLM 0.32, so that a machine without vLLM still catches typos.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
from collections.abc import Iterable

__all__ = ["DOCUMENTED", "known_engine_args", "unknown_engine_args"]

DOCUMENTED = frozenset(
    {
        "model",
        "tokenizer",
        "tokenizer_mode",
        "revision",
        "tokenizer_revision",
        "trust_remote_code",
        "download_dir",
        "load_format",
        "dtype",
        "kv_cache_dtype",
        "seed",
        "max_model_len",
        "served_model_name",
        "distributed_executor_backend",
        "pipeline_parallel_size",
        "tensor_parallel_size",
        "data_parallel_size",
        "block_size",
        "enable_prefix_caching",
        "gpu_memory_utilization",
        "max_num_batched_tokens",
        "max_num_seqs",
        "max_logprobs",
        "disable_log_stats",
        "quantization",
        "enforce_eager",
        "disable_custom_all_reduce",
        "enable_lora",
        "max_loras",
        "max_lora_rank",
        "enable_chunked_prefill",
        "cpu_offload_gb",
        "hf_overrides",
        "compilation_config",
        "limit_mm_per_prompt",
        "skip_tokenizer_init",
        "speculative_config",
    }
)


@functools.cache
def known_engine_args() -> tuple[frozenset[str], str]:
    """(argument names, where they came from)."""
    if importlib.util.find_spec("vllm") is None:
        return DOCUMENTED, "the documented vLLM 0.32 engine arguments (vLLM is not installed)"
    import vllm
    from vllm.engine.arg_utils import AsyncEngineArgs

    names = frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))
    return names, f"vLLM {vllm.__version__}'s AsyncEngineArgs"


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
