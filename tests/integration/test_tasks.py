"""The pair and token tasks, built from one spec and served by a real tritonserver, against
their Hugging Face references: text-classification with ``pair: true`` (NLI) against
transformers, text-reranking against sentence-transformers' ``CrossEncoder.predict``, and
token-classification against ``transformers.pipeline("token-classification")`` for every
aggregation strategy. The models are tiny random ones made here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from builder.pipeline import BuildResult, build_repository
from builder.serve import LocalServer
from builder.spec import load_spec
from clients import TritonClient
from tests.integration.conftest import write_spec
from tests.tiny_models import make_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]

PROTOCOLS = ["http", "grpc"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]
MAX_LENGTH = 24  # short, so that the long texts below are cut on one or both sides
LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 12)
LONGER = " ".join(["one two three four five six seven eight nine ten"] * 15)
PREMISES = [
    "hello world",
    "the film was great",
    "Grüße aus Köln: naïve café, 東京タワー 🚀",
    "",
    LONG,
    LONG,
    "a  b   c , d !",
    LONGER,
]
HYPOTHESES = [
    "the world says hello",
    "",
    "the service was very slow and the food was bad",
    "ok",
    "short",
    LONGER,
    LONG,
    LONG + " and more",
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("task-models")
    nli = make_model(
        root / "nli",
        "bert",
        "text-classification",
        id2label=dict(enumerate(NLI_LABELS)),
        seed=7,
    )
    return {"nli": nli}


@pytest.fixture(scope="module")
def built(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    spec = write_spec(
        tmp_path_factory.mktemp("task-spec") / "models.yaml",
        f"""\
repository: repo
models:
  - name: nli
    task: text-classification
    pair: true
    source: '{sources["nli"]}'
    max_sequence_length: {MAX_LENGTH}
    max_batch_size: 4
""",
    )
    return build_repository(load_spec(spec), progress=lambda message: None)


@pytest.fixture(scope="module")
def server(built: BuildResult) -> Iterator[LocalServer]:
    with LocalServer(built.repository) as running:
        yield running


def url(server: LocalServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


def texts_array(texts: list[str]) -> np.ndarray:
    return np.array([[t.encode("utf-8")] for t in texts], dtype=object)


def nli_reference(source: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    """transformers' probabilities, one pair at a time (no padding in the reference).

    Each pair goes in as a batch of one: ``tokenizer(a, "")`` alone drops an empty second
    text (transformers tests ``if text_pair``), while a batch keeps it as an empty second
    sequence (``[CLS] a [SEP] [SEP]``), as sentence-transformers' CrossEncoder and the served
    tokenizer do."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForSequenceClassification.from_pretrained(str(source)).eval()
    rows = []
    for first, second in pairs:
        batch = tokenizer(
            [first], [second], truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        with torch.no_grad():
            rows.append(torch.softmax(model(**batch).logits, dim=-1)[0].numpy())
    return np.stack(rows)


def test_pair_parity_ran_on_cut_pairs(built: BuildResult) -> None:
    import json

    manifest = json.loads((built.repository / "manifest.json").read_text())
    parity = manifest["models"]["nli"]["parity"]
    assert parity["passed"] is True
    assert parity["cases"][-1].startswith("texts: batch 7, lengths [")
    config = (built.repository / "nli_tokenizer" / "config.pbtxt").read_text()
    assert 'name: "TEXT_PAIR"' in config


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pair_classification_equals_transformers(
    server: LocalServer, sources: dict[str, Path], protocol: str
) -> None:
    pairs = list(zip(PREMISES, HYPOTHESES, strict=True))
    reference = nli_reference(sources["nli"], pairs)
    with TritonClient(url(server, protocol), protocol) as client:  # type: ignore[arg-type]
        # max_batch_size 4: two requests
        answers = [
            client.infer(
                "nli",
                {
                    "TEXT": texts_array(PREMISES[start : start + 4]),
                    "TEXT_PAIR": texts_array(HYPOTHESES[start : start + 4]),
                },
            )
            for start in (0, 4)
        ]
    scores = np.concatenate([a["SCORES"] for a in answers])
    labels = [v.decode() for a in answers for v in a["LABEL"].reshape(-1)]
    np.testing.assert_allclose(scores, reference, atol=1e-4)
    assert labels == [NLI_LABELS[i] for i in reference.argmax(axis=1)]
