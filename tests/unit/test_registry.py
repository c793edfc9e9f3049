"""builder.registry: what the exporter supports per architecture and task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from builder.errors import ExportError, SourceError
from builder.model_files import HFConfig, hf_config_from
from builder.registry import REGISTRY


def hf(config: dict[str, Any]) -> HFConfig:
    """config.json's ``config`` over the keys every model has."""
    base = {"model_type": "bert", "vocab_size": 100, "hidden_size": 32}
    return hf_config_from({**base, **config}, Path("config.json"))


@pytest.mark.parametrize(
    ("model_type", "inputs"),
    [
        ("bert", ("input_ids", "attention_mask", "token_type_ids")),
        ("roberta", ("input_ids", "attention_mask")),
        ("distilbert", ("input_ids", "attention_mask")),
        ("xlm-roberta", ("input_ids", "attention_mask")),
        ("mpnet", ("input_ids", "attention_mask")),
        ("deberta-v2", ("input_ids", "attention_mask")),
        ("electra", ("input_ids", "attention_mask", "token_type_ids")),
        ("modernbert", ("input_ids", "attention_mask")),
    ],
)
def test_architecture_inputs(model_type: str, inputs: tuple[str, ...]) -> None:
    architecture = REGISTRY.architecture(model_type)
    assert architecture.model_type == model_type
    assert architecture.input_names == inputs
    assert (architecture.example_batch, architecture.example_sequence) == (2, 8)


def test_supported_lists_are_sorted() -> None:
    assert REGISTRY.model_types == (
        "bert",
        "deberta-v2",
        "distilbert",
        "electra",
        "modernbert",
        "mpnet",
        "roberta",
        "xlm-roberta",
    )
    assert REGISTRY.tasks == (
        "text-classification",
        "text-embedding",
        "text-reranking",
        "token-classification",
    )


def test_tasks() -> None:
    embedding = REGISTRY.task("text-embedding")
    assert (embedding.auto_class, embedding.raw_output, embedding.output_name) == (
        "AutoModel",
        "last_hidden_state",
        "EMBEDDING",
    )
    classification = REGISTRY.task("text-classification")
    assert (
        classification.auto_class,
        classification.raw_output,
        classification.output_name,
    ) == ("AutoModelForSequenceClassification", "logits", "SCORES")
    config = hf({"num_labels": 1})
    reranking = REGISTRY.task("text-reranking")
    assert (reranking.auto_class, reranking.output_name) == (
        "AutoModelForSequenceClassification",
        "SCORE",
    )
    assert reranking.output_dims(config) == (1,)
    tokens = REGISTRY.task("token-classification")
    assert (tokens.auto_class, tokens.output_name) == (
        "AutoModelForTokenClassification",
        "TOKEN_SCORES",
    )
    assert tokens.output_dims(hf({"num_labels": 5})) == (-1, 5)
    assert tokens.head_class == "ForTokenClassification"
    assert REGISTRY.task("text-embedding").head_class is None


def test_unknown_architecture_lists_the_supported_ones() -> None:
    with pytest.raises(ExportError) as caught:
        REGISTRY.architecture("gpt2")
    assert str(caught.value) == (
        "architecture 'gpt2' is not supported for export; supported: bert, deberta-v2, "
        "distilbert, electra, modernbert, mpnet, roberta, xlm-roberta"
    )


def test_unknown_task_lists_the_supported_ones() -> None:
    with pytest.raises(ExportError) as caught:
        REGISTRY.task("summarization")
    assert str(caught.value) == (
        "task 'summarization' is not supported for export; "
        "supported: text-classification, text-embedding, text-reranking, token-classification"
    )


@pytest.mark.parametrize(
    ("config", "dims"),
    [
        ({"hidden_size": 384}, (384,)),
        ({"dim": 768}, (768,)),  # DistilBERT's name for it
        ({"hidden_size": 32, "dim": 64}, (32,)),  # hidden_size wins
        ({"d_model": 48}, (48,)),
    ],
)
def test_embedding_output_dims(config: dict[str, Any], dims: tuple[int, ...]) -> None:
    data = {"model_type": "bert", "vocab_size": 100, **config}
    assert REGISTRY.task("text-embedding").output_dims(hf_config_from(data, Path("c"))) == dims


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "config.json: none of hidden_size, dim, d_model is set"),
        ({"hidden_size": "384"}, "config.json: hidden_size: expected an integer, got '384'"),
    ],
)
def test_a_missing_or_mistyped_hidden_size_is_named(config: dict[str, Any], message: str) -> None:
    data = {"model_type": "bert", "vocab_size": 100, **config}
    with pytest.raises(SourceError) as info:
        hf_config_from(data, Path("config.json"))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("config", "count"),
    [
        ({"id2label": {"0": "a", "1": "b", "2": "c"}}, 3),
        ({"id2label": {"0": "a"}, "num_labels": 5}, 1),  # id2label wins, as in transformers
        ({"id2label": {}, "num_labels": 5}, 5),
        ({"num_labels": 4}, 4),
        ({}, 2),  # transformers' default
    ],
)
def test_classification_output_dims(config: dict[str, Any], count: int) -> None:
    assert hf(config).num_labels == count
    assert REGISTRY.task("text-classification").output_dims(hf(config)) == (count,)


def test_a_mistyped_count_is_named() -> None:
    with pytest.raises(SourceError, match=r"^config.json: num_labels: expected an integer"):
        hf({"num_labels": "4"})


def test_every_input_has_a_role_and_a_tokenizer_field() -> None:
    for model_type in REGISTRY.model_types:
        architecture = REGISTRY.architecture(model_type)
        roles = [i.role for i in architecture.inputs]
        assert roles[:2] == ["token_ids", "attention_mask"], model_type
        assert len(set(roles)) == len(roles), model_type
        assert architecture.mask_name == "attention_mask"
        fields = {i.encoding_field for i in architecture.inputs}
        assert fields <= {"ids", "attention_mask", "type_ids"}, model_type


def test_default_relative_tolerances() -> None:
    assert REGISTRY.task("text-embedding").rtol == 1e-4
    assert REGISTRY.task("text-classification").rtol == 1e-4


@pytest.mark.parametrize(
    ("model_type", "config", "positions"),
    [
        ("bert", {"max_position_embeddings": 512}, 512),
        ("distilbert", {"max_position_embeddings": 512}, 512),
        # RoBERTa numbers positions from pad_token_id + 1: 514 rows hold 512 tokens
        ("roberta", {"max_position_embeddings": 514, "pad_token_id": 1}, 512),
        ("roberta", {"max_position_embeddings": 520, "pad_token_id": 0}, 519),
        ("bert", {}, None),
    ],
)
def test_max_positions(model_type: str, config: dict[str, object], positions: int | None) -> None:
    assert REGISTRY.architecture(model_type).max_positions(hf(config)) == positions
