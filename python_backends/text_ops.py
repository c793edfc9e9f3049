"""Pure pre- and post-processing for text models. No Triton imports: unit-tested directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# the tokenizers Encoding attributes a model input may be filled from; ``offsets`` (character
# [start, end) per token) and ``special_tokens_mask`` feed the entity grouping of
# token-classification, not the model
ENCODING_FIELDS = ("ids", "attention_mask", "type_ids", "special_tokens_mask", "offsets")


# A long text is tokenized from its first max_sequence_length * CHARS_PER_TOKEN characters
# (4x more while that is not provably enough), so tokenizing costs what max_sequence_length
# allows, not what the input's size does; the tokens are the same as the whole text's.
CHARS_PER_TOKEN = 128
_SPACES = " \t\n\r\f\v\u3000"


class BadInput(ValueError):
    """The request's content is wrong (the client's fault): answered with INVALID_ARG."""


def decode_texts(
    raw: npt.NDArray[Any], max_bytes: int | None = None, name: str = "TEXT"
) -> list[str]:
    """A Triton BYTES tensor of shape [batch, 1] to Python strings (UTF-8, strict).

    A text over ``max_bytes`` bytes, or one that is not UTF-8, raises BadInput naming the
    input ``name``, the row and the limit (nothing is tokenized).
    """
    texts = []
    for row, item in enumerate(raw.reshape(-1)):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8", "surrogatepass")
        if max_bytes is not None and len(data) > max_bytes:
            raise BadInput(
                f"{name}[{row}]: {len(data)} bytes is more than this model takes "
                f"({max_bytes} bytes, the model's max_text_bytes)"
            )
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"{name}[{row}]: not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    return texts


def _head_is_enough(tokenizer: Any, head: str) -> bool:
    """Whether the (truncating) tokenizer keeps only tokens of words that end in ``head``
    before its last whitespace: then the rest of the text cannot change them."""
    boundary = max(head.rfind(c) for c in _SPACES)
    encoding = tokenizer.encode(head)
    if boundary < 0 or not encoding.overflowing:
        return False
    ends = [end for start, end in encoding.offsets if end > start]  # specials are (0, 0)
    return bool(ends) and max(ends) <= boundary


def _cut(tokenizer: Any, text: str, max_length: int, chars_per_token: int) -> str:
    limit = max_length * chars_per_token
    while len(text) > limit and not _head_is_enough(tokenizer, text[:limit]):
        limit *= 4
    return text[:limit] if len(text) > limit else text


def cut_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[str]:
    """Each text shortened to a head that gives the same first ``max_length`` tokens as the
    whole text (``tokenizer`` truncates at ``max_length``); short texts are kept whole."""
    return [_cut(tokenizer, text, max_length, CHARS_PER_TOKEN) for text in texts]


# A side of a pair is cut to a tighter head: tokenizers truncates a pair by splitting both
# sides into overflowing pieces and pairing every piece of one with every piece of the other,
# so two 35,000-character sides at 256 tokens made 2,911 encodings (0.65 s, 600 MB).
PAIR_CHARS_PER_TOKEN = 8


def _count(tokenizer: Any, text: str) -> int:
    """How many tokens ``text`` has, without special tokens (linear: a single sequence's
    overflowing pieces follow one another)."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return len(encoding.ids) + sum(len(piece.ids) for piece in encoding.overflowing)


def _longer_than(tokenizer: Any, whole: str, head: str, count: int) -> str:
    """A head of ``whole``, longer than ``head``, with more than ``count`` tokens whose first
    ones are the whole text's; the whole text when none is."""
    limit = len(head)
    while limit < len(whole):
        limit *= 2
        longer = whole[:limit]
        if _head_is_enough(tokenizer, longer) and _count(tokenizer, longer) > count:
            return longer
    return whole


