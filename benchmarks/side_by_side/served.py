"""Starting and stopping the served systems; each yields a ``Served``: a target and a note.

- ``serve_ours``: the built repository under ``builder.serve.LocalServer``, ensemble ``minilm``.
- ``serve_baseline``: ``benchmarks/baseline/minilm_python`` assembled into a temporary
  repository (config and ``model.py`` copied, the plain graph and ``tokenizer.json`` linked)
  under the same ``LocalServer``, so the same tritonserver and Python backend serve it.
- ``serve_trivial``: ``loadgen.py`` as a canned-answer endpoint (the generator's own limit).

Every process started here inherits this process's CPU affinity.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.side_by_side import NotMeasured, loadgen
from benchmarks.side_by_side.plain import PlainModel
from builder.errors import ServeError
from builder.serve import LocalServer, free_ports

BASELINE_DIR = Path(__file__).resolve().parent.parent / "baseline" / "minilm_python"
BASELINE_MODEL = BASELINE_DIR.name


@dataclass(frozen=True)
class Served:
    target: loadgen.Target
    note: str = ""


@contextmanager
def _local_server(repository: Path) -> Iterator[LocalServer]:
    server = LocalServer(repository)
    try:
        server.start()
    except ServeError as exc:
        server.close()
        raise NotMeasured(f"tritonserver did not start: {exc}") from None
    try:
        yield server
    finally:
        server.close()


@contextmanager
def serve_ours(repository: Path, ensemble: str) -> Iterator[Served]:
    if not (repository / ensemble / "config.pbtxt").is_file():
        raise NotMeasured(
            f"{repository} has no model {ensemble!r}; build it first (build-repo models.yaml)"
        )
    with _local_server(repository) as server:
        yield Served(loadgen.triton_target(server.http_url, ensemble))


def assemble_baseline(plain: PlainModel, repository: Path) -> Path:
    """A Triton repository holding only the hand-written baseline model."""
    folder = repository / BASELINE_MODEL
    shutil.copytree(BASELINE_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for path in plain.files:  # model.onnx, its external data, tokenizer.json
        (folder / "1" / path.name).symlink_to(path)
    return repository


@contextmanager
def serve_baseline(plain: PlainModel) -> Iterator[Served]:
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        repository = assemble_baseline(plain, Path(tmp))
        with _local_server(repository) as server:
            yield Served(loadgen.triton_target(server.http_url, BASELINE_MODEL))


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotMeasured(f"exited with code {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise NotMeasured(f"not listening on port {port} within {timeout:.0f} s")


@contextmanager
def serve_trivial() -> Iterator[Served]:
    port = free_ports(1)[0]
    process = subprocess.Popen([sys.executable, loadgen.__file__, str(port)])
    try:
        wait_for_port(port, process, 30)
        note = "canned answer, no model: the load generator's own limit on these cores"
        yield Served(loadgen.triton_target(f"http://127.0.0.1:{port}", "trivial"), note)
    finally:
        process.kill()
        process.wait()
