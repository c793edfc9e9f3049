"""python_backends.token_ops: entities equal to transformers' token-classification pipeline,
for every aggregation strategy, on texts tokenized as the served tokenizer member does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from python_backends import text_ops, token_ops
from tests.tiny_models import make_model

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
MAX_LENGTH = 16
TEXTS = [
    "hello world , the film was great !",
    "Grüße aus Köln: naïve café, 東京タワー 🚀",
    "the  server   was   very    slow...",
    "",
    "unknownword zzz triton",
    " ".join(["one two three four five six seven eight nine ten"] * 4),  # cut at 16 tokens
    "a,b;c!d?e",
]
FIELDS = [
    ("input_ids", "ids"),
    ("attention_mask", "attention_mask"),
    ("offsets", "offsets"),
    ("special_tokens_mask", "special_tokens_mask"),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(
        tmp_path_factory.mktemp("ner"),
        "bert",
        "token-classification",
        id2label=dict(enumerate(LABELS)),
        seed=4,
        head_scale=30.0,
    )


def pipeline_entities(source: Path, aggregation: str) -> list[list[dict[str, Any]]]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(str(source), model_max_length=MAX_LENGTH)
    model = AutoModelForTokenClassification.from_pretrained(str(source))
    ner = pipeline(
        "token-classification",
        model=model,
        tokenizer=tokenizer,
        aggregation_strategy=aggregation,
        device="cpu",
    )
    return [ner(text) for text in TEXTS]


def served_entities(source: Path, aggregation: str) -> list[list[dict[str, Any]]]:
    """The tokenizer member's tensors, the graph's probabilities (torch + softmax here), and
    token_ops, as the served ensemble runs them."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    text_ops.configure_tokenizer(tokenizer, MAX_LENGTH)
    cut = text_ops.cut_texts(tokenizer, TEXTS, MAX_LENGTH)
    arrays = text_ops.tokenize(tokenizer, cut, FIELDS, 0, bucket=8, max_length=MAX_LENGTH)
    model = AutoModelForTokenClassification.from_pretrained(str(source)).eval()
    with torch.no_grad():
        logits = model(
            input_ids=torch.from_numpy(arrays["input_ids"]),
            attention_mask=torch.from_numpy(arrays["attention_mask"]),
        ).logits.numpy()
    probabilities = text_ops.softmax(logits)
    unk = AutoTokenizer.from_pretrained(str(source)).unk_token_id
    vocab = token_ops.vocabulary(tokenizer, unk)
    out = []
    for row, text in enumerate(TEXTS):
        length = int(arrays["attention_mask"][row].sum())
        out.append(
            token_ops.entities(
                text,
                arrays["input_ids"][row, :length].tolist(),
                arrays["offsets"][row, :length],
                arrays["special_tokens_mask"][row, :length].tolist(),
                probabilities[row, :length],
                LABELS,
                aggregation,
                vocab,
            )
        )
    return out


def assert_same(served: list[list[dict[str, Any]]], expected: list[list[dict[str, Any]]]) -> None:
    assert len(served) == len(expected)
    for mine, theirs in zip(served, expected, strict=True):
        assert [{k: v for k, v in e.items() if k != "score"} for e in mine] == [
            {k: v for k, v in e.items() if k != "score"} for e in theirs
        ]
        np.testing.assert_allclose(
            [e["score"] for e in mine], [float(e["score"]) for e in theirs], atol=1e-5
        )


@pytest.mark.parametrize("aggregation", token_ops.AGGREGATIONS)
def test_entities_equal_the_transformers_pipeline(source: Path, aggregation: str) -> None:
    expected = pipeline_entities(source, aggregation)
    served = served_entities(source, aggregation)
    assert_same(served, expected)
    # the tiny model's spread head finds entities of both types, in several texts
    groups = {e.get("entity_group", e.get("entity")) for row in served for e in row}
    assert len(groups) >= 2
    assert sum(1 for row in served if row) >= 4
    # offsets are characters of the text as sent
    for text, row in zip(TEXTS, served, strict=True):
        for entity in row:
            assert 0 <= entity["start"] <= entity["end"] <= len(text)


def test_unknown_aggregation_and_label_mismatch_are_errors() -> None:
    vocab = token_ops.Vocabulary(str, " ".join, None, True)
    scores = np.zeros((1, 2), dtype=np.float32)
    offsets = np.zeros((1, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="unknown aggregation 'longest'"):
        token_ops.entities("a", [5], offsets, [0], scores, ["O", "B-X"], "longest", vocab)
    with pytest.raises(ValueError, match="scores of shape \\[1, 2\\] for 3 labels"):
        token_ops.entities("a", [5], offsets, [0], scores, ["O", "B", "I"], "simple", vocab)


def test_fallback_heuristic_without_subword_marks() -> None:
    """A tokenizer that does not mark continuations: a token is a word's continuation when
    no space is on either side of its start (the pipeline's heuristic)."""
    text = "newyork is big"
    tokens = {1: "new", 2: "york", 3: "is", 4: "big"}
    vocab = token_ops.Vocabulary(tokens.__getitem__, "".join, None, False)
    offsets = np.array([[0, 3], [3, 7], [8, 10], [11, 14]], dtype=np.int64)
    scores = np.array(
        [[0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]], dtype=np.float32
    )
    labels = ["O", "B-LOC", "I-LOC"]
    first = token_ops.entities(text, [1, 2, 3, 4], offsets, [0] * 4, scores, labels, "first", vocab)
    assert first == [
        {
            "entity_group": "LOC",
            "score": pytest.approx(0.8),
            "word": "newyork",
            "start": 0,
            "end": 7,
        },
        {"entity_group": "LOC", "score": pytest.approx(0.5), "word": "big", "start": 11, "end": 14},
    ]
