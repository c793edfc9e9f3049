"""`triton-pack serve` stops within 10 s on SIGTERM or SIGINT while clients keep sending, and
leaves no tritonserver or Python backend stub behind. A real server, plain HTTP clients."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.pipeline import build_repository
from builder.serve import free_ports
from builder.spec import load_spec
from tests.integration.conftest import write_spec
from tests.tiny_models import make_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]

REQUEST = json.dumps(
    {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["good film"]}]}
).encode()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stop")
    source = make_model(folder / "model", "bert", "text-embedding")
    spec = write_spec(
        folder / "models.yaml",
        f"repository: repo\nmodels:\n  - {{name: tiny, task: text-embedding, source: {source},"
        " instances: 2, max_batch_size: 8}\n",
    )
    return build_repository(load_spec(spec), progress=lambda message: None).repository


def processes_using(repository: Path) -> list[str]:
    """Command lines of live processes that mention ``repository`` (server and stubs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if str(repository) in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline[:160]}")
    return found


class Clients:
    """Threads that send inference requests until stopped, counting answers."""

    def __init__(self, url: str, count: int = 4) -> None:
        self.url = f"{url}/v2/models/tiny/infer"
        self.ok = 0
        self.failed = 0
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(count)]

    def run(self) -> None:
        while not self.stop.is_set():
            request = urllib.request.Request(self.url, data=REQUEST, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    reply.read()
                self.ok += 1
            except (urllib.error.URLError, OSError):
                self.failed += 1

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


@pytest.fixture
def serve(
    repository: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    http, grpc, metrics = free_ports(3)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "builder.cli",
            "serve",
            str(repository),
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
            *request.param,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("ready:"):
            break
    assert lines and lines[-1].startswith("ready:"), "".join(lines)
    yield process, f"http://127.0.0.1:{http}", "".join(lines)
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=30)


def wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("signum", "serve"),
    [(signal.SIGTERM, ()), (signal.SIGINT, ("--keep-log",))],
    ids=["SIGTERM", "SIGINT --keep-log"],
    indirect=["serve"],
)
def test_serve_stops_within_10_s_under_load_and_leaves_nothing(
    serve: tuple[subprocess.Popen[str], str, str], repository: Path, signum: int
) -> None:
    process, url, started = serve
    assert len(processes_using(repository)) >= 3  # tritonserver and its stubs
    with Clients(url) as clients:
        assert wait_until(lambda: clients.ok >= 20, 60), (clients.ok, clients.failed)
        sent = time.monotonic()
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
        stopped = time.monotonic() - sent
        ok_at_stop = clients.ok
    assert process.returncode == 0, output
    assert "stopping tritonserver" in output
    assert stopped < 10.0, f"stopped after {stopped:.1f}s"
    assert ok_at_stop >= 20
    # the group was killed before serve returned; give the kernel a moment to reap them
    assert wait_until(lambda: not processes_using(repository), 5), processes_using(repository)
    log = Path(started.split("(log: ", 1)[1].split(")", 1)[0])
    kept = "--keep-log" in process.args  # type: ignore[operator]
    assert log.is_file() == kept
    assert (f"tritonserver log kept: {log}" in output) == kept
    print(f"{signal.Signals(signum).name}: stopped in {stopped:.2f}s, {ok_at_stop} answers")
