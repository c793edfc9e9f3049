"""builder.plan: the members' tensor specs and the ensemble check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from builder.errors import EnsembleError, ExportError, SourceError, SpecError
from builder.heads import GraphHead
from builder.model_files import HFConfig, Setting, hf_config_from
from builder.plan import (
    EnsembleStep,
    ModelPlan,
    TensorSpec,
    TokenizerInfo,
    check_ensemble,
    plan_model,
)
from builder.spec import DynamicBatching, Spec, parse_spec

TOKENIZER = TokenizerInfo(pad_token="[PAD]", pad_id=0)
TEXT = TensorSpec("TEXT", "TYPE_STRING", (1,))
IDS = TensorSpec("input_ids", "TYPE_INT64", (-1,))
MASK = TensorSpec("attention_mask", "TYPE_INT64", (-1,))
TYPES = TensorSpec("token_type_ids", "TYPE_INT64", (-1,))


def make_spec(entry: str, defaults: str = "") -> Spec:
    return parse_spec(f"{defaults}models:\n  - {entry}\n", Path("models.yaml"))


def hf(config: dict[str, Any]) -> HFConfig:
    """config.json's ``config``; vocab_size and hidden_size filled in where a test omits them."""
    sized = any(key in config for key in ("hidden_size", "dim", "d_model"))
    base = {"vocab_size": 100, **({} if sized else {"hidden_size": 32})}
    return hf_config_from({**base, **config}, Path("config.json"))


def plan_for(entry: str, hf_config: dict[str, Any], defaults: str = "") -> ModelPlan:
    spec = make_spec(entry, defaults)
    return plan_model(spec, spec.models[0], hf(hf_config), TOKENIZER)


MINILM = (
    "{name: minilm, task: text-embedding, source: ./m, max_sequence_length: 256, "
    "max_batch_size: 32, dynamic_batching: {max_queue_delay_us: 1000, "
    "preferred_batch_sizes: [8, 16]}, instances: 2, pooling: mean, normalize: true}"
)
BERT_384 = {"model_type": "bert", "hidden_size": 384}


def classifier(extra: str = "") -> str:
    return "{name: clf, task: text-classification, source: ./m" + extra + "}"


def test_embedding_plan_bert() -> None:
    plan = plan_for(MINILM, BERT_384)
    embedding = TensorSpec("EMBEDDING", "TYPE_FP32", (384,))

    tok = plan.tokenizer
    assert (tok.name, tok.backend, tok.max_batch_size) == ("minilm_tokenizer", "python", 32)
    assert tok.inputs == (TEXT,)
    assert tok.outputs == (IDS, MASK, TYPES)
    assert (tok.instance_count, tok.instance_kind) == (1, "KIND_CPU")
    # the tokenizer batches too, so a batch's texts leave it padded to one length
    assert tok.dynamic_batching == DynamicBatching(max_queue_delay_us=0)
    assert tok.parameters == (
        ("bucket", "1"),
        (
            "encoding_fields",
            '[["input_ids", "ids"], ["attention_mask", "attention_mask"], '
            '["token_type_ids", "type_ids"]]',
        ),
        ("max_sequence_length", "256"),
        ("max_text_bytes", "262144"),
        ("pad_id", "0"),
        ("text_inputs", '["TEXT"]'),
        ("tokenizer_file", "tokenizer.json"),
    )
    assert tok.default_model_filename is None

    onnx = plan.onnx
    assert (onnx.name, onnx.backend, onnx.max_batch_size) == ("minilm_onnx", "onnxruntime", 32)
    assert onnx.inputs == (IDS, MASK, TYPES)
    # pooling and normalisation are in the graph: no Python step after it
    assert onnx.outputs == (embedding,)
    assert (onnx.instance_count, onnx.instance_kind) == (2, "KIND_CPU")
    assert onnx.dynamic_batching == DynamicBatching(
        max_queue_delay_us=1000, preferred_batch_sizes=(8, 16)
    )
    assert onnx.default_model_filename == "model.onnx"
    # two instances on a machine of unknown size: one ONNX Runtime thread each
    assert onnx.parameters == (("inter_op_thread_count", "1"), ("intra_op_thread_count", "1"))
    assert plan.head == GraphHead("pool", "mean", normalize=True)

    assert plan.postprocess is None
    assert plan.members == (tok, onnx)
    assert plan.ensemble_inputs == (TEXT,)
    assert plan.ensemble_outputs == (embedding,)
    assert plan.ensemble_parameters == ()
    assert plan.labels is None
    assert plan.steps == (
        EnsembleStep(
            "minilm_tokenizer",
            (("TEXT", "TEXT"),),
            tuple((n, n) for n in ("input_ids", "attention_mask", "token_type_ids")),
        ),
        EnsembleStep(
            "minilm_onnx",
            tuple((n, n) for n in ("input_ids", "attention_mask", "token_type_ids")),
            (("EMBEDDING", "EMBEDDING"),),
        ),
    )


