"""A server that heals: `triton-pack serve` reloads a model whose Python stub was killed, and
`triton-pack probe` tells a broken model from a working one (Triton's ready flag does not).
A real tritonserver started by the real CLI; stubs killed with SIGKILL as the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import main
from builder.pipeline import build_repository
from builder.serve import free_ports
from builder.spec import load_spec
from clients import ClassificationClient, ClientError
from tests.integration.conftest import stub_pids, write_spec
from tests.tiny_models import make_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]

MEMBERS = ["tiny_tokenizer", "tiny_onnx", "tiny_postprocess"]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("heal")
    source = make_model(folder / "model", "bert", "text-classification")
    spec = write_spec(
        folder / "models.yaml",
        f"repository: repo\nmodels:\n  - {{name: tiny, task: text-classification, "
        f"source: {source}, max_batch_size: 8}}\n",
    )
    return build_repository(load_spec(spec), progress=lambda message: None).repository


class Served:
    """`triton-pack serve` in a subprocess; its output read by a thread."""

    def __init__(self, repository: Path, heal_interval: str = "1") -> None:
        http, grpc, metrics = free_ports(3)
        self.url = f"http://127.0.0.1:{http}"
        self.repository = repository
        command = [sys.executable, "-m", "builder.cli", "serve", str(repository)]
        command += ["--http-port", str(http), "--grpc-port", str(grpc)]
        command += ["--metrics-port", str(metrics), "--heal-interval", heal_interval]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("ready:"):
                self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        """SIGTERM (serve then stops tritonserver and its stubs), SIGKILL only if stuck."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def served(repository: Path) -> Iterator[Served]:
    server = Served(repository)
    assert server.ready.wait(180), server.output
    yield server
    server.stop()


def answers(url: str) -> bool:
    try:
        with ClassificationClient(url, "tiny", timeout=5.0) as classifier:
            return len(classifier.classify(["good film"])) == 1
    except ClientError:
        return False


def wait_until(condition: object, seconds: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def test_probe_passes_on_a_healthy_server(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["probe", "--url", served.url]) == 0
    out = capsys.readouterr().out
    for model in ["tiny", *MEMBERS]:
        assert f"ok   {model}: answered in " in out
    assert "4 model(s) answer" in out
    assert "(every model answered a probe; Ctrl-C stops)" in served.output


@pytest.mark.parametrize("member", MEMBERS)
def test_a_killed_stub_is_healed_without_a_manual_step(
    repository: Path, member: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = Served(repository)
    try:
        assert server.ready.wait(180), server.output
        assert answers(server.url)
        (pid,) = stub_pids(repository, member)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        healed_after = wait_until(lambda: answers(server.url), 60)
        print(f"{member}: stub {pid} killed; the ensemble answered again after {healed_after} s")
        assert healed_after is not None, server.output
        assert healed_after < 30
        assert f"heal: model {member!r} does not answer" in server.output
        assert f"heal: model {member!r} reloaded in " in server.output
        assert stub_pids(repository, member) != [pid]
        assert main(["probe", "--url", server.url, "-q"]) == 0
        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        print(
            f"{member}: healed in {healed_after:.1f} s; stopped in {time.monotonic() - sent:.1f} s"
        )
        assert time.monotonic() - killed < 120
    finally:
        server.stop()


def test_probe_fails_while_a_model_is_broken(
    repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With healing off, a killed stub stays dead: probe says so, Triton's ready flag does not."""
    import urllib.request

    server = Served(repository, heal_interval="0")
    url = server.url
    try:
        assert server.ready.wait(180), server.output
        (pid,) = stub_pids(repository, "tiny_tokenizer")
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not answers(url), 30) is not None
        with urllib.request.urlopen(f"{url}/v2/health/ready") as reply:
            assert reply.status == 200  # Triton still says ready
        assert main(["probe", "--url", url]) == 1
        out = capsys.readouterr().out
        assert "FAIL tiny_tokenizer: " in out
        assert "do not answer: tiny, tiny_tokenizer" in out
    finally:
        server.stop()