def cut_pairs(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int
) -> list[tuple[str, str]]:
    """``cut_texts`` for pairs: each side cut to a head with the whole side's first tokens,
    so that the pair's tokens under ``longest_first`` truncation are the whole pair's.

    A pair keeps ``budget = max_length - special tokens`` tokens: a side of at most
    ``budget // 2`` tokens whole and the first tokens of the other, or ``budget // 2`` of the
    shorter side (the first, when both are as long) and the rest of the longer one. A cut
    side still has more than ``budget`` tokens, so the outcome is the same, except where the
    budget is odd and both sides have more than ``budget // 2`` tokens: the longer side gets
    the odd token, and cutting may change which side that is. There, both sides are counted
    whole (linear, bounded by max_text_bytes), and the head of the side that must be longer
    is lengthened until it is."""
    processor = tokenizer.post_processor
    specials = processor.num_special_tokens_to_add(True) if processor is not None else 0
    budget = max_length - specials
    out = []
    for a, b in pairs:
        cut_a = _cut(tokenizer, a, max_length, PAIR_CHARS_PER_TOKEN)
        cut_b = _cut(tokenizer, b, max_length, PAIR_CHARS_PER_TOKEN)
        if budget % 2 == 1 and (cut_a, cut_b) != (a, b):
            count_a, count_b = _count(tokenizer, cut_a), _count(tokenizer, cut_b)
            if min(count_a, count_b) > budget // 2:
                first_longer = _count(tokenizer, a) > _count(tokenizer, b)
                if first_longer and count_a <= count_b:
                    cut_a = _longer_than(tokenizer, a, cut_a, count_b)
                elif not first_longer and count_a > count_b:
                    cut_b = _longer_than(tokenizer, b, cut_b, count_a - 1)
        out.append((cut_a, cut_b))
    return out


def configure_tokenizer(tokenizer: Any, max_length: int) -> None:
    """Truncate to ``max_length``; no padding (``tokenize`` pads each batch itself)."""
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()