@pytest.mark.parametrize(
    ("hf_config", "hidden"),
    [
        ({"model_type": "roberta", "hidden_size": 768}, 768),
        ({"model_type": "distilbert", "dim": 48}, 48),
    ],
)
def test_no_token_type_ids_for_roberta_and_distilbert(
    hf_config: dict[str, Any], hidden: int
) -> None:
    plan = plan_for("{name: e, task: text-embedding, source: ./m}", hf_config)
    assert plan.tokenizer.outputs == (IDS, MASK)
    assert plan.onnx.inputs == (IDS, MASK)
    assert plan.onnx.outputs == (TensorSpec("EMBEDDING", "TYPE_FP32", (hidden,)),)


def test_embedding_cls_without_normalize() -> None:
    plan = plan_for(
        "{name: e, task: text-embedding, source: ./m, pooling: cls, normalize: false}", BERT_384
    )
    assert plan.head == GraphHead("pool", "cls", normalize=False)


def test_embedding_defaults_mean_and_normalize() -> None:
    plan = plan_for("{name: e, task: text-embedding, source: ./m}", BERT_384)
    assert plan.head == GraphHead("pool", "mean", normalize=True)
    assert plan.onnx.dynamic_batching == DynamicBatching()
    assert (plan.onnx.instance_count, plan.onnx.instance_kind) == (1, "KIND_CPU")


def test_tokenizer_parameters_follow_spec_and_tokenizer() -> None:
    spec = make_spec(
        "{name: e, task: text-embedding, source: ./m, max_sequence_length: 128, "
        "tokenizer: {instances: 2, max_queue_delay_us: 300, bucket: 32}}"
    )
    info = TokenizerInfo(pad_token="<pad>", pad_id=1)
    plan = plan_model(spec, spec.models[0], hf({"model_type": "roberta", "hidden_size": 8}), info)
    assert dict(plan.tokenizer.parameters) == {
        "bucket": "32",
        "encoding_fields": '[["input_ids", "ids"], ["attention_mask", "attention_mask"]]',
        "max_sequence_length": "128",
        "max_text_bytes": "131072",
        "pad_id": "1",
        "text_inputs": '["TEXT"]',
        "tokenizer_file": "tokenizer.json",
    }
    assert plan.tokenizer.instance_count == 2
    assert plan.tokenizer.dynamic_batching == DynamicBatching(max_queue_delay_us=300)


def test_bucket_is_capped_at_the_sequence_length() -> None:
    plan = plan_for(
        "{name: e, task: text-embedding, source: ./m, max_sequence_length: 20, "
        "tokenizer: {bucket: 64}}",
        BERT_384,
    )
    assert dict(plan.tokenizer.parameters)["bucket"] == "20"


