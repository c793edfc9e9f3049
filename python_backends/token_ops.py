"""Entities from per-token probabilities, as transformers' TokenClassificationPipeline makes
them. No Triton imports: unit-tested directly against the pipeline.

The graph gives each token's label probabilities (softmax in the graph); this module turns one
text's tokens into the pipeline's list of dicts for an aggregation strategy:

- ``none``: one dict per token (``entity``, ``score``, ``index``, ``word``, ``start``, ``end``);
- ``simple``: adjacent tokens of one entity type (B-/I- tags) grouped (``entity_group``);
- ``first`` / ``average`` / ``max``: the tokens of a word first agree on one label (the first
  token's, the averaged probabilities', the most confident token's), then words are grouped.

Offsets are characters of the text as sent. Tokens labelled ``O`` are left out, as the
pipeline's default ``ignore_labels`` does. ``word`` is the tokens joined by the tokenizer's
decoder (transformers' ``convert_tokens_to_string``); an unknown token's word is its text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["AGGREGATIONS", "Vocabulary", "entities", "vocabulary"]

AGGREGATIONS = ("none", "simple", "first", "average", "max")
IGNORED_LABELS = ("O",)


@dataclass(frozen=True)
class Vocabulary:
    """What the grouping needs from the tokenizer."""

    token: Callable[[int], str]  # an id's token string (convert_ids_to_tokens)
    join: Callable[[list[str]], str]  # tokens to text (convert_tokens_to_string)
    unk_id: int | None  # the unknown token's id: its word is the text it covers
    # whether the tokenizer's model marks word continuations (WordPiece's "##"): then a token
    # is a subword when its string is not the text it covers; else a token is a subword when
    # no space is on either side of its start (the pipeline's fallback heuristic)
    word_aware: bool


def vocabulary(tokenizer: Any, unk_id: int | None) -> Vocabulary:
    """The Vocabulary of a ``tokenizers.Tokenizer`` (the one transformers' fast tokenizer
    wraps), with transformers' ``unk_token_id``."""
    decoder = tokenizer.decoder
    join: Callable[[list[str]], str] = decoder.decode if decoder is not None else " ".join
    word_aware = bool(getattr(tokenizer.model, "continuing_subword_prefix", None))
    return Vocabulary(tokenizer.id_to_token, join, unk_id, word_aware)


def _pre_entities(
    text: str,
    ids: Sequence[int],
    offsets: npt.NDArray[np.int64],
    special: Sequence[int],
    scores: npt.NDArray[np.float32],
    vocab: Vocabulary,
) -> list[dict[str, Any]]:
    found = []
    for index, token_id in enumerate(ids):
        if special[index]:
            continue
        word = vocab.token(int(token_id))
        start, end = int(offsets[index][0]), int(offsets[index][1])
        covered = text[start:end]
        if vocab.word_aware:
            is_subword = len(word) != len(covered)
        else:
            is_subword = start > 0 and " " not in text[start - 1 : start + 1]
        if vocab.unk_id is not None and int(token_id) == vocab.unk_id:
            word, is_subword = covered, False
        found.append(
            {
                "word": word,
                "scores": scores[index],
                "start": start,
                "end": end,
                "index": index,
                "is_subword": is_subword,
            }
        )
    return found


def _by_token(pre: list[dict[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for entity in pre:
        best = int(entity["scores"].argmax())
        out.append(
            {
                "entity": labels[best],
                "score": entity["scores"][best],
                "index": entity["index"],
                "word": entity["word"],
                "start": entity["start"],
                "end": entity["end"],
            }
        )
    return out


def _word(
    tokens: list[dict[str, Any]], labels: Sequence[str], how: str, vocab: Vocabulary
) -> dict[str, Any]:
    if how == "first":
        scores = tokens[0]["scores"]
    elif how == "max":
        scores = max(tokens, key=lambda token: token["scores"].max())["scores"]
    else:  # average
        scores = np.nanmean(np.stack([token["scores"] for token in tokens]), axis=0)
    best = int(scores.argmax())
    return {
        "entity": labels[best],
        "score": scores[best],
        "word": vocab.join([token["word"] for token in tokens]),
        "start": tokens[0]["start"],
        "end": tokens[-1]["end"],
    }


def _by_word(
    pre: list[dict[str, Any]], labels: Sequence[str], how: str, vocab: Vocabulary
) -> list[dict[str, Any]]:
    words: list[dict[str, Any]] = []
    group: list[dict[str, Any]] = []
    for token in pre:
        if group and not token["is_subword"]:
            words.append(_word(group, labels, how, vocab))
            group = []
        group.append(token)
    if group:
        words.append(_word(group, labels, how, vocab))
    return words


def _tag(label: str) -> tuple[str, str]:
    """(B or I, the entity type): a label without a B-/I- prefix continues (I)."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group(members: list[dict[str, Any]], vocab: Vocabulary) -> dict[str, Any]:
    return {
        "entity_group": members[0]["entity"].split("-", 1)[-1],
        "score": np.mean(np.nanmean([member["score"] for member in members])),
        "word": vocab.join([member["word"] for member in members]),
        "start": members[0]["start"],
        "end": members[-1]["end"],
    }


def _grouped(found: list[dict[str, Any]], vocab: Vocabulary) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    for entity in found:
        if current:
            bi, tag = _tag(entity["entity"])
            _, last_tag = _tag(current[-1]["entity"])
            if tag != last_tag or bi == "B":
                groups.append(_group(current, vocab))
                current = []
        current.append(entity)
    if current:
        groups.append(_group(current, vocab))
    return groups


def entities(
    text: str,
    ids: Sequence[int],
    offsets: npt.NDArray[np.int64],
    special: Sequence[int],
    scores: npt.NDArray[np.float32],
    labels: Sequence[str],
    aggregation: str,
    vocab: Vocabulary,
) -> list[dict[str, Any]]:
    """One text's entities (JSON-ready dicts) from its tokens (no padding): ids, character
    offsets [tokens, 2], special tokens mask and label probabilities [tokens, labels]."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; known: {', '.join(AGGREGATIONS)}")
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores of shape {list(scores.shape)} for {len(labels)} labels")
    pre = _pre_entities(text, ids, offsets, special, scores, vocab)
    if aggregation in ("none", "simple"):
        found = _by_token(pre, labels)
    else:
        found = _by_word(pre, labels, aggregation, vocab)
    if aggregation != "none":
        found = _grouped(found, vocab)
    kept = [
        entity
        for entity in found
        if entity.get("entity") not in IGNORED_LABELS
        and entity.get("entity_group") not in IGNORED_LABELS
    ]
    for entity in kept:
        entity["score"] = float(entity["score"])
    return kept
