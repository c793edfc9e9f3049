"""The Triton models one spec entry becomes, as tensor specs, and the ensemble that wires them.

``<name>``              ensemble: the task's contract (README, "Served contracts")
``<name>_tokenizer``    python (dynamic batching, length buckets): TEXT, or a pair (TEXT and
                        TEXT_PAIR; QUERY and TEXT) -> input_ids, attention_mask[,
                        token_type_ids][, offsets, special_tokens_mask]
``<name>_onnx``         onnxruntime: token tensors -> EMBEDDING (pooling, L2 norm in the graph)
                        | SCORES (softmax) | SCORE (sigmoid or none) | TOKEN_SCORES (softmax
                        per token)
``<name>_postprocess``  python, only where strings are made: SCORES -> LABEL
                        (text-classification); text, offsets, tokens, TOKEN_SCORES -> ENTITIES
                        (token-classification)

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
from builder.heads import GraphHead, embedding_head
from builder.model_files import (
    EmbeddingSettings,
    HFConfig,
    Setting,
    reranking_activation,
    resolve_embedding,
)
from builder.registry import REGISTRY, Architecture, ExportRegistry
from builder.spec import MEMBER_SUFFIXES, DynamicBatching, ModelSpec, Spec

__all__ = [
    "TOKENIZER_FILE",
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


TOKENIZER_FILE = "tokenizer.json"


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
    code: str | None = None  # a Python member's code: a key of ``builder.write``'s _CODE
    files: tuple[str, ...] = ()  # exported files it needs in its version folder


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
    unk_id: int | None = None  # transformers' unk_token_id (entity words of unknown tokens)


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
TEXT_PAIR = TensorSpec("TEXT_PAIR", "TYPE_STRING", (1,))
QUERY = TensorSpec("QUERY", "TYPE_STRING", (1,))
LABEL = TensorSpec("LABEL", "TYPE_STRING", (1,))
ENTITIES = TensorSpec("ENTITIES", "TYPE_STRING", (1,))
# what the tokenizer also gives a token-classification ensemble's entity grouping
OFFSETS = TensorSpec("offsets", "TYPE_INT64", (-1, 2))
SPECIAL_TOKENS_MASK = TensorSpec("special_tokens_mask", "TYPE_INT64", (-1,))


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
    threads = (("inter_op_thread_count", "1"), ("intra_op_thread_count", str(intra)))
    if not model.lend_idle_threads:  # read by the local stand-in only (see its module)
        return (*threads, ("lend_idle_threads", "false"))
    return threads


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
    """What every task's planner starts from: the entry, the facts its members share, the
    ONNX member (whose output the registry's task entry decides) and a tokenizer maker."""

    spec: Spec
    model: ModelSpec
    hf_config: HFConfig
    architecture: Architecture
    tokenizer_info: TokenizerInfo
    max_length: int
    settings: EmbeddingSettings | None
    activation: Setting[str] | None
    onnx: MemberPlan

    def tokenizer(
        self, texts: tuple[TensorSpec, ...] = (TEXT,), extra: tuple[TensorSpec, ...] = ()
    ) -> MemberPlan:
        """The tokenizer member: ``texts`` (one text, or a pair) -> the model's token tensors
        and ``extra`` (offsets, special tokens mask: their names are their Encoding fields)."""
        model, settings = self.model, self.model.tokenizer
        fields = [[i.name, i.encoding_field] for i in self.architecture.inputs]
        fields += [[t.name, t.name] for t in extra]
        max_bytes = model.max_text_bytes or self.max_length * TEXT_BYTES_PER_TOKEN
        token_tensors = tuple(
            TensorSpec(n, "TYPE_INT64", (-1,)) for n in self.architecture.input_names
        )
        return MemberPlan(
            name=f"{model.name}_tokenizer",
            backend="python",
            max_batch_size=model.max_batch_size,
            inputs=texts,
            outputs=token_tensors + extra,
            instance_count=settings.instances,
            instance_kind="KIND_CPU",
            dynamic_batching=DynamicBatching(max_queue_delay_us=settings.max_queue_delay_us),
            parameters=(
                ("bucket", str(min(settings.bucket, self.max_length))),
                ("encoding_fields", json.dumps(fields)),
                ("max_sequence_length", str(self.max_length)),
                ("max_text_bytes", str(max_bytes)),
                ("pad_id", str(self.tokenizer_info.pad_id)),
                ("text_inputs", json.dumps([t.name for t in texts])),
                ("tokenizer_file", TOKENIZER_FILE),
            ),
            code="tokenizer",
        )

    def python_member(
        self,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        parameters: tuple[tuple[str, str], ...],
        code: str,
        files: tuple[str, ...] = (),
    ) -> MemberPlan:
        """The ``_postprocess`` member: a Python model that makes strings."""
        return MemberPlan(
            name=f"{self.model.name}_postprocess",
            backend="python",
            max_batch_size=self.model.max_batch_size,
            inputs=inputs,
            outputs=outputs,
            instance_count=1,
            instance_kind="KIND_CPU",
            dynamic_batching=None,
            parameters=parameters,
            code=code,
            files=files,
        )

    def plan(
        self,
        tokenizer: MemberPlan,
        head: GraphHead,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        postprocess: MemberPlan | None = None,
        labels: tuple[str, ...] | None = None,
    ) -> ModelPlan:
        """tokenizer -> ONNX [-> postprocess], each step's tensors under their own names."""
        extra = (postprocess,) if postprocess is not None else ()
        label_json = json.dumps(list(labels), ensure_ascii=False) if labels else None
        return ModelPlan(
            spec=self.model,
            tokenizer=tokenizer,
            onnx=self.onnx,
            postprocess=postprocess,
            head=head,
            ensemble_inputs=inputs,
            ensemble_outputs=outputs,
            steps=tuple(_step(m) for m in (tokenizer, self.onnx, *extra)),
            ensemble_parameters=(("labels", label_json),) if label_json else (),
            labels=labels,
        )


def _plan_embedding(common: _Common) -> ModelPlan:
    """TEXT -> tokenizer -> graph (pooling and normalisation inside): EMBEDDING."""
    settings = common.settings
    if settings is None:  # the spec alone (no source files)
        model = common.model
        settings = resolve_embedding(
            model.pooling, model.normalize, model.max_sequence_length, None, 0
        )
    return common.plan(common.tokenizer(), embedding_head(settings), (TEXT,), common.onnx.outputs)


def _plan_classification(common: _Common) -> ModelPlan:
    """TEXT [, TEXT_PAIR] -> tokenizer -> graph (softmax inside): SCORES -> postprocess:
    LABEL (a string)."""
    model = common.model
    labels = _labels(model, common.hf_config, common.spec.where(model, "labels"))
    texts = (TEXT, TEXT_PAIR) if model.pair else (TEXT,)
    (scores,) = common.onnx.outputs
    label_json = json.dumps(list(labels), ensure_ascii=False)
    post = common.python_member(
        (scores,), (LABEL,), (("labels", label_json), ("task", model.task)), "postprocess"
    )
    return common.plan(
        common.tokenizer(texts), GraphHead("softmax"), texts, (LABEL, scores), post, labels
    )


def _plan_reranking(common: _Common) -> ModelPlan:
    """(QUERY, TEXT) pairs -> tokenizer -> graph (the activation inside): SCORE."""
    model = common.model
    activation = common.activation or reranking_activation(model.activation, common.hf_config)
    head = GraphHead("sigmoid" if activation.value == "sigmoid" else "identity")
    texts = (QUERY, TEXT)
    return common.plan(common.tokenizer(texts), head, texts, common.onnx.outputs)


def _plan_token_classification(common: _Common) -> ModelPlan:
    """TEXT -> tokenizer (+ offsets, special tokens mask) -> graph (softmax per token):
    TOKEN_SCORES -> postprocess (entity grouping, with the tokenizer): ENTITIES (JSON)."""
    model, architecture = common.model, common.architecture
    labels = _labels(model, common.hf_config, common.spec.where(model, "labels"))
    tokenizer = common.tokenizer(extra=(OFFSETS, SPECIAL_TOKENS_MASK))
    by_name = {t.name: t for t in tokenizer.outputs}
    ids = by_name[architecture.named("token_ids") or "input_ids"]
    mask = by_name[architecture.mask_name]
    (scores,) = common.onnx.outputs
    unk = common.tokenizer_info.unk_id
    post = common.python_member(
        (TEXT, ids, mask, OFFSETS, SPECIAL_TOKENS_MASK, scores),
        (ENTITIES,),
        (
            ("aggregation", model.effective_aggregation),
            ("labels", json.dumps(list(labels), ensure_ascii=False)),
            ("task", model.task),
            ("tokenizer_file", TOKENIZER_FILE),
            ("unk_id", "" if unk is None else str(unk)),
        ),
        "entities",
        files=(TOKENIZER_FILE,),
    )
    return common.plan(tokenizer, GraphHead("softmax"), (TEXT,), (ENTITIES,), post, labels)


@dataclass(frozen=True)
class TaskPlanner:
    """A task's planner and the suffixes of the members its ensemble has."""

    plan: Callable[[_Common], ModelPlan]
    suffixes: tuple[str, ...]


_TWO = ("_tokenizer", "_onnx")
# One planner per task: its members after the tokenizer and the graph, and its ensemble.
PLANNERS: dict[str, TaskPlanner] = {
    "text-embedding": TaskPlanner(_plan_embedding, _TWO),
    "text-classification": TaskPlanner(_plan_classification, MEMBER_SUFFIXES),
    "text-reranking": TaskPlanner(_plan_reranking, _TWO),
    "token-classification": TaskPlanner(_plan_token_classification, MEMBER_SUFFIXES),
}


def member_suffixes(task: str) -> tuple[str, ...]:
    """The suffixes of the member models ``task``'s ensemble has (``builder.spec`` reserves
    every suffix for every entry)."""
    return PLANNERS[task].suffixes


def plan_model(
    spec: Spec,
    model: ModelSpec,
    hf_config: HFConfig,
    tokenizer: TokenizerInfo,
    settings: EmbeddingSettings | None = None,
    registry: ExportRegistry = REGISTRY,
    architecture: Architecture | None = None,
    activation: Setting[str] | None = None,
) -> ModelPlan:
    """Tensor specs of every member of ``model`` and the checked ensemble over them.

    ``settings``: an embedding's resolved pooling, normalisation and length; ``activation``:
    a reranker's resolved activation (both from the source's files; else from the spec
    alone). ``architecture``: the registry entry the pipeline looked up once (else here).
    """
    architecture = architecture or registry.architecture(hf_config.model_type)
    task = registry.task(model.task)
    kind = "KIND_GPU" if spec.target_of(model) == "gpu" else "KIND_CPU"
    max_length = settings.max_sequence_length.value if settings else model.max_sequence_length
    onnx = MemberPlan(
        name=f"{model.name}_onnx",
        backend="onnxruntime",
        max_batch_size=model.max_batch_size,
        inputs=tuple(TensorSpec(n, "TYPE_INT64", (-1,)) for n in architecture.input_names),
        outputs=(TensorSpec(task.output_name, "TYPE_FP32", task.output_dims(hf_config)),),
        instance_count=model.instances,
        instance_kind=kind,
        dynamic_batching=model.dynamic_batching,
        default_model_filename="model.onnx",
        parameters=onnx_threads(model, spec.defaults.cores),
    )
    common = _Common(
        spec, model, hf_config, architecture, tokenizer, max_length, settings, activation, onnx
    )
    plan = PLANNERS[model.task].plan(common)
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


def plan_vllm(model: ModelSpec, model_path: str | None = None) -> VllmPlan:
    """The official vllm backend's contract (``python_backends.vllm_contract``).

    ``model_path``: where the build put the model (a GGUF entry's converted folder); it is
    ``engine.model`` in ``model.json``.
    """
    from python_backends.vllm_contract import INPUTS, OUTPUTS

    inputs = tuple(
        TensorSpec(name, kind, (1,), optional=optional) for name, kind, optional in INPUTS
    )
    outputs = tuple(TensorSpec(name, kind, tuple(dims)) for name, kind, dims in OUTPUTS)
    metrics = "true" if model.report_metrics else "false"
    engine = dict(model.engine or {})
    if model_path is not None:
        engine["model"] = model_path
    return VllmPlan(
        spec=model,
        inputs=inputs,
        outputs=outputs,
        parameters=(("REPORT_CUSTOM_METRICS", metrics),),
        model_json=json.dumps(engine, indent=2, sort_keys=True) + "\n",
    )
