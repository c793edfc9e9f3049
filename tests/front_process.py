"""Start the real `triton-pack api` (the CLI, as a subprocess) for the front's tests."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.serve import free_ports

START_TIMEOUT_S = 180.0  # a busy 2-core machine; transformers' import alone takes seconds


@dataclass(frozen=True)
class Front:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def v1(self) -> str:
        return self.url + "/v1"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True  # 401 without a key: it is up
    except OSError:
        return False


@contextmanager
def running_front(
    triton_grpc: str, spec: Path, log: Path, extra: Sequence[str] = ()
) -> Iterator[Front]:
    port = free_ports(1)[0]
    command = [
        sys.executable, "-m", "builder.cli", "api", "--triton", triton_grpc,
        "--spec", str(spec), "--port", str(port), *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(url):
            if process.poll() is not None:
                raise AssertionError(
                    f"triton-pack api exited {process.returncode}: "
                    + log.read_text(errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    "triton-pack api did not answer within "
                    f"{START_TIMEOUT_S:.0f} s: " + log.read_text()[-2000:]
                )
            time.sleep(0.2)
        yield Front(url, log, process)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