def test_classification_plan() -> None:
    plan = plan_for(
        classifier(", labels: [negative, positive], max_batch_size: 8, dynamic_batching: null"),
        {"model_type": "bert", "hidden_size": 32, "num_labels": 2},
    )
    scores = TensorSpec("SCORES", "TYPE_FP32", (2,))
    label = TensorSpec("LABEL", "TYPE_STRING", (1,))
    label_json = '["negative", "positive"]'

    assert plan.labels == ("negative", "positive")
    # softmax is in the graph; only the label (a string) is made in Python
    assert plan.head == GraphHead("softmax")
    assert plan.onnx.outputs == (scores,)
    assert plan.onnx.dynamic_batching is None
    assert plan.postprocess is not None
    assert plan.postprocess.inputs == (scores,)
    assert plan.postprocess.outputs == (label,)
    assert plan.postprocess.parameters == (("labels", label_json), ("task", "text-classification"))
    assert plan.ensemble_outputs == (label, scores)
    assert plan.ensemble_parameters == (("labels", label_json),)
    assert [m.max_batch_size for m in plan.members] == [8, 8, 8]
    assert plan.steps[1].output_map == (("SCORES", "SCORES"),)
    assert plan.steps[2] == EnsembleStep(
        "clf_postprocess", (("SCORES", "SCORES"),), (("LABEL", "LABEL"),)
    )


def test_pair_classification_plan_tokenizes_text_and_text_pair() -> None:
    plan = plan_for(classifier(", pair: true"), {"model_type": "bert", "num_labels": 3})
    pair = TensorSpec("TEXT_PAIR", "TYPE_STRING", (1,))
    assert plan.ensemble_inputs == (TEXT, pair)
    assert plan.tokenizer.inputs == (TEXT, pair)
    assert dict(plan.tokenizer.parameters)["text_inputs"] == '["TEXT", "TEXT_PAIR"]'
    assert plan.steps[0].input_map == (("TEXT", "TEXT"), ("TEXT_PAIR", "TEXT_PAIR"))
    # the rest is text-classification's: softmax in the graph, LABEL from the postprocess
    assert plan.head == GraphHead("softmax")
    assert [t.name for t in plan.ensemble_outputs] == ["LABEL", "SCORES"]


def test_labels_json_keeps_unicode() -> None:
    plan = plan_for(classifier(', labels: ["très bien", "日本"]'), {"model_type": "bert"})
    assert plan.postprocess is not None
    assert dict(plan.postprocess.parameters)["labels"] == '["très bien", "日本"]'


def test_labels_from_id2label_in_numeric_order() -> None:
    id2label = {str(i): f"L{i}" for i in (10, 2, 0, 9, 1, 3, 4, 5, 6, 7, 8)}
    plan = plan_for(classifier(), {"model_type": "bert", "id2label": id2label})
    assert plan.labels == tuple(f"L{i}" for i in range(11))
    assert plan.onnx.outputs == (TensorSpec("SCORES", "TYPE_FP32", (11,)),)
    assert json.loads(dict(plan.ensemble_parameters)["labels"]) == [f"L{i}" for i in range(11)]


def test_labels_from_id2label_with_int_keys() -> None:
    plan = plan_for(classifier(), {"model_type": "bert", "id2label": {1: "pos", 0: "neg"}})
    assert plan.labels == ("neg", "pos")


def test_spec_labels_win_over_id2label() -> None:
    plan = plan_for(
        classifier(", labels: [bad, good]"),
        {"model_type": "bert", "id2label": {"0": "NEGATIVE", "1": "POSITIVE"}},
    )
    assert plan.labels == ("bad", "good")


def test_id2label_that_is_not_by_id_is_named() -> None:
    with pytest.raises(SourceError, match=r"^config.json: id2label: keys must be integers$"):
        plan_for(classifier(), {"model_type": "bert", "id2label": {"a": "x", "b": "y"}})


@pytest.mark.parametrize(
    ("hf_config", "labels"),
    [
        ({"model_type": "bert", "num_labels": 3}, ("LABEL_0", "LABEL_1", "LABEL_2")),
        ({"model_type": "bert"}, ("LABEL_0", "LABEL_1")),
    ],
)
def test_default_labels(hf_config: dict[str, Any], labels: tuple[str, ...]) -> None:
    assert plan_for(classifier(), hf_config).labels == labels


