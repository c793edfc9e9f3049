"""python_backends/text_ops.py: the pure functions the Triton Python models call."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from python_backends import text_ops
from tests.tiny_models import write_tokenizer

NAMES = [("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids")]


# --- pooling and normalisation --------------------------------------------------------------


def test_mean_pool_ignores_padded_positions() -> None:
    hidden = np.array(
        [
            [[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],  # last position is padding
            [[2.0, 0.0], [4.0, 2.0], [6.0, 4.0]],
        ],
        dtype=np.float32,
    )
    mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=np.int64)
    pooled = text_ops.mean_pool(hidden, mask)
    assert pooled.dtype == np.float32
    np.testing.assert_array_equal(pooled, [[2.0, 3.0], [4.0, 2.0]])


def test_mean_pool_matches_a_hand_computation_on_random_data() -> None:
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.int64)
    expected = np.stack([hidden[0].mean(axis=0), hidden[1, :2].mean(axis=0), hidden[2, 0]])
    np.testing.assert_allclose(text_ops.mean_pool(hidden, mask), expected, rtol=1e-6)


def test_mean_pool_of_an_all_padding_row_is_zero() -> None:
    hidden = np.ones((1, 2, 3), dtype=np.float32)
    mask = np.zeros((1, 2), dtype=np.int64)
    np.testing.assert_array_equal(text_ops.mean_pool(hidden, mask), np.zeros((1, 3)))


def test_cls_pool_takes_the_first_token() -> None:
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    pooled = text_ops.cls_pool(hidden)
    assert pooled.dtype == np.float32
    assert pooled.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(pooled, [[0.0, 1.0], [6.0, 7.0]])


def test_l2_normalize() -> None:
    vectors = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]], dtype=np.float32)
    normed = text_ops.l2_normalize(vectors)
    assert normed.dtype == np.float32
    np.testing.assert_allclose(normed, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]], rtol=1e-6)


def test_embed_mean_normalized() -> None:
    hidden = np.array([[[3.0, 0.0], [3.0, 8.0], [9.0, 9.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]], dtype=np.int64)
    # mean of the first two positions is [3, 4]; unit length is [0.6, 0.8]
    np.testing.assert_allclose(text_ops.embed(hidden, mask, "mean", True), [[0.6, 0.8]], rtol=1e-6)


def test_embed_without_normalize_returns_the_pooled_vector() -> None:
    hidden = np.array([[[3.0, 0.0], [3.0, 8.0], [9.0, 9.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]], dtype=np.int64)
    np.testing.assert_array_equal(text_ops.embed(hidden, mask, "mean", False), [[3.0, 4.0]])
    np.testing.assert_array_equal(text_ops.embed(hidden, mask, "cls", False), [[3.0, 0.0]])
    np.testing.assert_allclose(text_ops.embed(hidden, mask, "cls", True), [[1.0, 0.0]])


def test_embed_rejects_unknown_pooling() -> None:
    hidden = np.zeros((1, 1, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"^unknown pooling 'weighted'; known: cls, lasttoken"):
        text_ops.embed(hidden, np.ones((1, 1), dtype=np.int64), "weighted", True)


# --- classification -------------------------------------------------------------------------


def test_softmax_rows_sum_to_one_and_match_a_reference() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0], [0.0, 0.0, 0.0]], np.float32)
    scores = text_ops.softmax(logits)
    assert scores.dtype == np.float32
    reference = np.exp(logits[0].astype(np.float64)) / np.exp(logits[0].astype(np.float64)).sum()
    np.testing.assert_allclose(scores[0], reference, rtol=1e-6)
    np.testing.assert_allclose(scores[1], [0.5, 0.5, 0.0], atol=1e-7)  # no overflow
    np.testing.assert_allclose(scores[2], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(scores.sum(axis=1), [1.0, 1.0, 1.0], rtol=1e-6)


def test_classify_returns_argmax_label_bytes() -> None:
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5]], dtype=np.float32)
    labels, scores = text_ops.classify(logits, ["negative", "positivé"])
    assert labels.shape == (3, 1)
    assert labels.dtype == np.object_
    assert labels.tolist() == [["positivé".encode()], [b"negative"], ["positivé".encode()]]
    np.testing.assert_allclose(scores, text_ops.softmax(logits))


def test_classify_rejects_a_label_count_mismatch() -> None:
    with pytest.raises(ValueError, match=r"^3 logits but 2 labels$"):
        text_ops.classify(np.zeros((1, 3), dtype=np.float32), ["a", "b"])


# --- text decoding --------------------------------------------------------------------------


def test_decode_texts_utf8_bytes() -> None:
    raw = np.array([["héllo".encode()], [b"world"], ["日本".encode()]], dtype=np.object_)
    assert text_ops.decode_texts(raw) == ["héllo", "world", "日本"]


def test_decode_texts_keeps_str_items() -> None:
    assert text_ops.decode_texts(np.array([["a"], ["b"]], dtype=np.object_)) == ["a", "b"]


def test_decode_texts_rejects_invalid_utf8_naming_the_row() -> None:
    raw = np.array([[b"ok"], [b"\xff\xfe"]], dtype=np.object_)
    with pytest.raises(text_ops.BadInput) as info:
        text_ops.decode_texts(raw)
    assert str(info.value) == "TEXT[1]: not valid UTF-8 (invalid start byte at byte 0)"


def test_decode_texts_refuses_a_text_over_the_byte_limit() -> None:
    raw = np.array([[b"short"], ["é" * 6]], dtype=np.object_)  # 12 bytes
    assert text_ops.decode_texts(raw, max_bytes=12) == ["short", "é" * 6]
    with pytest.raises(text_ops.BadInput) as info:
        text_ops.decode_texts(raw, max_bytes=11)
    assert str(info.value) == (
        "TEXT[1]: 12 bytes is more than this model takes (11 bytes, the model's max_text_bytes)"
    )


def test_cut_texts_keeps_short_texts_and_cuts_long_ones(vocab_file: Path) -> None:
    tokenizer = wordpiece(vocab_file)
    text_ops.configure_tokenizer(tokenizer, 4)
    limit = 4 * text_ops.CHARS_PER_TOKEN
    words = "good " * 200  # 1,000 characters of 200 words: the first 512 are plenty
    texts = ["a b", "x" * limit, words]
    assert text_ops.cut_texts(tokenizer, texts, 4) == ["a b", "x" * limit, words[:limit]]
    # one word longer than the head: the head cannot show where it ends, so it is kept whole
    assert text_ops.cut_texts(tokenizer, ["y" * 5000], 4) == ["y" * 5000]


@pytest.mark.parametrize("max_length", [8, 64, 256])
def test_cutting_before_tokenizing_changes_no_token(vocab_file: Path, max_length: int) -> None:
    """The first max_length tokens of a long text are the same with and without the cut."""
    tokenizer = wordpiece(vocab_file)
    text_ops.configure_tokenizer(tokenizer, max_length)
    long_word = "good" * 40  # one word of 160 characters: a single [UNK] token
    texts = [
        " ".join(["the movie was very good and the service was fast"] * 400),
        " ".join([long_word] * 300),
        "hello " * 20000,
    ]
    fields = [("input_ids", "ids"), ("attention_mask", "attention_mask")]
    whole = text_ops.tokenize(tokenizer, texts, fields, 0)
    cut = text_ops.tokenize(tokenizer, text_ops.cut_texts(tokenizer, texts, max_length), fields, 0)
    for name, _ in fields:
        assert cut[name].tolist() == whole[name].tolist()


# --- tokenization ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    write_tokenizer(directory)
    return directory / "vocab.txt"


def wordpiece(vocab_file: Path) -> Tokenizer:
    """A BERT-style WordPiece tokenizer built from scratch with ``tokenizers``."""
    tokens = vocab_file.read_text(encoding="utf-8").splitlines()
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return tokenizer


def ids_of(vocab_file: Path, *tokens: str) -> list[int]:
    vocab = vocab_file.read_text(encoding="utf-8").splitlines()
    return [vocab.index(token) for token in tokens]


def test_tokenize_refuses_an_unknown_field(vocab_file: Path) -> None:
    with pytest.raises(ValueError, match=r"^input_ids: unknown tokenizer field 'input_ids'$"):
        text_ops.tokenize(wordpiece(vocab_file), ["ok"], [("input_ids", "input_ids")], 0)


def test_tokenize_pads_to_the_longest_with_the_pad_id(vocab_file: Path) -> None:
    tokenizer = wordpiece(vocab_file)
    text_ops.configure_tokenizer(tokenizer, max_length=16)
    pad_id = ids_of(vocab_file, "[MASK]")[0]
    out = text_ops.tokenize(tokenizer, ["hello world", "the movie is good"], NAMES, pad_id)

    assert list(out) == [name for name, _ in NAMES]
    assert all(a.dtype == np.int64 and a.shape == (2, 6) for a in out.values())
    cls, sep, pad = ids_of(vocab_file, "[CLS]", "[SEP]", "[MASK]")
    hello, world, the, movie, is_, good = ids_of(
        vocab_file, "hello", "world", "the", "movie", "is", "good"
    )
    assert out["input_ids"].tolist() == [
        [cls, hello, world, sep, pad, pad],
        [cls, the, movie, is_, good, sep],
    ]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]
    assert out["token_type_ids"].tolist() == [[0] * 6, [0] * 6]


def test_tokenize_truncates_to_max_length_keeping_sep(vocab_file: Path) -> None:
    tokenizer = wordpiece(vocab_file)
    text_ops.configure_tokenizer(tokenizer, max_length=5)
    out = text_ops.tokenize(tokenizer, ["one two three one two three", "yes"], NAMES, 0)
    cls, sep, one, two, three, yes = ids_of(
        vocab_file, "[CLS]", "[SEP]", "one", "two", "three", "yes"
    )
    assert out["input_ids"].tolist() == [[cls, one, two, three, sep], [cls, yes, sep, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_tokenize_returns_only_the_names_asked_for(vocab_file: Path) -> None:
    tokenizer = wordpiece(vocab_file)
    text_ops.configure_tokenizer(tokenizer, max_length=8)
    out = text_ops.tokenize(
        tokenizer, ["ok"], [("input_ids", "ids"), ("attention_mask", "attention_mask")], 0
    )
    assert list(out) == ["input_ids", "attention_mask"]


TEXTS = [
    "Hello World!",
    "The movie was VERY good, and the service was fast.",
    "Héllo wörld",  # accents stripped by the BERT normaliser
    "unknownword zzz",
    "",
    "love love love love love love love love love love love love love love",
]


@pytest.mark.parametrize("max_length", [6, 12, 64])
def test_tokenize_equals_bert_tokenizer_fast(vocab_file: Path, max_length: int) -> None:
    from transformers import BertTokenizerFast

    reference = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    expected = reference(TEXTS, padding=True, truncation=True, max_length=max_length)

    tokenizer = wordpiece(vocab_file)
    text_ops.configure_tokenizer(tokenizer, max_length)
    out = text_ops.tokenize(tokenizer, TEXTS, NAMES, reference.pad_token_id)

    for name, _ in NAMES:
        assert out[name].tolist() == expected[name], name
    # the texts really are tokenized, not all [UNK]
    assert len(set(out["input_ids"].ravel().tolist())) > 10


def test_configure_tokenizer_on_a_saved_tokenizer_json(vocab_file: Path) -> None:
    """What the Triton tokenizer model does: load tokenizer.json, then configure."""
    path = vocab_file.parent / "built.json"
    wordpiece(vocab_file).save(str(path))
    tokenizer = Tokenizer.from_file(str(path))
    text_ops.configure_tokenizer(tokenizer, max_length=4)
    out = text_ops.tokenize(tokenizer, ["good", "very very good"], [("input_ids", "ids")], 0)
    cls, sep, good, very = ids_of(vocab_file, "[CLS]", "[SEP]", "good", "very")
    assert out["input_ids"].tolist() == [[cls, good, sep, 0], [cls, very, very, sep]]


@pytest.mark.parametrize(
    ("longest", "bucket", "max_length", "width"),
    [
        (5, 1, 256, 5),  # bucket 1: the longest text only
        (5, 16, 256, 16),
        (16, 16, 256, 16),
        (17, 16, 256, 32),
        (250, 16, 256, 256),
        (250, 16, 252, 252),  # never past max_sequence_length
        (20, 64, 20, 20),
    ],
)
def test_padded_length_rounds_up_to_the_bucket(
    longest: int, bucket: int, max_length: int, width: int
) -> None:
    assert text_ops.padded_length(longest, bucket, max_length) == width


def test_tokenize_pads_a_batch_to_its_bucket(vocab_file: Path) -> None:
    """Padding to a bucket adds masked positions only: the tokens and mask of each text are
    those of padding to the longest, followed by more padding."""
    tokenizer = wordpiece(vocab_file)
    text_ops.configure_tokenizer(tokenizer, max_length=64)
    plain = text_ops.tokenize(tokenizer, TEXTS, NAMES, 0)
    bucketed = text_ops.tokenize(tokenizer, TEXTS, NAMES, 0, bucket=12, max_length=64)
    width = plain["input_ids"].shape[1]
    assert width % 12 != 0
    assert bucketed["input_ids"].shape == (len(TEXTS), -(-width // 12) * 12)
    for name, _ in NAMES:
        assert bucketed[name][:, :width].tolist() == plain[name].tolist()
        assert not bucketed[name][:, width:].any()


def test_write_tokenizer_saves_the_whole_vocabulary(vocab_file: Path) -> None:
    saved = json.loads((vocab_file.parent / "tokenizer.json").read_text(encoding="utf-8"))
    assert len(saved["model"]["vocab"]) == len(vocab_file.read_text().splitlines())


@pytest.mark.parametrize("pooling", text_ops.POOLINGS)
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pool_equals_sentence_transformers_pooling(pooling: str, padding_side: str) -> None:
    """Each served pooling mode against sentence-transformers' own Pooling module."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling

    rng = np.random.default_rng(7)
    hidden = rng.normal(size=(4, 9, 6)).astype(np.float32)
    lengths = [9, 5, 1, 3]
    mask = np.zeros((4, 9), dtype=np.int64)
    for row, length in enumerate(lengths):
        if padding_side == "right":
            mask[row, :length] = 1
        else:
            mask[row, 9 - length :] = 1
    module = Pooling(6, pooling_mode=pooling)
    features = {
        "token_embeddings": torch.from_numpy(hidden),
        "attention_mask": torch.from_numpy(mask),
    }
    expected = module(features)["sentence_embedding"].numpy()
    np.testing.assert_allclose(text_ops.pool(hidden, mask, pooling), expected, atol=1e-6)


