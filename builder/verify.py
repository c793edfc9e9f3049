"""``triton-pack verify``: does a running server answer what the source models compute?

For every encoder model of the spec, sample texts (built-in unicode, empty and long cases, plus
the user's) go to the served ensemble through the typed clients, and the source model computes
its own answer in-process: sentence-transformers' ``encode`` for a sentence-transformers folder
served with its own settings, transformers' hidden states pooled as the spec says otherwise,
transformers' softmax for classifiers. Per model: the worst cosine, or the worst score
difference and the label mismatches; any figure past its bound is a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from builder.model_files import (
    EmbeddingSettings,
    embedding_settings,
    read_hf_config,
    read_sentence_transformers,
)
from builder.parity import SAMPLE_TEXTS as PARITY_SAMPLES
from builder.sources import resolve_source
from builder.spec import ModelSpec, Spec

__all__ = ["SAMPLE_TEXTS", "Verdict", "verify_spec"]

# parity's real-text samples (English, accented, CJK, emoji, empty, one past the length),
# and a few more a served model meets: whitespace only, numbers, code and URLs
SAMPLE_TEXTS = (
    *PARITY_SAMPLES,
    "   ",
    "Numbers 3.14159, dates 2026-11-25, code `x = f(y)`, URLs https://example.com/a?b=c.",
)


@dataclass(frozen=True)
class Verdict:
    model: str
    ok: bool
    summary: str  # one line: the figures and the bound


def _reference_embeddings(
    directory: Path, settings: EmbeddingSettings, texts: Sequence[str]
) -> npt.NDArray[np.float32]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from python_backends.text_ops import embed

    folder = read_sentence_transformers(directory)
    length = settings.max_sequence_length.value
    if folder is not None and (settings.pooling.value, settings.normalize.value) == (
        folder.pooling,
        folder.normalize,
    ):
        from sentence_transformers import SentenceTransformer

        reference = SentenceTransformer(str(directory), device="cpu")
        reference.max_seq_length = length
        return np.asarray(reference.encode(list(texts), batch_size=8), dtype=np.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModel.from_pretrained(str(directory)).eval()
    rows = []
    for text in texts:  # one at a time: no padding in the reference
        batch = tokenizer([text], truncation=True, max_length=length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state.numpy()
        mask = batch["attention_mask"].numpy()
        rows.append(embed(hidden, mask, settings.pooling.value, settings.normalize.value)[0])
    return np.stack(rows)


def _cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return np.asarray((a64 * b64).sum(axis=1) / np.clip(norms, 1e-30, None))


def _verify_embedding(
    model: ModelSpec,
    directory: Path,
    served: npt.NDArray[np.float32],
    texts: Sequence[str],
    min_cosine: float,
) -> Verdict:
    settings = embedding_settings(model, directory)
    reference = _reference_embeddings(directory, settings, texts)
    if served.shape != reference.shape:
        return Verdict(model.name, False, f"served shape {served.shape}, source {reference.shape}")
    cosines = _cosines(served, reference)
    worst = int(cosines.argmin())
    how = (
        f"pooling {settings.pooling.value} ({settings.pooling.origin}), normalize "
        f"{str(settings.normalize.value).lower()} ({settings.normalize.origin})"
    )
    summary = (
        f"{len(texts)} texts, worst cosine {cosines[worst]:.6f} (bound {min_cosine}) on text "
        f"{worst} {texts[worst][:40]!r}; {how}"
    )
    return Verdict(model.name, bool(cosines.min() >= min_cosine), summary)


def _verify_classification(
    model: ModelSpec,
    directory: Path,
    served: tuple[list[str], npt.NDArray[np.float32]],
    texts: Sequence[str],
    max_score_diff: float,
) -> Verdict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = read_hf_config(directory)
    labels = model.labels or config.labels or tuple(f"LABEL_{i}" for i in range(config.num_labels))
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    source = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    rows = []
    for text in texts:
        batch = tokenizer(
            [text], truncation=True, max_length=model.max_sequence_length, return_tensors="pt"
        )
        with torch.no_grad():
            rows.append(torch.softmax(source(**batch).logits, dim=-1)[0].numpy())
    reference = np.stack(rows)
    served_labels, served_scores = served
    diff = float(np.abs(served_scores - reference).max())
    expected = [labels[i] for i in reference.argmax(axis=1)]
    mismatches = [i for i, (a, b) in enumerate(zip(served_labels, expected, strict=True)) if a != b]
    summary = (
        f"{len(texts)} texts, worst score difference {diff:.2e} (bound {max_score_diff:g}), "
        f"{len(mismatches)} label mismatch(es)"
        + (f" (first: text {mismatches[0]})" if mismatches else "")
    )
    return Verdict(model.name, diff <= max_score_diff and not mismatches, summary)


def verify_spec(
    spec: Spec,
    url: str,
    protocol: str = "http",
    texts: Sequence[str] = SAMPLE_TEXTS,
    *,
    min_cosine: float = 0.9999,
    max_score_diff: float = 1e-3,
    progress: Callable[[str], None] = lambda message: None,
) -> list[Verdict]:
    """One verdict per encoder model of ``spec`` served at ``url``."""
    from clients import ClassificationClient, EmbeddingClient, TritonClient

    verdicts = []
    with TritonClient(url, protocol, timeout=120.0) as client:  # type: ignore[arg-type]
        for model in spec.models:
            if model.task == "text-generation":
                progress(f"{model.name}: skipped (text-generation is checked by its own tests)")
                continue
            directory = resolve_source(model, spec).directory
            progress(f"{model.name}: {len(texts)} texts to the server and to the source model")
            if model.task == "text-embedding":
                with EmbeddingClient(client, model.name) as embedder:
                    vectors = embedder.embed(texts)
                verdict = _verify_embedding(model, directory, vectors, texts, min_cosine)
            else:
                with ClassificationClient(client, model.name) as classifier:
                    results = classifier.classify(texts)
                served: Any = (
                    [r.label for r in results],
                    np.array([list(r.scores.values()) for r in results], dtype=np.float32),
                )
                verdict = _verify_classification(model, directory, served, texts, max_score_diff)
            verdicts.append(verdict)
    return verdicts