def test_label_count_mismatch_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        plan_for(classifier(", labels: [a, b, c]"), {"model_type": "bert", "num_labels": 2})
    assert str(caught.value).endswith(
        "models.yaml: models[0].labels (model 'clf'): 3 labels but the model has 2 outputs "
        "(num_labels in config.json)"
    )


def test_target_gpu_puts_only_the_onnx_member_on_gpu() -> None:
    plan = plan_for(classifier(", target: gpu"), {"model_type": "bert"})
    assert [m.instance_kind for m in plan.members] == ["KIND_CPU", "KIND_GPU", "KIND_CPU"]
    plan = plan_for(classifier(), {"model_type": "bert"}, defaults="defaults: {target: gpu}\n")
    assert plan.onnx.instance_kind == "KIND_GPU"
    plan = plan_for(
        classifier(", target: cpu"), {"model_type": "bert"}, defaults="defaults: {target: gpu}\n"
    )
    assert plan.onnx.instance_kind == "KIND_CPU"


def test_unsupported_architecture() -> None:
    with pytest.raises(ExportError, match="architecture 'gpt2' is not supported"):
        plan_for(classifier(), {"model_type": "gpt2"})
    with pytest.raises(SourceError, match=r"^config.json: model_type: missing"):
        plan_for(classifier(), {})


# --- check_ensemble on broken plans -----------------------------------------------------------


@pytest.fixture
def plan() -> ModelPlan:
    """A three-step plan: tokenizer -> graph -> postprocess."""
    return plan_for("{name: m, task: text-classification, source: ./m}", BERT_384)


def ensemble_error(plan: ModelPlan) -> str:
    with pytest.raises(EnsembleError) as caught:
        check_ensemble(plan)
    return str(caught.value)


def test_valid_plan_passes(plan: ModelPlan) -> None:
    check_ensemble(plan)


def test_dtype_mismatch_names_both_ends(plan: ModelPlan) -> None:
    assert plan.postprocess is not None
    scores16 = TensorSpec("SCORES", "TYPE_FP16", (2,))
    post = replace(plan.postprocess, inputs=(scores16,))
    assert ensemble_error(replace(plan, postprocess=post)) == (
        "ensemble 'm': 'm_onnx' output SCORES TYPE_FP32 [2] does not match "
        "'m_postprocess' input SCORES TYPE_FP16 [2]"
    )


def test_dims_mismatch_names_both_ends(plan: ModelPlan) -> None:
    scores3 = TensorSpec("SCORES", "TYPE_FP32", (3,))
    onnx = replace(plan.onnx, outputs=(scores3,))
    assert ensemble_error(replace(plan, onnx=onnx)) == (
        "ensemble 'm': 'm_onnx' output SCORES TYPE_FP32 [3] does not match "
        "'m_postprocess' input SCORES TYPE_FP32 [2]"
    )


def test_ensemble_input_mismatch_names_the_ensemble(plan: ModelPlan) -> None:
    text2 = TensorSpec("TEXT", "TYPE_STRING", (2,))
    assert ensemble_error(replace(plan, ensemble_inputs=(text2,))) == (
        "ensemble 'm': ensemble 'm' input TEXT TYPE_STRING [2] does not match "
        "'m_tokenizer' input TEXT TYPE_STRING [1]"
    )


def test_ensemble_output_mismatch(plan: ModelPlan) -> None:
    wrong = TensorSpec("LABEL", "TYPE_STRING", (2,))
    assert ensemble_error(replace(plan, ensemble_outputs=(wrong,))) == (
        "ensemble 'm': 'm_postprocess' output LABEL TYPE_STRING [1] does not match "
        "ensemble output LABEL TYPE_STRING [2]"
    )


def test_ensemble_output_never_produced(plan: ModelPlan) -> None:
    extra = TensorSpec("EXTRA", "TYPE_FP32", (1,))
    outputs = (*plan.ensemble_outputs, extra)
    assert ensemble_error(replace(plan, ensemble_outputs=outputs)) == (
        "ensemble 'm': output 'EXTRA' is never produced"
    )


