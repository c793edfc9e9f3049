"""``triton-pack verify``: does a running server answer what the source models compute?

For every encoder model of the spec, sample texts (built-in unicode, empty and long cases, plus
the user's) go to the served ensemble through the typed clients, and the source model computes
its own answer in-process (one verifier per task, ``VERIFIERS``): sentence-transformers'
``encode`` for a sentence-transformers folder served with its own settings, transformers'
hidden states pooled as the spec says otherwise; transformers' softmax for classifiers (of
pairs too: each sample with the samples in reverse order); sentence-transformers'
``CrossEncoder.predict`` with the served activation for rerankers; transformers'
token-classification pipeline with the spec's aggregation for token classifiers. Per model:
the worst cosine, or the worst score difference and the label (or entity) mismatches; any
figure past its bound is a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from builder.model_files import (
    EmbeddingSettings,
    embedding_settings,
    read_hf_config,
    read_sentence_transformers,
    reranking_activation,
)
from builder.parity import SAMPLE_TEXTS as PARITY_SAMPLES
from builder.sources import resolve_source
from builder.spec import ModelSpec, Spec

if TYPE_CHECKING:
    from clients import TritonClient

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


def _sequence_scores(
    model: ModelSpec, directory: Path, pairs: Sequence[tuple[str, str | None]]
) -> npt.NDArray[np.float32]:
    """transformers' softmax for each text (or pair: a batch of one, which keeps an empty
    second text as an empty sequence, as the served tokenizer and CrossEncoder do)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    source = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    rows = []
    for first, second in pairs:
        batch = tokenizer(
            [first],
            None if second is None else [second],
            truncation=True,
            max_length=model.max_sequence_length,
            return_tensors="pt",
        )
        with torch.no_grad():
            rows.append(torch.softmax(source(**batch).logits, dim=-1)[0].numpy())
    return np.stack(rows)


def _pairs(texts: Sequence[str]) -> list[tuple[str, str]]:
    """Each sample with the samples in reverse order (the long one meets short ones)."""
    return list(zip(texts, reversed(texts), strict=True))


def _verify_classification(
    client: TritonClient, model: ModelSpec, directory: Path, texts: Sequence[str], bound: Bounds
) -> Verdict:
    from clients import ClassificationClient

    single: list[tuple[str, str | None]] = [(text, None) for text in texts]
    pairs = list(_pairs(texts)) if model.pair else single
    with ClassificationClient(client, model.name) as classifier:
        seconds = [b or "" for _, b in pairs] if model.pair else None
        results = classifier.classify([a for a, _ in pairs], pairs=seconds)
    served_scores = np.array([list(r.scores.values()) for r in results], dtype=np.float32)
    config = read_hf_config(directory)
    labels = model.labels or config.labels or tuple(f"LABEL_{i}" for i in range(config.num_labels))
    reference = _sequence_scores(model, directory, pairs)
    diff = float(np.abs(served_scores - reference).max())
    expected = [labels[i] for i in reference.argmax(axis=1)]
    mismatches = [i for i, (r, e) in enumerate(zip(results, expected, strict=True)) if r.label != e]
    summary = (
        f"{len(pairs)} {'pairs' if model.pair else 'texts'}, worst score difference "
        f"{diff:.2e} (bound {bound.max_score_diff:g}), {len(mismatches)} label mismatch(es)"
        + (f" (first: text {mismatches[0]})" if mismatches else "")
    )
    return Verdict(model.name, diff <= bound.max_score_diff and not mismatches, summary)


