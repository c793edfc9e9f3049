"""The Triton models one spec entry becomes, as tensor specs, and the ensemble that wires them.

``<name>``              ensemble:  TEXT -> EMBEDDING | LABEL, SCORES
``<name>_tokenizer``    python (dynamic batching, length buckets):
                                   TEXT -> input_ids, attention_mask[, token_type_ids]
``<name>_onnx``         onnxruntime: token tensors -> EMBEDDING (pooling, L2 norm in the graph)
                                                   | SCORES (softmax in the graph)
``<name>_postprocess``  python:    SCORES -> LABEL (classification only: it makes strings)

Each task has one planner (``PLANNERS``): the members after the tokenizer and the graph, and
its ensemble.

The ensemble is built from the members' tensor specs and checked here, so a name, dtype,
shape or batch-size mismatch between two steps is a build error naming both ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from builder.errors import EnsembleError, SpecError
from builder.heads import GraphHead, head_for
from builder.model_files import EmbeddingSettings, HFConfig, resolve_embedding
from builder.registry import REGISTRY, Architecture, ExportRegistry
from builder.spec import MEMBER_SUFFIXES, DynamicBatching, ModelSpec, Spec

__all__ = [
    "EnsembleStep",
    "MemberPlan",
    "ModelPlan",
    "TensorSpec",
    "TokenizerInfo",
    "VllmPlan",
    "check_ensemble",
    "member_suffixes",
    "plan_model",
    "plan_vllm",
]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # a ModelConfig DataType name, e.g. "TYPE_FP32"
    dims: tuple[int, ...]  # without the batch dimension
    optional: bool = False

    def describe(self) -> str:
        return f"{self.name} {self.data_type} {list(self.dims)}"


@dataclass(frozen=True)
class MemberPlan:
    """One non-ensemble Triton model."""

    name: str
    backend: str  # "python" or "onnxruntime"
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_count: int
    instance_kind: str  # KIND_CPU | KIND_GPU
    dynamic_batching: DynamicBatching | None
    parameters: tuple[tuple[str, str], ...] = ()
    default_model_filename: str | None = None


@dataclass(frozen=True)
class EnsembleStep:
    model_name: str
    input_map: tuple[tuple[str, str], ...]  # (member input, ensemble tensor)
    output_map: tuple[tuple[str, str], ...]  # (member output, ensemble tensor)


@dataclass(frozen=True)
class TokenizerInfo:
    """What the tokenizer member needs to know about the HF tokenizer."""

    pad_token: str
    pad_id: int


@dataclass(frozen=True)
class ModelPlan:
    spec: ModelSpec
    tokenizer: MemberPlan
    onnx: MemberPlan
    postprocess: MemberPlan | None  # only where a step must produce strings
    head: GraphHead  # what the graph computes after the HF model (builder.heads)
    ensemble_inputs: tuple[TensorSpec, ...]
    ensemble_outputs: tuple[TensorSpec, ...]
    steps: tuple[EnsembleStep, ...]
    ensemble_parameters: tuple[tuple[str, str], ...]
    labels: tuple[str, ...] | None

    @property
    def members(self) -> tuple[MemberPlan, ...]:
        extra = (self.postprocess,) if self.postprocess is not None else ()
        return (self.tokenizer, self.onnx, *extra)


TEXT = TensorSpec("TEXT", "TYPE_STRING", (1,))


# default max_text_bytes per token of max_sequence_length: generous (a token is a few bytes),
# so only inputs far past what the model reads are refused
TEXT_BYTES_PER_TOKEN = 1024


def onnx_threads(model: ModelSpec, cores: int | None) -> tuple[tuple[str, str], ...]:
    """The ONNX Runtime backend's thread parameters for ``model``'s ONNX member.

    ONNX Runtime gives each session as many intra-op threads as the machine has cores, so
    N instances run N x cores threads and oversubscribe it. The spec's ``threads`` wins;
    else ``defaults.cores // instances``; else, when several instances share an unknown
    machine, 1 each; a single instance on an unknown machine keeps ONNX Runtime's default.
    """
    if model.threads is not None:
        intra: int | None = model.threads
    elif cores is not None:
        intra = max(1, cores // model.instances)
    elif model.instances > 1:
        intra = 1
    else:
        intra = None
    if intra is None:
        return ()
    return (("inter_op_thread_count", "1"), ("intra_op_thread_count", str(intra)))


def _labels(model: ModelSpec, hf_config: HFConfig, where: str) -> tuple[str, ...]:
    count = hf_config.num_labels
    if model.labels is not None:
        if len(model.labels) != count:
            raise SpecError(
                f"{where}: {len(model.labels)} labels but the model has {count} outputs "
                "(num_labels in config.json)",
                located=True,
            )
        return model.labels
    return hf_config.labels or tuple(f"LABEL_{i}" for i in range(count))


def _step(member: MemberPlan, **renames: str) -> EnsembleStep:
    """A step whose tensors keep their member names unless renamed."""
    return EnsembleStep(
        model_name=member.name,
        input_map=tuple((t.name, renames.get(t.name, t.name)) for t in member.inputs),
        output_map=tuple((t.name, renames.get(t.name, t.name)) for t in member.outputs),
    )


@dataclass(frozen=True)
class _Common:
    """What every task's planner starts from: the entry, its members' shared facts."""

    spec: Spec
    model: ModelSpec
    hf_config: HFConfig
    tokenizer: MemberPlan
    onnx: MemberPlan
    head: GraphHead


def _plan_embedding(common: _Common) -> ModelPlan:
    """tokenizer -> graph (pooling and normalisation inside): EMBEDDING."""
    return ModelPlan(
        spec=common.model,
        tokenizer=common.tokenizer,
        onnx=common.onnx,
        postprocess=None,
        head=common.head,
        ensemble_inputs=(TEXT,),
        ensemble_outputs=common.onnx.outputs,
        steps=(_step(common.tokenizer), _step(common.onnx)),
        ensemble_parameters=(),
        labels=None,
    )


def _plan_classification(common: _Common) -> ModelPlan:
    """tokenizer -> graph (softmax inside): SCORES -> postprocess: LABEL (a string)."""
    model = common.model
    labels = _labels(model, common.hf_config, common.spec.where(model, "labels"))
    (scores,) = common.onnx.outputs
    label_json = json.dumps(list(labels), ensure_ascii=False)
    post = MemberPlan(
        name=f"{model.name}_postprocess",
        backend="python",
        max_batch_size=model.max_batch_size,
        inputs=(scores,),
        outputs=(TensorSpec("LABEL", "TYPE_STRING", (1,)),),
        instance_count=1,
        instance_kind="KIND_CPU",
        dynamic_batching=None,
        parameters=(("labels", label_json), ("task", model.task)),
    )
    return ModelPlan(
        spec=model,
        tokenizer=common.tokenizer,
        onnx=common.onnx,
        postprocess=post,
        head=common.head,
        ensemble_inputs=(TEXT,),
        ensemble_outputs=(post.outputs[0], scores),
        steps=(_step(common.tokenizer), _step(common.onnx), _step(post)),
        ensemble_parameters=(("labels", label_json),),
        labels=labels,
    )


# One planner per task: its members after the tokenizer and the graph, and its ensemble.
PLANNERS: dict[str, Callable[[_Common], ModelPlan]] = {
    "text-embedding": _plan_embedding,
    "text-classification": _plan_classification,
}


def member_suffixes(task: str) -> tuple[str, ...]:
    """The suffixes of the member models ``task``'s ensemble has (``builder.spec`` reserves
    every suffix for every entry)."""
    return ("_tokenizer", "_onnx") if task == "text-embedding" else MEMBER_SUFFIXES


def plan_model(
    spec: Spec,
    model: ModelSpec,
    hf_config: HFConfig,
    tokenizer: TokenizerInfo,
    settings: EmbeddingSettings | None = None,
    registry: ExportRegistry = REGISTRY,
    architecture: Architecture | None = None,
) -> ModelPlan:
    """Tensor specs of every member of ``model`` and the checked ensemble over them.

    ``architecture``: the registry entry the pipeline looked up once (else looked up here).
    """
    architecture = architecture or registry.architecture(hf_config.model_type)
    task = registry.task(model.task)
    kind = "KIND_GPU" if spec.target_of(model) == "gpu" else "KIND_CPU"
    batch = model.max_batch_size
    token_tensors = tuple(TensorSpec(n, "TYPE_INT64", (-1,)) for n in architecture.input_names)
    if model.task == "text-embedding" and settings is None:  # the spec alone (no source files)
        settings = resolve_embedding(
            model.pooling, model.normalize, model.max_sequence_length, None, 0
        )
    max_length = settings.max_sequence_length.value if settings else model.max_sequence_length
    output = TensorSpec(task.output_name, "TYPE_FP32", task.output_dims(hf_config))
    tokenizer_settings = model.tokenizer
    tok = MemberPlan(
        name=f"{model.name}_tokenizer",
        backend="python",
        max_batch_size=batch,
        inputs=(TEXT,),
        outputs=token_tensors,
        instance_count=tokenizer_settings.instances,
        instance_kind="KIND_CPU",
        dynamic_batching=DynamicBatching(max_queue_delay_us=tokenizer_settings.max_queue_delay_us),
        parameters=(
            ("bucket", str(min(tokenizer_settings.bucket, max_length))),
            (
                "encoding_fields",
                json.dumps([[i.name, i.encoding_field] for i in architecture.inputs]),
            ),
            ("max_sequence_length", str(max_length)),
            ("max_text_bytes", str(model.max_text_bytes or max_length * TEXT_BYTES_PER_TOKEN)),
            ("pad_id", str(tokenizer.pad_id)),
            ("tokenizer_file", "tokenizer.json"),
        ),
    )
    onnx = MemberPlan(
        name=f"{model.name}_onnx",
        backend="onnxruntime",
        max_batch_size=batch,
        inputs=token_tensors,
        outputs=(output,),
        instance_count=model.instances,
        instance_kind=kind,
        dynamic_batching=model.dynamic_batching,
        default_model_filename="model.onnx",
        parameters=onnx_threads(model, spec.defaults.cores),
    )
    common = _Common(spec, model, hf_config, tok, onnx, head_for(task, settings))
    plan = PLANNERS[model.task](common)
    check_ensemble(plan)
    return plan


Produced = dict[str, tuple[TensorSpec, str]]


def _check_inputs(
    ensemble: str, member: MemberPlan, step: EnsembleStep, produced: Produced
) -> None:
    member_inputs = {t.name: t for t in member.inputs}
    for member_input, tensor in step.input_map:
        want = member_inputs.get(member_input)
        if want is None:
            raise EnsembleError(
                f"ensemble {ensemble!r}: {member.name!r} has no input {member_input!r}"
            )
        if tensor not in produced:
            raise EnsembleError(
                f"ensemble {ensemble!r}: {member.name!r} input {member_input!r} reads "
                f"{tensor!r}, which no earlier step produces"
            )
        have, where = produced[tensor]
        if (have.data_type, have.dims) != (want.data_type, want.dims):
            raise EnsembleError(
                f"ensemble {ensemble!r}: {where} {have.describe()} does not match "
                f"{member.name!r} input {want.describe()}"
            )
    unmapped = sorted(set(member_inputs) - {name for name, _ in step.input_map})
    if unmapped:
        raise EnsembleError(
            f"ensemble {ensemble!r}: {member.name!r} input(s) {', '.join(unmapped)} "
            "are not mapped to any ensemble tensor"
        )


def _record_outputs(
    ensemble: str, member: MemberPlan, step: EnsembleStep, produced: Produced
) -> None:
    member_outputs = {t.name: t for t in member.outputs}
    for member_output, tensor in step.output_map:
        spec = member_outputs.get(member_output)
        if spec is None:
            raise EnsembleError(
                f"ensemble {ensemble!r}: {member.name!r} has no output {member_output!r}"
            )
        produced[tensor] = (spec, f"{member.name!r} output")


def check_ensemble(plan: ModelPlan) -> None:
    """Raise EnsembleError unless every step's inputs are produced earlier with equal specs."""
    ensemble = plan.spec.name
    members = {m.name: m for m in plan.members}
    produced: Produced = {t.name: (t, f"ensemble {ensemble!r} input") for t in plan.ensemble_inputs}
    for step in plan.steps:
        member = members.get(step.model_name)
        if member is None:
            raise EnsembleError(f"ensemble {ensemble!r}: step model {step.model_name!r} unknown")
        if member.max_batch_size < plan.spec.max_batch_size:
            raise EnsembleError(
                f"ensemble {ensemble!r} (max_batch_size {plan.spec.max_batch_size}): member "
                f"{member.name!r} accepts only max_batch_size {member.max_batch_size}"
            )
        _check_inputs(ensemble, member, step, produced)
        _record_outputs(ensemble, member, step, produced)
    for out in plan.ensemble_outputs:
        if out.name not in produced:
            raise EnsembleError(f"ensemble {ensemble!r}: output {out.name!r} is never produced")
        have, where = produced[out.name]
        if (have.data_type, have.dims) != (out.data_type, out.dims):
            raise EnsembleError(
                f"ensemble {ensemble!r}: {where} {have.describe()} does not match ensemble "
                f"output {out.describe()}"
            )


@dataclass(frozen=True)
class VllmPlan:
    """A ``vllm`` backend model: decoupled, KIND_MODEL, engine arguments in 1/model.json."""

    spec: ModelSpec
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: tuple[tuple[str, str], ...]
    model_json: str


def plan_vllm(model: ModelSpec) -> VllmPlan:
    """The official vllm backend's contract (``python_backends.vllm_contract``)."""
    from python_backends.vllm_contract import INPUTS, OUTPUTS

    inputs = tuple(
        TensorSpec(name, kind, (1,), optional=optional) for name, kind, optional in INPUTS
    )
    outputs = tuple(TensorSpec(name, kind, tuple(dims)) for name, kind, dims in OUTPUTS)
    metrics = "true" if model.report_metrics else "false"
    engine = dict(model.engine or {})
    return VllmPlan(
        spec=model,
        inputs=inputs,
        outputs=outputs,
        parameters=(("REPORT_CUSTOM_METRICS", metrics),),
        model_json=json.dumps(engine, indent=2, sort_keys=True) + "\n",
    )
