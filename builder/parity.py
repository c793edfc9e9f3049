"""Does the ONNX graph compute what PyTorch computes? On inputs unlike the export example.

The cases differ from the export example (batch 2, length 8, no padding) in batch size,
sequence length and padding, because an exporter that specialises on the example shape is
exactly the failure this check exists for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from builder.export import OnnxArtifact
from builder.registry import Architecture, TaskExport

__all__ = ["ParityReport", "check_parity", "parity_cases"]

Feeds = dict[str, npt.NDArray[np.int64]]


@dataclass(frozen=True)
class ParityReport:
    output: str
    atol: float
    max_abs_diff: float
    cases: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol

    def as_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "atol": self.atol,
            "max_abs_diff": float(f"{self.max_abs_diff:.3e}"),
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
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in architecture.input_names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


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


def check_parity(
    model: Any, artifact: OnnxArtifact, task: TaskExport, cases: list[Feeds], atol: float
) -> ParityReport:
    """Largest |ONNX Runtime - PyTorch| over ``cases`` (unpadded positions for token outputs)."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
    worst = 0.0
    described = []
    for feeds in cases:
        (onnx_out,) = session.run([artifact.output_name], feeds)
        with torch.no_grad():
            result = model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        torch_out = getattr(result, task.output_name).numpy()
        diff = np.abs(onnx_out.astype(np.float64) - torch_out.astype(np.float64))
        if task.token_level:
            diff = diff[feeds["attention_mask"].astype(bool)]
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        lengths = feeds["attention_mask"].sum(axis=1).tolist()
        described.append(f"batch {len(lengths)}, lengths {lengths}")
    return ParityReport(artifact.output_name, atol, worst, tuple(described))