def _verify_reranking(
    client: TritonClient, model: ModelSpec, directory: Path, texts: Sequence[str], bound: Bounds
) -> Verdict:
    import torch
    from sentence_transformers import CrossEncoder

    from clients import RerankClient

    activation = reranking_activation(model.activation, read_hf_config(directory), directory)
    pairs = _pairs(texts)
    with RerankClient(client, model.name) as reranker:
        served = np.array([reranker.rerank(query, [text])[0].score for query, text in pairs])
    function = torch.nn.Sigmoid() if activation.value == "sigmoid" else torch.nn.Identity()
    source = CrossEncoder(
        str(directory), max_length=model.max_sequence_length, device="cpu", activation_fn=function
    )
    reference = np.asarray(source.predict(pairs, batch_size=8), dtype=np.float64)
    diff = float(np.abs(served - reference).max())
    summary = (
        f"{len(pairs)} pairs, worst score difference {diff:.2e} (bound {bound.max_score_diff:g}) "
        f"against CrossEncoder.predict; activation {activation.value} ({activation.origin})"
    )
    return Verdict(model.name, diff <= bound.max_score_diff, summary)


def _verify_token_classification(
    client: TritonClient, model: ModelSpec, directory: Path, texts: Sequence[str], bound: Bounds
) -> Verdict:
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from clients import TokenClassificationClient

    with TokenClassificationClient(client, model.name) as ner:
        served = ner.entities(texts)
    tokenizer = AutoTokenizer.from_pretrained(
        str(directory), model_max_length=model.max_sequence_length
    )
    source = pipeline(
        "token-classification",
        model=AutoModelForTokenClassification.from_pretrained(str(directory)),
        tokenizer=tokenizer,
        aggregation_strategy=model.effective_aggregation,
        device="cpu",
    )
    key = "entity" if model.effective_aggregation == "none" else "entity_group"
    worst, mismatched, count = 0.0, [], 0
    for index, (mine, text) in enumerate(zip(served, texts, strict=True)):
        theirs = source(text)
        count += len(mine)
        # labels are compared unless the spec renamed them (then the pipeline's differ)
        same = [(e.word, e.start, e.end) for e in mine] == [
            (str(t["word"]), int(t["start"]), int(t["end"])) for t in theirs
        ] and (model.labels is not None or [e.label for e in mine] == [t[key] for t in theirs])
        if not same:
            mismatched.append(index)
        elif mine:
            diffs = [abs(e.score - float(t["score"])) for e, t in zip(mine, theirs, strict=True)]
            worst = max(worst, *diffs)
    summary = (
        f"{len(texts)} texts, {count} entities ({model.effective_aggregation}), worst score "
        f"difference {worst:.2e} (bound {bound.max_score_diff:g}), {len(mismatched)} text(s) "
        "whose entities differ from the pipeline's"
        + (f" (first: text {mismatched[0]})" if mismatched else "")
    )
    return Verdict(model.name, worst <= bound.max_score_diff and not mismatched, summary)


def _verify_embedding_task(
    client: TritonClient, model: ModelSpec, directory: Path, texts: Sequence[str], bound: Bounds
) -> Verdict:
    from clients import EmbeddingClient

    with EmbeddingClient(client, model.name) as embedder:
        vectors = embedder.embed(texts)
    return _verify_embedding(model, directory, vectors, texts, bound.min_cosine)


@dataclass(frozen=True)
class Bounds:
    min_cosine: float
    max_score_diff: float


Verifier = Callable[["TritonClient", ModelSpec, Path, Sequence[str], Bounds], Verdict]
# one verifier per encoder task: the served answers against the source model's own
VERIFIERS: dict[str, Verifier] = {
    "text-embedding": _verify_embedding_task,
    "text-classification": _verify_classification,
    "text-reranking": _verify_reranking,
    "token-classification": _verify_token_classification,
}


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
    from clients import TritonClient

    bounds = Bounds(min_cosine, max_score_diff)
    verdicts = []
    with TritonClient(url, protocol, timeout=120.0) as client:  # type: ignore[arg-type]
        for model in spec.models:
            if model.task == "text-generation":
                progress(f"{model.name}: skipped (text-generation is checked by its own tests)")
                continue
            directory = resolve_source(model, spec).directory
            progress(f"{model.name}: {len(texts)} texts to the server and to the source model")
            verdicts.append(VERIFIERS[model.task](client, model, directory, texts, bounds))
    return verdicts
