"""Pure pre- and post-processing for text models. No Triton imports: unit-tested directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

# the tokenizers Encoding attributes a model input may be filled from
ENCODING_FIELDS = ("ids", "attention_mask", "type_ids")


# A long text is tokenized from its first max_sequence_length * CHARS_PER_TOKEN characters
# (4x more while that is not provably enough), so tokenizing costs what max_sequence_length
# allows, not what the input's size does; the tokens are the same as the whole text's.
CHARS_PER_TOKEN = 128
_SPACES = " \t\n\r\f\v\u3000"


class BadInput(ValueError):
    """The request's content is wrong (the client's fault): answered with INVALID_ARG."""


def decode_texts(raw: npt.NDArray[Any], max_bytes: int | None = None) -> list[str]:
    """A Triton BYTES tensor of shape [batch, 1] to Python strings (UTF-8, strict).

    A text over ``max_bytes`` bytes, or one that is not UTF-8, raises BadInput naming TEXT,
    the row and the limit (nothing is tokenized).
    """
    texts = []
    for row, item in enumerate(raw.reshape(-1)):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8", "surrogatepass")
        if max_bytes is not None and len(data) > max_bytes:
            raise BadInput(
                f"TEXT[{row}]: {len(data)} bytes is more than this model takes "
                f"({max_bytes} bytes, the model's max_text_bytes)"
            )
        try:
            texts.append(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"TEXT[{row}]: not valid UTF-8 ({exc.reason} at byte {exc.start})"
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


def cut_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[str]:
    """Each text shortened to a head that gives the same first ``max_length`` tokens as the
    whole text (``tokenizer`` truncates at ``max_length``); short texts are kept whole."""
    out = []
    for text in texts:
        limit = max_length * CHARS_PER_TOKEN
        while len(text) > limit and not _head_is_enough(tokenizer, text[:limit]):
            limit *= 4
        out.append(text[:limit] if len(text) > limit else text)
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
    texts: Sequence[str],
    fields: Sequence[tuple[str, str]],
    pad_id: int,
    bucket: int = 1,
    max_length: int | None = None,
) -> dict[str, IntArray]:
    """Encode ``texts`` into int64 arrays [batch, sequence], right-padded to one length: the
    longest text's, rounded up to a multiple of ``bucket`` (capped at ``max_length``).
    ``fields`` pairs each output name with the ``Encoding`` attribute it comes from
    (``ENCODING_FIELDS``); padding is ``pad_id`` for ids and 0 for the rest."""
    for name, field in fields:
        if field not in ENCODING_FIELDS:
            raise ValueError(f"{name}: unknown tokenizer field {field!r}")
    encodings = tokenizer.encode_batch(list(texts))
    longest = max((len(e.ids) for e in encodings), default=0)
    width = padded_length(longest, bucket, max(longest, max_length or longest))
    out: dict[str, IntArray] = {}
    for name, field in fields:
        fill = pad_id if field == "ids" else 0
        array = np.full((len(encodings), width), fill, dtype=np.int64)
        for row, encoding in enumerate(encodings):
            values = getattr(encoding, field)
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
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


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
