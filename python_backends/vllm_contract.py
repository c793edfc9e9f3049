"""The I/O contract of Triton's official ``vllm`` backend, in one neutral place.

The builder renders it into ``config.pbtxt`` (``builder.plan.plan_vllm``); the local vLLM
stand-in (``python_backends/stand_ins/vllm``) serves it; ``clients/llm_core.py`` asks for a
subset of its outputs (a test pins the two together). The build does not import the stand-in.
"""

from __future__ import annotations

__all__ = ["INPUTS", "OUTPUTS"]

INPUTS = (
    # name, Triton type, optional
    ("text_input", "TYPE_STRING", False),
    ("stream", "TYPE_BOOL", True),
    ("sampling_parameters", "TYPE_STRING", True),
    ("exclude_input_in_output", "TYPE_BOOL", True),
    ("return_finish_reason", "TYPE_BOOL", True),
    ("return_cumulative_logprob", "TYPE_BOOL", True),
    ("return_logprobs", "TYPE_BOOL", True),
    ("return_num_input_tokens", "TYPE_BOOL", True),
    ("return_num_output_tokens", "TYPE_BOOL", True),
)
OUTPUTS = (
    ("text_output", "TYPE_STRING", [-1]),
    ("finish_reason", "TYPE_STRING", [-1]),
    ("cumulative_logprob", "TYPE_FP32", [-1]),
    ("logprobs", "TYPE_STRING", [-1]),
    ("num_input_tokens", "TYPE_UINT32", [1]),
    ("num_output_tokens", "TYPE_UINT32", [-1]),
)
