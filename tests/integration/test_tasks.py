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
from clients import (
    AsyncClassificationClient,
    AsyncRerankClient,
    AsyncTokenClassificationClient,
    ClassificationClient,
    InvalidInputError,
    RerankClient,
    TokenClassificationClient,
    TritonClient,
)
from tests.front_process import Front, running_front
from tests.integration.conftest import write_spec
from tests.tiny_models import make_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]

PROTOCOLS = ["http", "grpc"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
AGGREGATIONS = ("none", "simple", "first", "average", "max")
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


def save_cross_encoder(folder: Path) -> Path:
    """A cross-encoder saved by sentence-transformers with no activation (Identity): its
    config_sentence_transformers.json says so, and the served score must follow it."""
    import torch
    from sentence_transformers import CrossEncoder

    make_model(folder / "hf", "bert", "text-reranking", seed=9)
    model = CrossEncoder(str(folder / "hf"), device="cpu", activation_fn=torch.nn.Identity())
    model.save(str(folder / "st"))
    return folder / "st"


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
    reranker = make_model(root / "reranker", "bert", "text-reranking", seed=8)
    ner = make_model(
        root / "ner",
        "distilbert",
        "token-classification",
        id2label=dict(enumerate(NER_LABELS)),
        seed=4,
        head_scale=30.0,
    )
    return {"nli": nli, "reranker": reranker, "ner": ner, "st_reranker": save_cross_encoder(root)}


def spec_text(sources: dict[str, Path]) -> str:
    common = f"max_sequence_length: {MAX_LENGTH}, max_batch_size: 4, dynamic_batching: null"
    lines = [
        "repository: repo",
        "models:",
        f"  - {{name: nli, task: text-classification, pair: true, source: '{sources['nli']}', "
        f"{common}}}",
        f"  - {{name: reranker, task: text-reranking, source: '{sources['reranker']}', {common}}}",
        f"  - {{name: st_reranker, task: text-reranking, source: '{sources['st_reranker']}', "
        f"{common}}}",
    ]
    lines += [
        f"  - {{name: ner_{how}, task: token-classification, aggregation: {how}, "
        f"source: '{sources['ner']}', {common}}}"
        for how in AGGREGATIONS
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def built(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    spec = write_spec(tmp_path_factory.mktemp("task-spec") / "models.yaml", spec_text(sources))
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


def test_every_model_passed_parity_with_its_head(built: BuildResult) -> None:
    import json

    manifest = json.loads((built.repository / "manifest.json").read_text())["models"]
    for name, record in manifest.items():
        assert record["parity"]["passed"] is True, name
        assert record["parity"]["cases"][-1].startswith("texts: batch 7, lengths ["), name
    heads = {name: record["export"]["head"]["kind"] for name, record in manifest.items()}
    assert heads["nli"] == heads["ner_simple"] == "softmax"
    assert heads["reranker"] == "sigmoid"  # CrossEncoder's default for one label
    assert heads["st_reranker"] == "identity"  # its config_sentence_transformers.json
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


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pair_classification_client(
    server: LocalServer, sources: dict[str, Path], protocol: str
) -> None:
    import asyncio

    pairs = list(zip(PREMISES, HYPOTHESES, strict=True))
    reference = nli_reference(sources["nli"], pairs)
    with ClassificationClient(url(server, protocol), "nli", protocol=protocol) as classifier:
        results = classifier.classify(PREMISES, pairs=HYPOTHESES)  # 8 pairs: 2 requests
        with pytest.raises(InvalidInputError, match="pairs: 2 given for 8 texts"):
            classifier.classify(PREMISES, pairs=HYPOTHESES[:2])
        with pytest.raises(InvalidInputError, match="TEXT_PAIR"):
            classifier.classify(PREMISES)  # a pair model needs its pairs
    scores = np.array([list(r.scores.values()) for r in results])
    np.testing.assert_allclose(scores, reference, atol=1e-4)
    assert [r.label for r in results] == [NLI_LABELS[i] for i in reference.argmax(axis=1)]

    async def main() -> list[str]:
        async with AsyncClassificationClient(url(server, protocol), "nli", protocol=protocol) as c:
            return [r.label for r in await c.classify(PREMISES, pairs=HYPOTHESES)]

    assert asyncio.run(main()) == [r.label for r in results]


# --- text-reranking ----------------------------------------------------------------------------

QUERY = "is the film good ?"
DOCUMENTS = [*PREMISES, *HYPOTHESES]


def cross_encoder_scores(source: Path, query: str, documents: list[str]) -> np.ndarray:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(source), max_length=MAX_LENGTH, device="cpu")
    return np.asarray(model.predict([(query, d) for d in documents], batch_size=8))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", ["reranker", "st_reranker"])
def test_rerank_scores_equal_cross_encoder_predict(
    server: LocalServer, sources: dict[str, Path], name: str, protocol: str
) -> None:
    reference = cross_encoder_scores(sources[name], QUERY, DOCUMENTS)
    with RerankClient(url(server, protocol), name, protocol=protocol) as reranker:
        results = reranker.rerank(QUERY, DOCUMENTS)
        top = reranker.rerank(QUERY, DOCUMENTS, top_k=3)
    assert sorted(r.index for r in results) == list(range(len(DOCUMENTS)))
    assert [r.document for r in results] == [DOCUMENTS[r.index] for r in results]
    served = np.array([r.score for r in sorted(results, key=lambda r: r.index)])
    np.testing.assert_allclose(served, reference, atol=1e-4)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert top == results[:3]
    if name == "reranker":  # sigmoid: probabilities
        assert served.min() > 0.0 and served.max() < 1.0


def test_rerank_100_documents_equals_scoring_them_one_by_one(server: LocalServer) -> None:
    import asyncio

    documents = [f"{DOCUMENTS[i % len(DOCUMENTS)]} {i}" for i in range(100)]
    with RerankClient(server.http_url, "reranker", concurrency=4) as reranker:
        results = reranker.rerank("q", documents)  # 25 requests of 4, sent concurrently
        alone = [reranker.rerank("q", [d])[0].score for d in documents]
        assert reranker.rerank("q", []) == []
        with pytest.raises(InvalidInputError, match="top_k"):
            reranker.rerank("q", documents, top_k=0)
    assert len(results) == 100
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    by_index = {r.index: r.score for r in results}
    np.testing.assert_allclose([by_index[i] for i in range(100)], alone, atol=1e-6)

    async def main() -> list[int]:
        async with AsyncRerankClient(server.grpc_url, "reranker", protocol="grpc") as reranker:
            return [r.index for r in await reranker.rerank("q", documents)]

    assert asyncio.run(main()) == [r.index for r in results]


# --- token-classification --------------------------------------------------------------------

NER_TEXTS = [
    "hello world , the film was great !",
    "Grüße aus Köln: naïve café, 東京タワー 🚀",
    "the  server   was   very    slow...",
    "",
    "unknownword zzz triton , ok ?",
    LONG,  # cut at MAX_LENGTH tokens
    "a,b;c!d?e",
]


def pipeline_entities(source: Path, aggregation: str, texts: list[str]) -> list[list[dict]]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    ner = pipeline(
        "token-classification",
        model=AutoModelForTokenClassification.from_pretrained(str(source)),
        tokenizer=AutoTokenizer.from_pretrained(str(source), model_max_length=MAX_LENGTH),
        aggregation_strategy=aggregation,
        device="cpu",
    )
    return [ner(text) for text in texts]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_entities_equal_the_transformers_pipeline(
    server: LocalServer, sources: dict[str, Path], aggregation: str, protocol: str
) -> None:
    expected = pipeline_entities(sources["ner"], aggregation, NER_TEXTS)
    name = f"ner_{aggregation}"
    with TokenClassificationClient(url(server, protocol), name, protocol=protocol) as ner:
        served = ner.entities(NER_TEXTS)  # 7 texts: 2 requests
    assert len(served) == len(expected)
    key = "entity" if aggregation == "none" else "entity_group"
    for text, mine, theirs in zip(NER_TEXTS, served, expected, strict=True):
        assert [(e.label, e.word, e.start, e.end, e.index) for e in mine] == [
            (e[key], e["word"], e["start"], e["end"], e.get("index")) for e in theirs
        ]
        np.testing.assert_allclose(
            [e.score for e in mine], [float(e["score"]) for e in theirs], atol=1e-4
        )
        for entity in mine:
            assert text[entity.start : entity.end]  # characters of the text as sent
    assert sum(1 for row in served if row) >= 4  # the spread head finds entities


def test_entities_raw_json_and_async(server: LocalServer) -> None:
    import asyncio
    import json

    with TritonClient(server.http_url) as client:
        raw = client.infer("ner_simple", {"TEXT": texts_array(["hello world"])})["ENTITIES"]
    items = json.loads(raw[0, 0])
    assert all(list(item) == ["entity_group", "score", "word", "start", "end"] for item in items)

    async def main() -> list[list[str]]:
        async with AsyncTokenClassificationClient(
            server.grpc_url, "ner_simple", protocol="grpc"
        ) as ner:
            return [[e.word for e in row] for row in await ner.entities(NER_TEXTS)]

    with TokenClassificationClient(server.http_url, "ner_simple") as ner:
        assert asyncio.run(main()) == [[e.word for e in row] for row in ner.entities(NER_TEXTS)]
        assert ner.entities([]) == []


# --- verify and the health canaries --------------------------------------------------------------


def test_verify_passes_on_every_task(
    server: LocalServer, built: BuildResult, capsys: pytest.CaptureFixture[str]
) -> None:
    from builder.cli import main

    spec = built.repository.parent / "models.yaml"
    code = main(["verify", str(spec), "--url", server.grpc_url, "--protocol", "grpc"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8 model(s) served equal to their source models" in out
    assert "ok   nli: 9 pairs, worst score difference " in out
    assert "ok   st_reranker: 9 pairs, worst score difference " in out
    assert "activation none (model files)" in out
    assert "ok   ner_average: 9 texts, " in out


def test_every_member_answers_its_canary(server: LocalServer) -> None:
    from builder.health import probe

    with TritonClient(server.http_url) as client:
        results = probe(client)
    assert len(results) == 4 + 2 * 3 + 5 * 4  # nli, the rerankers, the ner models: with members
    assert [r.model for r in results if not r.ok or r.skipped] == []


# --- the API front's TEI routes on these tasks ---------------------------------------------------


@pytest.fixture(scope="module")
def front(
    server: LocalServer, built: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Front]:
    spec = built.repository.parent / "models.yaml"
    log = tmp_path_factory.mktemp("front") / "front.log"
    with running_front(server.grpc_url, spec, log) as running:
        yield running


@pytest.mark.parametrize("name", ["reranker", "st_reranker"])
def test_front_rerank_answers_as_tei_with_cross_encoder_scores(
    front: Front, sources: dict[str, Path], name: str
) -> None:
    import httpx

    from tests.integration.test_front import SCHEMAS, conforms

    body = {"query": QUERY, "texts": DOCUMENTS, "model": name}
    ranks = httpx.post(front.url + "/rerank", json=body, timeout=60).json()
    assert conforms(ranks, SCHEMAS["RerankResponse"]) == []
    assert sorted(r["index"] for r in ranks) == list(range(len(DOCUMENTS)))
    assert [r["score"] for r in ranks] == sorted((r["score"] for r in ranks), reverse=True)
    assert all("text" not in r for r in ranks)
    # CrossEncoder.predict: probabilities for reranker (sigmoid), logits for st_reranker
    raw = cross_encoder_scores(sources[name], QUERY, DOCUMENTS)
    probabilities = raw if name == "reranker" else 1.0 / (1.0 + np.exp(-raw.astype(np.float64)))
    served = np.array([r["score"] for r in sorted(ranks, key=lambda r: r["index"])])
    # TEI's scores are probabilities unless raw_scores: the identity model gets its sigmoid
    np.testing.assert_allclose(served, probabilities, atol=1e-4)
    texts = httpx.post(front.url + "/rerank", json={**body, "return_text": True}).json()
    assert [r["text"] for r in texts] == [DOCUMENTS[r["index"]] for r in texts]
    raw_reply = httpx.post(front.url + "/rerank", json={**body, "raw_scores": True})
    if name == "st_reranker":
        as_raw = sorted(raw_reply.json(), key=lambda r: r["index"])
        np.testing.assert_allclose([r["score"] for r in as_raw], raw, atol=1e-4)
    else:  # a sigmoid in the graph: no raw logits to give, and it says so
        assert raw_reply.status_code == 422
        assert "activation: none" in raw_reply.json()["error"]


def test_front_tei_requests_without_a_model_get_the_first_of_the_task(front: Front) -> None:
    import httpx

    first = httpx.post(front.url + "/rerank", json={"query": "q", "texts": ["a", "b"]}).json()
    named = httpx.post(
        front.url + "/rerank", json={"query": "q", "texts": ["a", "b"], "model": "reranker"}
    ).json()
    assert first == named
    wrong = httpx.post(front.url + "/rerank", json={"query": "q", "texts": ["a"], "model": "nli"})
    assert wrong.status_code == 400 and "text-classification" in wrong.json()["error"]
    empty = httpx.post(front.url + "/rerank", json={"query": "q", "texts": []})
    assert empty.status_code == 422 and empty.json()["error_type"] == "validation"


def test_front_predict_pairs_equal_the_classification_client(
    front: Front, server: LocalServer
) -> None:
    import httpx

    from tests.integration.test_front import SCHEMAS, conforms

    rows = [[a, b] for a, b in zip(PREMISES, HYPOTHESES, strict=True)]
    batch = httpx.post(front.url + "/predict", json={"inputs": rows}, timeout=60).json()
    assert conforms(batch, SCHEMAS["PredictResponse"]) == []
    with ClassificationClient(server.grpc_url, "nli", protocol="grpc") as client:
        expected = client.classify(PREMISES, HYPOTHESES)
    for got, want in zip(batch, expected, strict=True):
        assert got[0]["label"] == want.label
        assert {p["label"]: p["score"] for p in got} == pytest.approx(want.scores, abs=1e-7)
    pair = httpx.post(front.url + "/predict", json={"inputs": rows[0]}).json()
    assert pair == batch[0]
    single = httpx.post(front.url + "/predict", json={"inputs": "just one text"})
    assert single.status_code == 422 and "pairs" in single.json()["error"]


def test_front_ner_equals_the_token_classification_client(
    front: Front, server: LocalServer
) -> None:
    import httpx

    for name in ("ner_simple", "ner_none"):
        body = {"inputs": NER_TEXTS, "model": name}
        rows = httpx.post(front.url + "/v1/ner", json=body, timeout=60).json()
        with TokenClassificationClient(server.grpc_url, name, protocol="grpc") as ner:
            expected = ner.entities(NER_TEXTS)
        key = "entity" if name == "ner_none" else "entity_group"
        for got, want in zip(rows, expected, strict=True):
            assert [(e[key], e["word"], e["start"], e["end"], e.get("index")) for e in got] == [
                (e.label, e.word, e.start, e.end, e.index) for e in want
            ]
            assert [e["score"] for e in got] == pytest.approx([e.score for e in want], abs=1e-7)
        one = httpx.post(front.url + "/v1/ner", json={"inputs": NER_TEXTS[0], "model": name})
        assert one.json() == rows[0]


def test_front_answers_503_in_openai_and_tei_bodies_when_triton_stops(
    built: BuildResult, tmp_path: Path
) -> None:
    import httpx

    spec = built.repository.parent / "models.yaml"
    own = LocalServer(built.repository)
    own.start()
    try:
        with running_front(own.grpc_url, spec, tmp_path / "front.log") as front:
            body = {"query": "q", "texts": ["a"], "model": "reranker"}
            assert httpx.post(front.url + "/rerank", json=body, timeout=60).status_code == 200
            assert httpx.get(front.url + "/health", timeout=60).status_code == 200
            own.stop()
            down = httpx.post(front.url + "/rerank", json=body, timeout=60)
            assert down.status_code == 503
            assert down.json()["error_type"] == "unhealthy"
            assert "Triton is unreachable" in down.json()["error"]
            ner = httpx.post(
                front.v1 + "/ner", json={"model": "ner_simple", "inputs": "x"}, timeout=60
            )
            assert ner.status_code == 503  # a /v1 route: OpenAI's error body
            assert ner.json()["error"]["type"] == "server_error"
            assert ner.json()["error"]["code"] == "triton_unavailable"
            health = httpx.get(front.url + "/health", timeout=60)
            assert health.status_code == 503
            assert health.json()["models"]["reranker"]["ok"] is False
    finally:
        own.close()
