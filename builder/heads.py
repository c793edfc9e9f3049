"""The head exported into the graph after the HF model: what turns its raw output into what is
served, so the ONNX member answers with the final tensor and no Python step moves
``[batch, sequence, hidden]`` through shared memory.

- ``text-embedding``: pooling over the attention mask (sentence-transformers' modes), then L2
  normalisation when the model's folder asks for it -> ``EMBEDDING [batch, hidden]``.
- ``text-classification``: softmax over the logits -> ``SCORES [batch, labels]``.
- ``text-reranking``: sigmoid over the one logit, or nothing (``activation: none``) ->
  ``SCORE [batch, 1]``, as sentence-transformers' ``CrossEncoder.predict`` computes it.
- ``token-classification``: softmax over each token's logits ->
  ``TOKEN_SCORES [batch, tokens, labels]`` (the entities are grouped in Python: strings).

``GraphHead.reference`` computes the same thing with ``python_backends.text_ops`` (numpy, an
independent implementation that the unit tests hold to sentence-transformers); parity compares
the exported graph's output with it applied to PyTorch's raw output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from builder.errors import ExportError

if TYPE_CHECKING:
    from builder.model_files import EmbeddingSettings

__all__ = ["GraphHead", "embedding_head"]

# what a padded position holds before max pooling: below any real activation
_MAX_POOL_FILL = -1e9


HeadKind = Literal["pool", "softmax", "sigmoid", "identity"]


@dataclass(frozen=True)
class GraphHead:
    """``pool``: pooling (+ L2 normalisation) of the hidden states; ``softmax`` over the last
    axis of the logits; ``sigmoid`` of the logits; ``identity``: the logits as they are."""

    kind: HeadKind
    pooling: str | None = None  # one of text_ops.POOLINGS when kind == "pool"
    normalize: bool = False

    def describe(self) -> str:
        if self.kind != "pool":
            return self.kind
        return f"{self.pooling} pooling" + (" + L2 normalisation" if self.normalize else "")

    def as_manifest(self) -> dict[str, Any]:
        if self.kind != "pool":
            return {"kind": self.kind}
        return {"kind": "pool", "pooling": self.pooling, "normalize": self.normalize}

    def forward(self, raw: Any, mask: Any) -> Any:
        """The head in torch, traced into the graph: ``raw`` is the HF output, ``mask`` the
        attention mask (int64 [batch, sequence])."""
        import torch

        if self.kind == "softmax":
            return torch.softmax(raw, dim=-1)
        if self.kind == "sigmoid":
            return torch.sigmoid(raw)
        if self.kind == "identity":
            return raw
        pooled = _pool(raw, mask, str(self.pooling))
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)
        return pooled

    def reference(
        self, raw: npt.NDArray[Any], mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """The same computation in numpy (python_backends.text_ops), for parity."""
        from python_backends import text_ops

        values = raw.astype(np.float32)
        if self.kind == "softmax":
            return text_ops.softmax(values)
        if self.kind == "sigmoid":
            return text_ops.sigmoid(values)
        if self.kind == "identity":
            return values
        return text_ops.embed(values, mask, str(self.pooling), self.normalize)


def _pool(hidden: Any, mask: Any, pooling: str) -> Any:
    import torch

    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [batch, sequence, 1]
    if pooling in ("mean", "mean_sqrt_len_tokens"):
        summed = (hidden * weights).sum(dim=1)
        counts = weights.sum(dim=1).clamp(min=1e-9)
        return summed / (counts if pooling == "mean" else counts.sqrt())
    if pooling == "max":
        return hidden.masked_fill(weights == 0, _MAX_POOL_FILL).max(dim=1).values
    if pooling in ("cls", "lasttoken"):
        flat = weights.squeeze(-1)  # float: ONNX Runtime's ArgMax takes no int64
        if pooling == "cls":  # the first unpadded position (the first maximum)
            index = flat.argmax(dim=1)
        else:  # the last unpadded position: the largest position number the mask keeps
            positions = torch.arange(flat.shape[1], dtype=flat.dtype, device=flat.device)
            index = (flat * (positions + 1.0)).argmax(dim=1)
        gather = index.view(-1, 1, 1).expand(-1, 1, hidden.shape[2])
        return torch.gather(hidden, 1, gather).squeeze(1)
    raise ExportError(f"unknown pooling {pooling!r}")


def embedding_head(settings: EmbeddingSettings) -> GraphHead:
    """An embedding graph's head: pooling and normalisation as the resolved settings say."""
    return GraphHead("pool", settings.pooling.value, settings.normalize.value)
