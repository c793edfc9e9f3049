"""Does the ONNX graph compute what PyTorch computes? On inputs unlike the export example.

Random token ids and real text (built-in sample sentences and the spec's
``export.parity_texts``, tokenized with the exported tokenizer exactly as served) both run.
The cases differ from the export example (batch 2, length 8, no padding) in batch size,
sequence length and padding, because an exporter that specialises on the example shape is
exactly the failure this check exists for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from builder.errors import ParityError
from builder.export import OnnxArtifact
from builder.heads import GraphHead
from builder.plan import TokenizerInfo
from builder.registry import Architecture, TaskExport

__all__ = ["SAMPLE_TEXTS", "ParityReport", "check_parity", "parity_cases", "text_case"]

Feeds = dict[str, npt.NDArray[np.int64]]

# Real text, tokenized as the served tokenizer model does: random ids alone never show a
# tokenizer that maps every word to [UNK], or one that splits text unlike the model expects.
SAMPLE_TEXTS = (
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "Triton serves models over HTTP and gRPC, with dynamic batching on the server side.",
    "A slow, terrible film; I would not watch it again!",
    "Grüße aus Köln: naïve café, 東京タワー, emoji 🚀",
    "",
    " ".join(["the model reads a long text that is cut at its maximum length"] * 60),
)


@dataclass(frozen=True)
class ParityReport:
    """How far ONNX Runtime is from PyTorch, judged as ``numpy.allclose`` would:
    every element must satisfy |onnx - torch| <= atol + rtol * |torch|."""

    output: str
    atol: float
    rtol: float
    max_abs_diff: float
    max_rel_diff: float  # |onnx - torch| / |torch| where torch != 0
    worst_excess: float  # max of |onnx - torch| - (atol + rtol * |torch|); <= 0 passes
    cases: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.worst_excess <= 0.0

    @property
    def verdict(self) -> str:
        return "ok" if self.passed else "FAILED"

    def judge(self, where: str, allow_failure: bool) -> None:
        """Raise ParityError (``where`` names the spec key) unless it passed or is allowed."""
        if self.passed or allow_failure:
            return
        raise ParityError(
            f"{where}: output {self.output!r} differs from PyTorch beyond |onnx - torch| <= "
            f"atol + rtol * |torch|: {self.describe()} (cases: {'; '.join(self.cases)}). "
            "Nothing was written. Raise export.atol / export.rtol, or set "
            "export.allow_parity_failure: true to build anyway.",
            located=True,
        )

    def describe(self) -> str:
        return (
            f"max |onnx - torch| on {self.output} = {self.max_abs_diff:.3e}, max relative "
            f"{self.max_rel_diff:.3e} (atol {self.atol:g}, rtol {self.rtol:g})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "atol": self.atol,
            "rtol": self.rtol,
            "max_abs_diff": float(f"{self.max_abs_diff:.3e}"),
            "max_rel_diff": float(f"{self.max_rel_diff:.3e}"),
            "passed": self.passed,
            "cases": list(self.cases),
        }


def _case(
    lengths: list[int], architecture: Architecture, vocab: int, pad_id: int, rng: Any
) -> Feeds:
    width = max(lengths)
    ids = np.full((len(lengths), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(lengths), width), dtype=np.int64)
    low = min(5, vocab - 1)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(low, vocab, size=length)
        mask[row, :length] = 1
    by_role = {"token_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {i.name: by_role[i.role] for i in architecture.inputs}


def parity_cases(
    architecture: Architecture, vocab_size: int, max_length: int, pad_id: int, seed: int = 0
) -> list[Feeds]:
    """Padded batches of 3 and 5 of mixed lengths, and one text at ``max_length``."""
    rng = np.random.default_rng(seed)
    mid = min(max_length, 64)
    shapes = [
        [min(13, max_length), min(7, max_length), 1],
        [int(n) for n in rng.integers(1, mid + 1, size=5)],
        [max_length],
    ]
    return [_case(lengths, architecture, vocab_size, pad_id, rng) for lengths in shapes]


def text_case(
    tokenizer_file: Path,
    texts: tuple[str, ...],
    architecture: Architecture,
    max_length: int,
    tokenizer: TokenizerInfo,
    pairs: bool = False,
) -> Feeds:
    """``texts`` as one padded batch, tokenized exactly as the served tokenizer model does;
    with ``pairs``, as pairs: each text with the texts in reverse order (so the long sample
    meets short ones and itself, both sides cut)."""
    from tokenizers import Tokenizer

    from python_backends.text_ops import configure_tokenizer, cut_pairs, cut_texts, tokenize

    loaded = Tokenizer.from_file(str(tokenizer_file))
    configure_tokenizer(loaded, max_length)
    fields = [(i.name, i.encoding_field) for i in architecture.inputs]
    if pairs:
        joined = cut_pairs(loaded, list(zip(texts, reversed(texts), strict=True)), max_length)
        return tokenize(loaded, joined, fields, tokenizer.pad_id)
    return tokenize(loaded, cut_texts(loaded, texts, max_length), fields, tokenizer.pad_id)


def check_parity(
    model: Any,
    artifact: OnnxArtifact,
    architecture: Architecture,
    task: TaskExport,
    head: GraphHead,
    cases: list[Feeds],
    atol: float,
    rtol: float,
    texts: Feeds | None = None,
) -> ParityReport:
    """The graph's output under ONNX Runtime against PyTorch's raw output with ``head``
    applied in numpy (``GraphHead.reference``), over ``cases`` and ``texts``."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    mask_name = architecture.mask_name
    worst_abs = worst_rel = 0.0
    worst_excess = -np.inf
    described = []
    labelled = [("", feeds) for feeds in cases] + ([("texts: ", texts)] if texts else [])
    for label, feeds in labelled:
        (onnx_out,) = session.run([artifact.output_name], feeds)
        with torch.no_grad():
            result = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        raw = getattr(result, task.raw_output).numpy()
        reference = head.reference(raw, feeds[mask_name]).astype(np.float64)
        diff = np.abs(onnx_out.astype(np.float64) - reference)
        if diff.size:
            worst_abs = max(worst_abs, float(diff.max()))
            nonzero = np.abs(reference) > 0
            if nonzero.any():
                worst_rel = max(
                    worst_rel, float((diff[nonzero] / np.abs(reference[nonzero])).max())
                )
            worst_excess = max(
                worst_excess, float((diff - (atol + rtol * np.abs(reference))).max())
            )
        lengths = feeds[mask_name].sum(axis=1).tolist()
        described.append(f"{label}batch {len(lengths)}, lengths {lengths}")
    excess = worst_excess if np.isfinite(worst_excess) else 0.0
    return ParityReport(
        artifact.output_name, atol, rtol, worst_abs, worst_rel, excess, tuple(described)
    )
