"""The encoders people bring, built, served by a real tritonserver and compared with their
source: every added architecture for both tasks, sentence-transformers folders read as they
are (CLS pooling, no Normalize module), a Dense module refused, and ``triton-pack verify``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builder.cli import main
from builder.pipeline import BuildResult, build_repository
from builder.serve import LocalServer
from builder.spec import load_spec
from clients import ClassificationClient, EmbeddingClient
from tests.integration.conftest import write_spec
from tests.tiny_models import make_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]

ADDED = ("xlm-roberta", "mpnet", "deberta-v2", "electra", "modernbert")
LABELS = ["neg", "pos", "mixed"]
TEXTS = [
    "good movie",
    "the service was very slow and the food was bad",
    "",
    "hello world , hello triton !",
    " ".join(["one two three four five six seven eight nine ten"] * 30),  # cut at 64
]


def save_sentence_transformer(folder: Path, pooling: str, normalize: bool, dense: bool) -> Path:
    """A sentence-transformers folder, saved by sentence-transformers itself."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )

    make_model(folder / "hf", "bert", "text-embedding", seed=5)
    modules: list[Any] = [
        Transformer(str(folder / "hf"), max_seq_length=48),
        Pooling(32, pooling_mode=pooling),
    ]
    if dense:
        modules.append(Dense(32, 16))
    if normalize:
        modules.append(Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(folder / "st"))
    return folder / "st"


def entry(name: str, task: str, source: Path, extra: str = "") -> str:
    return (
        f"  - {{name: {name}, task: {task}, source: '{source}', max_batch_size: 8, "
        f"dynamic_batching: null{extra}}}\n"
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    made: dict[str, Path] = {}
    for model_type in ADDED:
        key = model_type.replace("-", "_")
        made[f"{key}_emb"] = make_model(root / f"{key}_emb", model_type, "text-embedding")
        made[f"{key}_cls"] = make_model(
            root / f"{key}_cls",
            model_type,
            "text-classification",
            id2label=dict(enumerate(LABELS)),
            seed=3,
        )
    made["st_cls"] = save_sentence_transformer(root / "st_cls", "cls", True, dense=False)
    made["st_plain"] = save_sentence_transformer(root / "st_plain", "max", False, dense=False)
    return made


def spec_text(sources: dict[str, Path]) -> str:
    lines = ["repository: repo\nmodels:\n"]
    for name, source in sources.items():
        if name.startswith("st_"):
            lines.append(entry(name, "text-embedding", source))  # no pooling key: its files say
        elif name.endswith("_emb"):
            lines.append(entry(name, "text-embedding", source, ", max_sequence_length: 64"))
        else:
            lines.append(entry(name, "text-classification", source, ", max_sequence_length: 64"))
    return "".join(lines)


@pytest.fixture(scope="module")
def built(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    spec = write_spec(tmp_path_factory.mktemp("spec") / "models.yaml", spec_text(sources))
    return build_repository(load_spec(spec), progress=lambda message: None)


@pytest.fixture(scope="module")
def server(built: BuildResult) -> Iterator[LocalServer]:
    with LocalServer(built.repository) as running:
        yield running


def mean_pooled_reference(source: Path, texts: list[str], max_length: int) -> np.ndarray:
    """Masked mean of transformers' hidden states, L2-normalised, one text at a time."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModel.from_pretrained(str(source)).eval()
    rows = []
    for text in texts:
        batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state[0]
        vector = hidden[batch["attention_mask"][0].bool()].mean(dim=0).numpy()
        rows.append(vector / np.linalg.norm(vector))
    return np.stack(rows)


def classifier_reference(source: Path, texts: list[str], max_length: int) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    model = AutoModelForSequenceClassification.from_pretrained(str(source)).eval()
    rows = []
    for text in texts:
        batch = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            rows.append(torch.softmax(model(**batch).logits, dim=-1)[0].numpy())
    return np.stack(rows)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


def url(server: LocalServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model_type", ADDED)
def test_an_added_architecture_serves_what_its_source_computes(
    server: LocalServer, sources: dict[str, Path], model_type: str, protocol: str
) -> None:
    key = model_type.replace("-", "_")
    with EmbeddingClient(url(server, protocol), f"{key}_emb", protocol=protocol) as embedder:
        served = embedder.embed(TEXTS)
    reference = mean_pooled_reference(sources[f"{key}_emb"], TEXTS, 64)
    assert cosines(served, reference).min() >= 0.9999

    with ClassificationClient(url(server, protocol), f"{key}_cls", protocol=protocol) as c:
        results = c.classify(TEXTS)
    probabilities = classifier_reference(sources[f"{key}_cls"], TEXTS, 64)
    assert [r.label for r in results] == [LABELS[i] for i in probabilities.argmax(axis=1)]
    served_scores = np.array([list(r.scores.values()) for r in results])
    np.testing.assert_allclose(served_scores, probabilities, atol=1e-4)


@pytest.mark.parametrize("name", ["st_cls", "st_plain"])
def test_a_sentence_transformers_folder_is_served_as_it_says(
    server: LocalServer, built: BuildResult, sources: dict[str, Path], name: str
) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(sources[name]), device="cpu").encode(TEXTS)
    for protocol in ("http", "grpc"):
        with EmbeddingClient(url(server, protocol), name, protocol=protocol) as embedder:
            served = embedder.embed(TEXTS)
        assert cosines(served, reference).min() >= 0.9999
        # no Normalize module: the norms are sentence-transformers' too, not 1
        np.testing.assert_allclose(
            np.linalg.norm(served, axis=1), np.linalg.norm(reference, axis=1), rtol=1e-4
        )
    manifest = json.loads((built.repository / "manifest.json").read_text())
    recorded = manifest["models"][name]["embedding"]
    pooling, normalize = ("cls", True) if name == "st_cls" else ("max", False)
    assert recorded == {
        "pooling": {"value": pooling, "from": "model files"},
        "normalize": {"value": normalize, "from": "model files"},
        "max_sequence_length": {"value": 48, "from": "model files"},
    }


def test_a_dense_module_fails_the_build_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = save_sentence_transformer(tmp_path / "dense", "mean", True, dense=True)
    spec = write_spec(
        tmp_path / "models.yaml",
        "repository: repo\nmodels:\n" + entry("dense", "text-embedding", source),
    )
    assert main(["build", str(spec)]) == 1
    error = capsys.readouterr().err
    assert "model 'dense'" in error
    assert "module 2 (Dense at '2_Dense') is not served" in error
    assert not (tmp_path / "repo").exists()


def test_verify_passes_on_the_served_spec(
    server: LocalServer, built: BuildResult, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = built.repository.parent / "models.yaml"
    for protocol in ("http", "grpc"):
        code = main(["verify", str(spec), "--url", url(server, protocol), "--protocol", protocol])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "12 model(s) served equal to their source models" in out
        assert "ok   st_cls: 9 texts, worst cosine " in out
        assert "pooling cls (model files), normalize true (model files)" in out
        assert "ok   electra_cls: 9 texts, worst score difference " in out


def test_verify_fails_naming_the_model_served_with_the_wrong_pooling(
    server: LocalServer,
    sources: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the server pools st_cls by CLS (its files say so); a spec that says mean disagrees
    spec = write_spec(
        tmp_path / "models.yaml",
        "models:\n" + entry("st_cls", "text-embedding", sources["st_cls"], ", pooling: mean"),
    )
    code = main(["verify", str(spec), "--url", server.http_url, "-q"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL st_cls: 9 texts, worst cosine" in out
    assert "pooling mean (spec)" in out
    assert "1 model(s) differ from their source: st_cls" in out
