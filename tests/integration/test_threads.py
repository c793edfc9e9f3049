"""The ONNX member's thread parameters reach ONNX Runtime: the stand-in honours the native
backend's `intra_op_thread_count` as Triton's ONNX Runtime backend does (NGC image)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
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


def test_an_instance_alone_borrows_its_idle_siblings_threads(tmp_path: Path) -> None:
    """Two instances of one thread each: every stub also holds a session of both threads for
    when it runs alone, and the instances share their running state through a file in the
    backend folder. Answers equal those of the same model with lending turned off, one
    request at a time (alone) and many at once (siblings running)."""
    source = make_model(tmp_path / "model", "bert", "text-embedding")
    spec = write_spec(
        tmp_path / "models.yaml",
        "repository: repo\nmodels:\n"
        f"  - {{name: lend, task: text-embedding, source: {source}, instances: 2, threads: 1}}\n"
        f"  - {{name: fixed, task: text-embedding, source: {source}, instances: 2, threads: 1,"
        " lend_idle_threads: false}\n",
    )
    repository = build_repository(load_spec(spec), progress=lambda message: None).repository
    assert 'key: "lend_idle_threads"' in (repository / "fixed_onnx" / "config.pbtxt").read_text()
    assert "lend_idle_threads" not in (repository / "lend_onnx" / "config.pbtxt").read_text()
    texts = [f"review number {i}: " + "good " * (i % 7) + "film" for i in range(24)]
    with LocalServer(repository) as server:
        with (
            EmbeddingClient(server.http_url, "lend") as lend,
            EmbeddingClient(server.http_url, "fixed") as fixed,
        ):
            expected = np.concatenate([fixed.embed([text]) for text in texts])
            alone = np.concatenate([lend.embed([text]) for text in texts])
            shared = server._workdir / "backends" / "onnxruntime"
            words = np.frombuffer((shared / ".running-lend_onnx").read_bytes(), dtype=np.int64)
            pids, ran_alone = words.reshape(4, 64)[2:]
            # one request at a time: alone, once each instance has seen its calm batches
            assert ran_alone.sum() >= len(texts) - 2 * 3, ran_alone[:2]
            with ThreadPoolExecutor(8) as pool:
                together = np.concatenate(list(pool.map(lambda t: lend.embed([t]), texts)))
        np.testing.assert_allclose(alone, expected, atol=1e-5)
        np.testing.assert_allclose(together, expected, atol=1e-5)
        assert not (shared / ".running-fixed_onnx").exists()
        lenders = sorted(stub_pids(repository, "lend_onnx"))
        assert sorted(int(p) for p in pids if p) == lenders and len(lenders) == 2
        # the borrowed session's pool: one more worker thread in each lending stub
        assert stub_threads(repository, "lend_onnx") == stub_threads(repository, "fixed_onnx") + 1