def test_missing_producer_when_steps_are_out_of_order(plan: ModelPlan) -> None:
    tok, onnx, post = plan.steps
    assert ensemble_error(replace(plan, steps=(onnx, tok, post))) == (
        "ensemble 'm': 'm_onnx' input 'input_ids' reads 'input_ids', which no earlier step produces"
    )


def test_missing_producer_for_a_renamed_tensor(plan: ModelPlan) -> None:
    tok, onnx, post = plan.steps
    post = replace(post, input_map=(("SCORES", "probabilities"),))
    assert ensemble_error(replace(plan, steps=(tok, onnx, post))) == (
        "ensemble 'm': 'm_postprocess' input 'SCORES' reads 'probabilities', "
        "which no earlier step produces"
    )


def test_unknown_member_input(plan: ModelPlan) -> None:
    tok, onnx, post = plan.steps
    tok = replace(tok, input_map=(("PROMPT", "TEXT"),))
    assert ensemble_error(replace(plan, steps=(tok, onnx, post))) == (
        "ensemble 'm': 'm_tokenizer' has no input 'PROMPT'"
    )


def test_unknown_member_output(plan: ModelPlan) -> None:
    tok, onnx, post = plan.steps
    onnx = replace(onnx, output_map=(("pooler_output", "SCORES"),))
    assert ensemble_error(replace(plan, steps=(tok, onnx, post))) == (
        "ensemble 'm': 'm_onnx' has no output 'pooler_output'"
    )


def test_unknown_step_model(plan: ModelPlan) -> None:
    tok, onnx, post = plan.steps
    ghost = replace(onnx, model_name="ghost_onnx")
    assert ensemble_error(replace(plan, steps=(tok, ghost, post))) == (
        "ensemble 'm': step model 'ghost_onnx' unknown"
    )


def test_member_with_smaller_max_batch_size(plan: ModelPlan) -> None:
    onnx = replace(plan.onnx, max_batch_size=16)
    assert ensemble_error(replace(plan, onnx=onnx)) == (
        "ensemble 'm' (max_batch_size 32): member 'm_onnx' accepts only max_batch_size 16"
    )


def test_member_with_larger_max_batch_size_is_fine(plan: ModelPlan) -> None:
    check_ensemble(replace(plan, onnx=replace(plan.onnx, max_batch_size=64)))


def test_unmapped_member_input(plan: ModelPlan) -> None:
    tok, onnx, post = plan.steps
    onnx = replace(onnx, input_map=onnx.input_map[:2])  # token_type_ids not fed
    message = ensemble_error(replace(plan, steps=(tok, onnx, post)))
    assert "token_type_ids" in message


@pytest.mark.parametrize(
    ("extra", "defaults", "expected"),
    [
        ("", "", ()),  # one instance, unknown machine: ONNX Runtime's default (all cores)
        (", instances: 2", "", (("inter_op_thread_count", "1"), ("intra_op_thread_count", "1"))),
        (
            ", instances: 2",
            "defaults: {cores: 8}\n",
            (("inter_op_thread_count", "1"), ("intra_op_thread_count", "4")),
        ),
        (
            ", instances: 3",
            "defaults: {cores: 8}\n",
            (("inter_op_thread_count", "1"), ("intra_op_thread_count", "2")),
        ),
        (
            ", instances: 4",
            "defaults: {cores: 2}\n",
            (("inter_op_thread_count", "1"), ("intra_op_thread_count", "1")),
        ),
        (
            ", threads: 3",
            "defaults: {cores: 8}\n",
            (("inter_op_thread_count", "1"), ("intra_op_thread_count", "3")),
        ),
        (
            ", instances: 2, lend_idle_threads: false",
            "defaults: {cores: 2}\n",
            (
                ("inter_op_thread_count", "1"),
                ("intra_op_thread_count", "1"),
                ("lend_idle_threads", "false"),
            ),
        ),
    ],
)
def test_onnx_threads_fit_the_instances(
    extra: str, defaults: str, expected: tuple[tuple[str, str], ...]
) -> None:
    plan = plan_for("{name: e, task: text-embedding, source: ./m" + extra + "}", BERT_384, defaults)
    assert plan.onnx.parameters == expected