def padded_length(longest: int, bucket: int, max_length: int) -> int:
    """``longest`` rounded up to a multiple of ``bucket``, but never past ``max_length``
    (nor below ``longest``): batches of similar lengths then share one shape."""
    rounded = -(-longest // bucket) * bucket if bucket > 1 else longest
    return max(longest, min(rounded, max_length))


def tokenize(
    tokenizer: Any,
    texts: Sequence[str] | Sequence[tuple[str, str]],
    fields: Sequence[tuple[str, str]],
    pad_id: int,
    bucket: int = 1,
    max_length: int | None = None,
) -> dict[str, IntArray]:
    """Encode ``texts`` (strings, or (text, text pair) tuples: one sequence per pair, as the
    tokenizer's template joins them, truncated ``longest_first``) into int64 arrays
    [batch, sequence], right-padded to one length: the longest text's, rounded up to a
    multiple of ``bucket`` (capped at ``max_length``). ``fields`` pairs each output name
    with the ``Encoding`` attribute it comes from (``ENCODING_FIELDS``); padding is
    ``pad_id`` for ids and 0 for the rest. ``offsets`` are [batch, sequence, 2]."""
    for name, field in fields:
        if field not in ENCODING_FIELDS:
            raise ValueError(f"{name}: unknown tokenizer field {field!r}")
    encodings = tokenizer.encode_batch(list(texts))
    longest = max((len(e.ids) for e in encodings), default=0)
    width = padded_length(longest, bucket, max_length or longest)
    out: dict[str, IntArray] = {}
    for name, field in fields:
        fill = pad_id if field == "ids" else 0
        shape = (len(encodings), width, 2) if field == "offsets" else (len(encodings), width)
        array = np.full(shape, fill, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            values = getattr(encoding, field)
            if len(values):
                array[row, : len(values)] = values
        out[name] = array
    return out


def mean_pool(hidden: FloatArray, mask: IntArray) -> FloatArray:
    """Average of token vectors where ``mask`` is 1: [batch, seq, dim] -> [batch, dim]."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return np.asarray(summed / counts, dtype=np.float32)


def cls_pool(hidden: FloatArray, mask: IntArray | None = None) -> FloatArray:
    """The first unpadded token's vector: [batch, seq, dim] -> [batch, dim]."""
    if mask is None:
        return np.ascontiguousarray(hidden[:, 0, :], dtype=np.float32)
    first = mask.astype(bool).argmax(axis=1)
    rows = np.arange(hidden.shape[0])
    return np.ascontiguousarray(hidden[rows, first, :], dtype=np.float32)


def max_pool(hidden: FloatArray, mask: IntArray) -> FloatArray:
    """Per dimension, the largest value over tokens where ``mask`` is 1."""
    masked = np.where(mask[:, :, None].astype(bool), hidden.astype(np.float32), np.float32(-1e9))
    return np.asarray(masked.max(axis=1), dtype=np.float32)


def mean_sqrt_len_pool(hidden: FloatArray, mask: IntArray) -> FloatArray:
    """The sum of token vectors where ``mask`` is 1, divided by the square root of their count."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden.astype(np.float32) * weights).sum(axis=1)
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    return np.asarray(summed / np.sqrt(counts), dtype=np.float32)


def last_token_pool(hidden: FloatArray, mask: IntArray) -> FloatArray:
    """The vector of the last token where ``mask`` is 1 (right or left padding alike)."""
    flipped = mask[:, ::-1].astype(bool)
    last = mask.shape[1] - 1 - flipped.argmax(axis=1)
    rows = np.arange(hidden.shape[0])
    return np.ascontiguousarray(hidden[rows, last, :], dtype=np.float32)


# sentence-transformers' pooling modes this module serves (1_Pooling/config.json names)
POOLINGS = ("cls", "lasttoken", "max", "mean", "mean_sqrt_len_tokens")


def pool(hidden: FloatArray, mask: IntArray, pooling: str) -> FloatArray:
    """One vector per text: ``pooling`` is one of ``POOLINGS``."""
    if pooling == "mean":
        return mean_pool(hidden, mask)
    if pooling == "cls":
        return cls_pool(hidden, mask)
    if pooling == "max":
        return max_pool(hidden, mask)
    if pooling == "mean_sqrt_len_tokens":
        return mean_sqrt_len_pool(hidden, mask)
    if pooling == "lasttoken":
        return last_token_pool(hidden, mask)
    raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")


def l2_normalize(vectors: FloatArray) -> FloatArray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.clip(norms, 1e-12, None), dtype=np.float32)


def embed(hidden: FloatArray, mask: IntArray, pooling: str, normalize: bool) -> FloatArray:
    """Sentence embeddings from token states, as sentence-transformers computes them."""
    pooled = pool(hidden, mask, pooling)
    return l2_normalize(pooled) if normalize else pooled


def softmax(logits: FloatArray) -> FloatArray:
    """Probabilities over the last axis ([batch, labels] or [batch, tokens, labels])."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=-1, keepdims=True), dtype=np.float32)


def sigmoid(logits: FloatArray) -> FloatArray:
    """1 / (1 + exp(-x)), elementwise (a reranker's score)."""
    values = logits.astype(np.float64)
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * values)), dtype=np.float32)


def best_labels(scores: FloatArray, labels: Sequence[str]) -> npt.NDArray[np.object_]:
    """The label of each row's highest score, as a [batch, 1] BYTES array."""
    if scores.shape[1] != len(labels):
        raise ValueError(f"{scores.shape[1]} scores but {len(labels)} labels")
    best = scores.argmax(axis=1)
    return np.array([[labels[i].encode("utf-8")] for i in best], dtype=np.object_)


def classify(
    logits: FloatArray, labels: Sequence[str]
) -> tuple[npt.NDArray[np.object_], FloatArray]:
    """Probabilities in label order, and the best label per row as a [batch, 1] BYTES array."""
    if logits.shape[1] != len(labels):
        raise ValueError(f"{logits.shape[1]} logits but {len(labels)} labels")
    scores = softmax(logits)
    return best_labels(scores, labels), scores
