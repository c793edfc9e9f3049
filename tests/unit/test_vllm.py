"""vLLM models without vLLM: spec rules, the rendered entry (golden files) and llm_ops."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from builder.engine_args import (
    DOCUMENTED,
    DOCUMENTED_TYPES,
    describe,
    matches,
    mistyped_engine_args,
    unknown_engine_args,
)
from builder.errors import SpecError
from builder.plan import plan_vllm
from builder.render import render_vllm
from builder.spec import parse_spec
from python_backends.stand_ins.vllm import llm_ops

ROOT = Path(__file__).resolve().parent.parent.parent

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "vllm"
SPEC = """\
models:
  - name: llm
    task: text-generation
    backend: vllm
    engine:
      model: /models/tiny-llama
      dtype: float32
      max_model_len: 256
      enforce_eager: true
      gpu_memory_utilization: 0.5
"""


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, Path("models.yaml"))
    return str(caught.value)


def rendered() -> tuple[str, str]:
    spec = parse_spec(SPEC, Path("models.yaml"))
    plan = plan_vllm(spec.models[0])
    return render_vllm(plan, "models.yaml")["llm"], plan.model_json


def test_config_and_model_json_match_golden_files() -> None:
    config, model_json = rendered()
    assert config == (GOLDEN / "llm.pbtxt").read_text(encoding="utf-8")
    assert model_json == (GOLDEN / "llm.model.json").read_text(encoding="utf-8")


def test_config_is_the_ngc_vllm_contract() -> None:
    config = text_format.Parse(rendered()[0], model_config_pb2.ModelConfig())
    assert (config.backend, config.max_batch_size) == ("vllm", 0)
    assert config.model_transaction_policy.decoupled is True
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (1, model_config_pb2.ModelInstanceGroup.KIND_MODEL)
    ]
    inputs = {i.name: i for i in config.input}
    assert list(inputs) == [
        "text_input",
        "stream",
        "sampling_parameters",
        "exclude_input_in_output",
        "return_finish_reason",
        "return_cumulative_logprob",
        "return_logprobs",
        "return_num_input_tokens",
        "return_num_output_tokens",
    ]
    assert inputs["text_input"].data_type == model_config_pb2.TYPE_STRING
    assert not inputs["text_input"].optional
    assert all(i.optional for name, i in inputs.items() if name != "text_input")
    outputs = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    assert outputs == {
        "text_output": (model_config_pb2.TYPE_STRING, [-1]),
        "finish_reason": (model_config_pb2.TYPE_STRING, [-1]),
        "cumulative_logprob": (model_config_pb2.TYPE_FP32, [-1]),
        "logprobs": (model_config_pb2.TYPE_STRING, [-1]),
        "num_input_tokens": (model_config_pb2.TYPE_UINT32, [1]),
        "num_output_tokens": (model_config_pb2.TYPE_UINT32, [-1]),
    }
    assert config.parameters["REPORT_CUSTOM_METRICS"].string_value == "true"


def test_model_json_is_the_engine_mapping_verbatim() -> None:
    assert json.loads(rendered()[1]) == {
        "dtype": "float32",
        "enforce_eager": True,
        "gpu_memory_utilization": 0.5,
        "max_model_len": 256,
        "model": "/models/tiny-llama",
    }


def test_report_metrics_false() -> None:
    spec = parse_spec(
        SPEC.replace("    backend: vllm\n", "    backend: vllm\n    report_metrics: false\n"),
        Path("m.yaml"),
    )
    config = render_vllm(plan_vllm(spec.models[0]), "m.yaml")["llm"]
    assert 'string_value: "false"' in config


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("max_batch_size: 8", "'max_batch_size' is not allowed on a vLLM model: vLLM batches"),
        ("dynamic_batching: {max_queue_delay_us: 10}", "'dynamic_batching' is not allowed"),
        ("instances: 2", "'instances' is not allowed on a vLLM model"),
        (
            "source: ./m",
            "'source' is not allowed on a vLLM model: the vllm backend loads engine.model",
        ),
        ("max_sequence_length: 64", "use engine.max_model_len"),
        ("labels: [a]", "'labels' is not allowed"),
    ],
)
def test_batching_and_encoder_keys_are_rejected_with_the_reason(key: str, reason: str) -> None:
    text = SPEC.replace("    backend: vllm\n", f"    backend: vllm\n    {key}\n")
    message = spec_error(text)
    assert "models.yaml: models[0] (model 'llm'): " in message
    assert reason in message


def test_unknown_engine_argument_is_named_with_a_suggestion() -> None:
    message = spec_error(SPEC.replace("max_model_len", "max_modle_len"))
    assert "models[0].engine (model 'llm'): unknown vLLM engine argument 'max_modle_len'" in message
    assert "did you mean max_model_len" in message


def test_engine_needs_a_model() -> None:
    message = spec_error(SPEC.replace("      model: /models/tiny-llama\n", ""))
    assert "'model' is required" in message


def test_generation_needs_backend_vllm_and_engine() -> None:
    assert "task text-generation needs backend: vllm" in spec_error(
        SPEC.replace("    backend: vllm\n", "")
    )
    no_engine = "models:\n  - {name: llm, task: text-generation, backend: vllm}\n"
    assert "backend vllm needs an 'engine' mapping" in spec_error(no_engine)
    encoder = "models:\n  - {name: e, task: text-embedding, source: x, backend: vllm}\n"
    assert "backend 'vllm' serves only task text-generation" in spec_error(encoder)


def test_documented_engine_arguments() -> None:
    assert unknown_engine_args(["model", "dtype", "tensor_parallel_size"]) == []
    assert {"model", "enable_prefix_caching", "quantization"} <= DOCUMENTED


@pytest.mark.parametrize(
    ("value", "declared", "fits"),
    [
        (4096, int, True),
        ("lots", int, False),
        (True, int, False),  # YAML `true` is not a count
        (0.85, float, True),
        (1, float, True),
        (None, int | None, True),
        ("bfloat16", DOCUMENTED_TYPES["dtype"], True),
        ("fp99", DOCUMENTED_TYPES["dtype"], False),
        (["a", "b"], str | list[str] | None, True),
        ([1], list[str], False),
        ({"level": 3}, dict[str, Any] | int | str | None, True),
        ({"a": 1}, dict[str, int], True),
        ({"a": "x"}, dict[str, int], False),
        ("x", "SomeForwardRef", True),  # types it cannot judge pass
    ],
)
def test_engine_value_types(value: Any, declared: Any, fits: bool) -> None:
    assert matches(value, declared) is fits


def test_type_descriptions() -> None:
    assert describe(int | None) == "int | null"
    assert describe(DOCUMENTED_TYPES["dtype"]) == (
        "one of 'auto', 'half', 'float16', 'bfloat16', 'float', 'float32'"
    )
    assert describe(dict[str, Any]) == "mapping"


def test_a_mistyped_engine_value_is_named_with_its_type() -> None:
    message = spec_error(SPEC.replace("max_model_len: 256", 'max_model_len: "lots"'))
    assert "models[0].engine (model 'llm'): vLLM engine argument 'max_model_len' must be " in (
        message
    )
    assert 'got "lots" (checked against ' in message


def test_documented_types_cover_every_documented_argument() -> None:
    assert set(DOCUMENTED_TYPES) == DOCUMENTED
    ok = {"model": "m", "max_model_len": 8, "enforce_eager": True, "dtype": "float32"}
    assert mistyped_engine_args(ok) == []


# --- llm_ops: the stand-in's pure request/response logic -------------------------------------


def accept(name: str, value: Any) -> None:
    """A sampling check that knows two parameters."""
    if name not in ("temperature", "max_tokens"):
        raise TypeError(f"Unexpected keyword argument {name!r}")
    if name == "temperature" and value < 0:
        raise ValueError("temperature must be non-negative")


def one(value: Any) -> np.ndarray:
    return np.array([value], dtype=np.object_ if isinstance(value, bytes | str) else None)


def test_parse_request_merges_json_input_and_parameters() -> None:
    inputs = {
        "text_input": one(b"hello"),
        "stream": np.array([True]),
        "sampling_parameters": one(b'{"temperature": 0.5, "max_tokens": 4}'),
        "return_finish_reason": np.array([True]),
        "return_num_output_tokens": np.array([False]),
    }
    request = llm_ops.parse_request(inputs, '{"max_tokens": 9}', accept)
    assert request.prompt == "hello"
    assert request.stream is True
    assert request.exclude_input_in_output is False
    assert request.sampling == {"temperature": 0.5, "max_tokens": 9}
    assert request.extra_outputs == ("finish_reason",)


def test_parse_request_stream_as_a_parameter() -> None:
    request = llm_ops.parse_request({"text_input": one(b"x")}, '{"stream": true}', accept)
    assert request.stream is True
    assert request.sampling == {}


@pytest.mark.parametrize(
    ("inputs", "params", "message"),
    [
        ({}, "", "input 'text_input' is required"),
        ({"text_input": one(b"\xff")}, "", "input 'text_input': not valid UTF-8"),
        ({"text_input": one(b"x")}, '{"bogus": 1}', "sampling parameter 'bogus': Unexpected"),
        ({"text_input": one(b"x")}, '{"temperature": -1}', "sampling parameter 'temperature'"),
        ({"text_input": one(b"x")}, "[1]", "request parameters: expected a JSON object"),
        (
            {"text_input": one(b"x"), "sampling_parameters": one(b"{nope")},
            "",
            "sampling_parameters: not valid JSON",
        ),
    ],
)
def test_parse_request_errors_name_the_problem(
    inputs: dict[str, Any], params: str, message: str
) -> None:
    with pytest.raises(llm_ops.RequestError) as caught:
        llm_ops.parse_request(inputs, params, accept)
    assert message in str(caught.value)


def fake_output(text: str, tokens: list[int], finish: str | None = None) -> Any:
    completion = SimpleNamespace(
        text=text,
        token_ids=tokens,
        finish_reason=finish,
        cumulative_logprob=-1.5,
        logprobs=None,
    )
    return SimpleNamespace(prompt="hi", prompt_token_ids=[1, 7], outputs=[completion])


def request_for(stream: bool, exclude: bool = False, extra: tuple[str, ...] = ()) -> Any:
    return llm_ops.GenerationRequest("hi", stream, exclude, {}, extra)


def test_streaming_sends_deltas_that_join_to_the_whole_text() -> None:
    request = request_for(True, extra=("num_output_tokens", "finish_reason"))
    progress = llm_ops.Progress()
    steps = [("a", [5]), ("ab", [5, 6]), ("ab c", [5, 6, 9])]
    sent = []
    for index, (text, tokens) in enumerate(steps):
        final = index == len(steps) - 1
        out = fake_output(text, tokens, "length" if final else None)
        arrays = llm_ops.response_arrays(request, out, progress, final)
        sent.append(arrays)
    assert [a["text_output"][0] for a in sent] == [b"a", b"b", b" c"]
    assert [int(a["num_output_tokens"][0]) for a in sent] == [1, 1, 1]
    assert [a["finish_reason"][0] for a in sent] == [b"None", b"None", b"length"]


def test_non_streaming_includes_the_prompt_unless_excluded() -> None:
    out = fake_output(" there", [4, 5], "stop")
    extra = ("num_input_tokens", "num_output_tokens", "cumulative_logprob", "logprobs")
    full = llm_ops.response_arrays(request_for(False, extra=extra), out, llm_ops.Progress(), True)
    assert full["text_output"][0] == b"hi there"
    assert full["num_input_tokens"].dtype == np.uint32
    assert int(full["num_input_tokens"][0]) == 2
    assert int(full["num_output_tokens"][0]) == 2
    assert full["cumulative_logprob"].dtype == np.float32
    assert full["logprobs"][0] == b"null"
    bare = llm_ops.response_arrays(request_for(False, exclude=True), out, llm_ops.Progress(), True)
    assert bare["text_output"][0] == b" there"
    assert list(bare) == ["text_output"]


def test_one_contract_for_the_builder_the_stand_in_and_the_client() -> None:
    from clients.llm_core import OUTPUTS as CLIENT_OUTPUTS
    from python_backends import vllm_contract

    # the stand-in serves the very objects the builder renders
    assert llm_ops.INPUTS is vllm_contract.INPUTS
    assert llm_ops.OUTPUTS is vllm_contract.OUTPUTS
    spec = parse_spec(
        "models:\n  - {name: llm, task: text-generation, backend: vllm, engine: {model: m}}\n",
        Path("models.yaml"),
    )
    plan = plan_vllm(spec.models[0])
    assert [t.name for t in plan.inputs] == [name for name, _, _ in vllm_contract.INPUTS]
    assert [t.name for t in plan.outputs] == [name for name, _, _ in vllm_contract.OUTPUTS]
    # the client asks only for outputs the contract has (clients/ cannot import the builder)
    served = {name for name, _, _ in vllm_contract.OUTPUTS}
    assert set(CLIENT_OUTPUTS) <= served
    assert "text_output" in CLIENT_OUTPUTS


def test_serve_copies_the_contract_beside_the_vllm_stand_in(tmp_path: Path) -> None:
    from builder.serve import assemble_backends, find_tritonserver

    backends = assemble_backends(find_tritonserver(), tmp_path / "backends")
    copied = backends / "vllm" / "vllm_contract.py"
    assert copied.read_bytes() == (ROOT / "python_backends" / "vllm_contract.py").read_bytes()