# --- pairs ------------------------------------------------------------------------------------

FIRSTS = ["Hello World!", "", "good movie", "unknownword zzz", "love " * 30, "a b c d e f g h"]
SECONDS = ["the service was fast", "ok", "", "love " * 30, "yes", "one two three four five six"]


def bert_fast(vocab_file: Path) -> object:
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)


@pytest.mark.parametrize("max_length", [7, 8, 12, 64])
def test_tokenize_pairs_equals_transformers_longest_first(
    vocab_file: Path, max_length: int
) -> None:
    reference: object = bert_fast(vocab_file)
    expected = reference(  # type: ignore[operator]
        FIRSTS, SECONDS, padding=True, truncation=True, max_length=max_length
    )
    tokenizer = reference.backend_tokenizer  # type: ignore[attr-defined]
    text_ops.configure_tokenizer(tokenizer, max_length)
    pairs = list(zip(FIRSTS, SECONDS, strict=True))
    out = text_ops.tokenize(tokenizer, pairs, NAMES, 0)
    for name, _ in NAMES:
        assert out[name].tolist() == expected[name], name
    assert out["token_type_ids"].max() == 1  # the second sequence is marked


@pytest.mark.parametrize("max_length", [8, 9, 64, 65])
def test_cutting_pairs_before_tokenizing_changes_no_token(
    vocab_file: Path, max_length: int
) -> None:
    """Each side cut alone, the pair's tokens (longest_first) are the whole pair's, also where
    the odd token of an odd budget goes to the longer side and a cut would swap which is."""
    tokenizer = bert_fast(vocab_file).backend_tokenizer  # type: ignore[attr-defined]
    text_ops.configure_tokenizer(tokenizer, max_length)
    head = max_length * text_ops.PAIR_CHARS_PER_TOKEN
    huge = "hello " * (head // 2)  # cut
    medium = "good " * (head // 5)  # not cut, but more tokens than huge's head
    other = " ".join(["the movie was very good"] * (head // 12))
    pairs = [
        (huge, "yes"),
        ("yes", huge),
        (huge, other),
        (other, huge),
        (huge, medium),
        (medium, huge),
        (medium, medium),
        ("short", "texts"),
    ]
    whole = text_ops.tokenize(tokenizer, pairs, NAMES, 0)
    cut = text_ops.cut_pairs(tokenizer, pairs, max_length)
    assert cut[0][0] != huge and cut[-1] == pairs[-1] and cut[4][1] == medium
    served = text_ops.tokenize(tokenizer, cut, NAMES, 0)
    for name, _ in NAMES:
        assert served[name].tolist() == whole[name].tolist(), name
    # the case cut_pairs guards: cutting each side alone moves the odd token (odd budgets)
    firsts = [
        text_ops._cut(tokenizer, a, max_length, text_ops.PAIR_CHARS_PER_TOKEN) for a, _ in pairs
    ]
    seconds = [
        text_ops._cut(tokenizer, b, max_length, text_ops.PAIR_CHARS_PER_TOKEN) for _, b in pairs
    ]
    naive = text_ops.tokenize(tokenizer, list(zip(firsts, seconds, strict=True)), NAMES, 0)
    budget_is_odd = (max_length - 3) % 2 == 1
    assert (naive["input_ids"].tolist() != whole["input_ids"].tolist()) == budget_is_odd


def test_a_pair_of_long_texts_is_cut_to_a_few_overflowing_pieces(vocab_file: Path) -> None:
    tokenizer = bert_fast(vocab_file).backend_tokenizer  # type: ignore[attr-defined]
    text_ops.configure_tokenizer(tokenizer, 256)
    long = "the movie was very good and the service was fast " * 5000  # 250,000 characters
    ((first, second),) = text_ops.cut_pairs(tokenizer, [(long, long + "!")], 256)
    assert len(first) <= 256 * text_ops.PAIR_CHARS_PER_TOKEN and len(second) == len(first)
    assert len(tokenizer.encode(first, second).overflowing) < 20


def test_tokenize_gives_offsets_and_special_tokens_mask(vocab_file: Path) -> None:
    tokenizer = bert_fast(vocab_file).backend_tokenizer  # type: ignore[attr-defined]
    text_ops.configure_tokenizer(tokenizer, 16)
    fields = [("offsets", "offsets"), ("special_tokens_mask", "special_tokens_mask")]
    texts = ["Hello  world!", "", "Grüße 🚀"]
    out = text_ops.tokenize(tokenizer, texts, fields, 0)
    assert out["offsets"].shape == (3, 5, 2)
    assert out["offsets"][0].tolist() == [[0, 0], [0, 5], [7, 12], [12, 13], [0, 0]]
    assert out["special_tokens_mask"].tolist()[:2] == [[1, 0, 0, 0, 1], [1, 1, 0, 0, 0]]
    encoding = tokenizer.encode(texts[2])
    assert out["offsets"][2, : len(encoding.ids)].tolist() == [list(o) for o in encoding.offsets]


def test_sigmoid() -> None:
    logits = np.array([[-1000.0], [0.0], [2.0], [1000.0]], dtype=np.float32)
    expected = [[0.0], [0.5], [1 / (1 + np.exp(-2.0))], [1.0]]
    np.testing.assert_allclose(text_ops.sigmoid(logits), expected, rtol=1e-6)
