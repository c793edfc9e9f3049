"""The ONNX member's thread parameters reach ONNX Runtime: the stand-in honours the native
backend's `intra_op_thread_count` as Triton's ONNX Runtime backend does (NGC image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.pipeline import build_repository
from builder.serve import LocalServer
from builder.spec import load_spec
from clients import EmbeddingClient
from tests.integration.conftest import stub_pids, write_spec
from tests.tiny_models import make_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def stub_threads(repository: Path, model: str) -> int:
    """Threads of the stub serving ``model``."""
    pids = stub_pids(repository, model)
    assert pids, f"no stub serves {model}"
    return len(list(Path(f"/proc/{pids[0]}/task").iterdir()))


def test_intra_op_threads_reach_onnx_runtime(tmp_path: Path) -> None:
    source = make_model(tmp_path / "model", "bert", "text-embedding")
    spec = write_spec(
        tmp_path / "models.yaml",
        "repository: repo\nmodels:\n"
        f"  - {{name: one, task: text-embedding, source: {source}, threads: 1}}\n"
        f"  - {{name: four, task: text-embedding, source: {source}, threads: 4}}\n",
    )
    repository = build_repository(load_spec(spec), progress=lambda message: None).repository
    config = (repository / "four_onnx" / "config.pbtxt").read_text()
    assert 'key: "intra_op_thread_count"\n  value: { string_value: "4" }' in config
    with LocalServer(repository) as server:
        for model in ("one", "four"):  # run a batch so that the pools exist
            with EmbeddingClient(server.http_url, model) as embedder:
                assert embedder.embed(["good film", "bad film"]).shape == (2, 32)
        one = stub_threads(repository, "one_onnx")
        four = stub_threads(repository, "four_onnx")
    # ONNX Runtime's intra-op pool has (threads - 1) workers beside the calling thread
    assert four - one == 3, (one, four)