def test_reranking_plan_scores_query_and_text_pairs() -> None:
    entry = "{name: rr, task: text-reranking, source: ./m}"
    plan = plan_for(entry, {"model_type": "bert", "num_labels": 1})
    query = TensorSpec("QUERY", "TYPE_STRING", (1,))
    score = TensorSpec("SCORE", "TYPE_FP32", (1,))
    assert plan.ensemble_inputs == plan.tokenizer.inputs == (query, TEXT)
    assert plan.ensemble_outputs == plan.onnx.outputs == (score,)
    assert plan.postprocess is None  # no strings: the activation is in the graph
    assert plan.head == GraphHead("sigmoid")  # CrossEncoder's default for one label
    raw = plan_for(entry.replace("}", ", activation: none}"), {"model_type": "bert"})
    assert raw.head == GraphHead("identity")
    saved = {"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}
    assert plan_for(entry, {"model_type": "bert", **saved}).head == GraphHead("identity")


def test_reranking_activation_from_files_and_spec(tmp_path: Path) -> None:
    from builder.model_files import reranking_activation

    config = hf({"model_type": "bert", "num_labels": 1})
    assert reranking_activation(None, config, tmp_path) == Setting("sigmoid", "default")
    assert reranking_activation("none", config, tmp_path) == Setting("none", "spec")
    saved = tmp_path / "config_sentence_transformers.json"
    saved.write_text('{"activation_fn": "torch.nn.modules.linear.Identity"}')
    assert reranking_activation(None, config, tmp_path) == Setting("none", "model files")
    saved.write_text('{"activation_fn": "my.module.Tanh"}')
    with pytest.raises(SourceError, match=r"activation 'my\.module\.Tanh' is not served"):
        reranking_activation(None, config, tmp_path)
    assert reranking_activation("sigmoid", config, tmp_path) == Setting("sigmoid", "spec")


def test_token_classification_plan_groups_entities_in_python() -> None:
    labels = {"0": "O", "1": "B-PER", "2": "I-PER"}
    spec = make_spec("{name: ner, task: token-classification, source: ./m, aggregation: max}")
    info = TokenizerInfo(pad_token="[PAD]", pad_id=0, unk_id=1)
    plan = plan_model(spec, spec.models[0], hf({"model_type": "bert", "id2label": labels}), info)
    scores = TensorSpec("TOKEN_SCORES", "TYPE_FP32", (-1, 3))
    offsets = TensorSpec("offsets", "TYPE_INT64", (-1, 2))
    special = TensorSpec("special_tokens_mask", "TYPE_INT64", (-1,))
    entities = TensorSpec("ENTITIES", "TYPE_STRING", (1,))
    assert plan.head == GraphHead("softmax")  # per token, in the graph
    assert plan.onnx.outputs == (scores,)
    assert plan.tokenizer.outputs == (IDS, MASK, TYPES, offsets, special)
    assert plan.postprocess is not None
    assert plan.postprocess.inputs == (TEXT, IDS, MASK, offsets, special, scores)
    assert plan.postprocess.outputs == plan.ensemble_outputs == (entities,)
    assert plan.postprocess.files == ("tokenizer.json",)
    assert plan.postprocess.code == "entities"
    assert dict(plan.postprocess.parameters) == {
        "aggregation": "max",
        "labels": '["O", "B-PER", "I-PER"]',
        "task": "token-classification",
        "tokenizer_file": "tokenizer.json",
        "unk_id": "1",
    }
    # the ensemble passes TEXT and the tokenizer's tensors on to the entity grouping
    assert plan.steps[2].input_map[0] == ("TEXT", "TEXT")
    assert plan.labels == ("O", "B-PER", "I-PER")


def test_member_suffixes_per_task() -> None:
    from builder.plan import member_suffixes

    assert member_suffixes("text-reranking") == ("_tokenizer", "_onnx")
    assert member_suffixes("token-classification") == ("_tokenizer", "_onnx", "_postprocess")
