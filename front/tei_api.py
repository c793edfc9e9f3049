"""text-embeddings-inference's routes, in TEI's request and response shapes: ``/embed``,
``/rerank``, ``/predict``; and ``/v1/ner`` (token classification, which TEI lacks).

TEI serves one model; a spec may serve several of a task, so a request may name one with
``model`` (our addition), and otherwise gets the spec's first model of the task. Our models
always truncate at their ``max_sequence_length`` (sentence-transformers' behaviour), so
``truncate`` is accepted either way; ``truncation_direction`` must be ``right``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response

from clients import ClientError
from front.errors import APIError, from_client_error
from front.openai_api import json_response
from front.schemas import NerRequest, PredictRequest, RerankRequest, TeiEmbedRequest
from front.state import front_of, resolve_tei

__all__ = ["router"]

router = APIRouter()


def _right_only(direction: str) -> None:
    if direction.lower() != "right":
        raise APIError(422, "truncation_direction: only 'right' is served", "truncation_direction")


def _list(inputs: str | list[str], what: str = "inputs") -> list[str]:
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not texts:
        raise APIError(422, f"`{what}` cannot be empty", what)
    return texts


@router.post("/embed")
async def embed(body: TeiEmbedRequest, request: Request) -> Response:
    model = resolve_tei(request, body.model, "text-embedding", "/embed")
    _right_only(body.truncation_direction)
    if body.prompt_name is not None:
        raise APIError(422, "prompt_name: prompts are not served; prefix the text yourself")
    if model.normalize and not body.normalize:
        raise APIError(
            422,
            f"normalize=false: model {model.name!r} is built with normalize: true (its graph "
            "L2-normalises); set normalize: false in the spec to serve raw vectors",
            "normalize",
        )
    texts = _list(body.inputs)
    try:
        vectors = await front_of(request).live.tasks[model.name].embed(texts)
    except ClientError as exc:
        raise from_client_error(exc, model.name) from None
    if body.normalize and not model.normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise APIError(
            422,
            f"dimensions={body.dimensions}: {model.name!r} serves "
            f"{vectors.shape[1]} and does not shorten them",
            "dimensions",
        )
    return json_response(np.ascontiguousarray(vectors, dtype=np.float32))


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.float64(value))))


@router.post("/rerank")
async def rerank(body: RerankRequest, request: Request) -> Response:
    model = resolve_tei(request, body.model, "text-reranking", "/rerank")
    _right_only(body.truncation_direction)
    texts = _list(body.texts, "texts")
    if body.raw_scores and model.activation != "identity":
        raise APIError(
            422,
            f"raw_scores=true: model {model.name!r} is built with a sigmoid in its graph; "
            "build it with `activation: none` to serve raw scores",
            "raw_scores",
        )
    try:
        results = await front_of(request).live.tasks[model.name].rerank(body.query, texts)
    except ClientError as exc:
        raise from_client_error(exc, model.name) from None
    ranks = []
    for result in results:
        score = float(result.score)
        if model.activation == "identity" and not body.raw_scores:
            score = _sigmoid(score)
        rank: dict[str, Any] = {"index": result.index, "score": score}
        if body.return_text:
            rank["text"] = result.document
        ranks.append(rank)
    ranks.sort(key=lambda rank: -rank["score"])
    return json_response(ranks)


def _predict_rows(inputs: str | list[str] | list[list[str]]) -> tuple[list[list[str]], bool]:
    """TEI's forms: a string, a pair ``[a, b]``, or a batch of ``[a]`` / ``[a, b]`` rows.
    Returns the rows and whether the input was a batch."""
    if isinstance(inputs, str):
        return [[inputs]], False
    if inputs and all(isinstance(item, str) for item in inputs):
        if len(inputs) != 2:
            raise APIError(
                422,
                f"inputs: a list of strings is a pair and has 2 items, got {len(inputs)}; "
                "send a batch as [[text], [text], ...]",
                "inputs",
            )
        return [list(inputs)], False  # type: ignore[arg-type]
    rows = [list(row) for row in inputs if isinstance(row, list)]
    if not rows or len(rows) != len(inputs) or any(len(row) not in (1, 2) for row in rows):
        raise APIError(422, "inputs: a batch is a list of [text] or [text, text_pair] rows")
    return rows, True


@router.post("/predict")
async def predict(body: PredictRequest, request: Request) -> Response:
    model = resolve_tei(request, body.model, "text-classification", "/predict")
    _right_only(body.truncation_direction)
    if body.raw_scores:
        raise APIError(
            422,
            f"raw_scores=true: model {model.name!r} serves softmax probabilities (the softmax "
            "is in its graph); raw logits are not served",
            "raw_scores",
        )
    rows, batch = _predict_rows(body.inputs)
    widths = {len(row) for row in rows}
    want = 2 if model.pair else 1
    if widths != {want}:
        kind = "pairs [text, text_pair]" if model.pair else "single texts"
        raise APIError(422, f"inputs: model {model.name!r} classifies {kind}", "inputs")
    texts = [row[0] for row in rows]
    pairs = [row[1] for row in rows] if model.pair else None
    try:
        results = await front_of(request).live.tasks[model.name].classify(texts, pairs)
    except ClientError as exc:
        raise from_client_error(exc, model.name) from None
    predictions = [
        sorted(
            ({"score": float(score), "label": label} for label, score in r.scores.items()),
            key=lambda p: -p["score"],
        )
        for r in results
    ]
    return json_response(predictions if batch else predictions[0])


def _entity(entity: Any) -> dict[str, Any]:
    """The keys of transformers' token-classification pipeline (aggregated or not)."""
    if entity.index is None:
        head: dict[str, Any] = {"entity_group": entity.label}
    else:
        head = {"entity": entity.label, "index": entity.index}
    head.update(score=float(entity.score), word=entity.word, start=entity.start, end=entity.end)
    return head


@router.post("/v1/ner")
async def ner(body: NerRequest, request: Request) -> Response:
    model = resolve_tei(request, body.model, "token-classification", "/v1/ner")
    _right_only(body.truncation_direction)
    texts = _list(body.inputs)
    try:
        found = await front_of(request).live.tasks[model.name].entities(texts)
    except ClientError as exc:
        raise from_client_error(exc, model.name) from None
    rows = [[_entity(entity) for entity in entities] for entities in found]
    return json_response(rows if isinstance(body.inputs, list) else rows[0])
