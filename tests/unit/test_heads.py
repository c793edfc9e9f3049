"""builder.heads: the head traced into the graph computes what text_ops (numpy) computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from builder.heads import GraphHead, embedding_head
from builder.model_files import resolve_embedding
from python_backends import text_ops


def batch(padding_side: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = [7, 3, 1, 5]
    hidden = rng.normal(size=(len(lengths), 7, 6)).astype(np.float32)
    mask = np.zeros((len(lengths), 7), dtype=np.int64)
    for row, length in enumerate(lengths):
        if padding_side == "right":
            mask[row, :length] = 1
        else:
            mask[row, 7 - length :] = 1
    return hidden, mask


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("pooling", text_ops.POOLINGS)
def test_pool_head_equals_text_ops(pooling: str, normalize: bool, padding_side: str) -> None:
    head = GraphHead("pool", pooling, normalize)
    hidden, mask = batch(padding_side)
    with torch.no_grad():
        traced = head.forward(torch.from_numpy(hidden), torch.from_numpy(mask)).numpy()
    expected = text_ops.embed(hidden, mask, pooling, normalize)
    assert traced.shape == (4, 6)
    np.testing.assert_allclose(traced, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(head.reference(hidden, mask), expected, rtol=0, atol=0)


def test_pool_head_ignores_what_padded_positions_hold() -> None:
    head = GraphHead("pool", "max", normalize=False)
    hidden, mask = batch("right")
    noisy = np.where(mask[:, :, None] == 1, hidden, np.float32(1e6))
    with torch.no_grad():
        clean = head.forward(torch.from_numpy(hidden), torch.from_numpy(mask)).numpy()
        padded = head.forward(torch.from_numpy(noisy), torch.from_numpy(mask)).numpy()
    assert clean.tolist() == padded.tolist()


@pytest.mark.parametrize("shape", [(5, 3), (4, 6, 5)])
def test_softmax_head_equals_text_ops(shape: tuple[int, ...]) -> None:
    # [batch, labels] (classification) and [batch, tokens, labels] (token classification)
    logits = np.random.default_rng(1).normal(scale=8.0, size=shape).astype(np.float32)
    head = GraphHead("softmax")
    with torch.no_grad():
        traced = head.forward(torch.from_numpy(logits), None).numpy()
    np.testing.assert_allclose(traced, text_ops.softmax(logits), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(traced.sum(axis=-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("kind", ["sigmoid", "identity"])
def test_reranker_heads_equal_text_ops(kind: str) -> None:
    logits = np.random.default_rng(2).normal(scale=8.0, size=(6, 1)).astype(np.float32)
    head = GraphHead(kind)  # type: ignore[arg-type]
    with torch.no_grad():
        traced = head.forward(torch.from_numpy(logits), None).numpy()
        expected = torch.sigmoid(torch.from_numpy(logits)).numpy() if kind == "sigmoid" else logits
    np.testing.assert_allclose(traced, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(head.reference(logits, None), expected, rtol=1e-6, atol=1e-7)  # type: ignore[arg-type]
    assert head.as_manifest() == {"kind": kind}


def test_embedding_head_and_manifest() -> None:
    settings = resolve_embedding("cls", False, 128, None, 0)
    assert embedding_head(settings) == GraphHead("pool", "cls", False)
    assert GraphHead("pool", "mean", True).as_manifest() == {
        "kind": "pool",
        "pooling": "mean",
        "normalize": True,
    }
    assert GraphHead("pool", "mean", True).describe() == "mean pooling + L2 normalisation"
