"""infinity-emb 0.0.78 in a throwaway venv of its own: install, export, optimise, serve.

Everything lives under the benchmark's cache folder and is reused when present:

- ``<venv>``: ``torch==2.13.0+cpu`` first (the local CPU wheel, so that pip takes no CUDA
  builds), then ``infinity-emb[server,torch,optimum]==0.0.78``; a marker file says it
  finished.
- ``infinity-model-<key>/``: ``optimum-cli export onnx --library-name transformers --task
  feature-extraction`` of the model (a graph giving ``last_hidden_state``; the
  sentence-transformers library export gives a pooled output that infinity would then pool
  again by its first token). infinity is started from inside this folder with
  ``--model-id .`` and ``--pooling-method mean``.
- ``infinity-hf-<key>/``: the Hugging Face cache infinity's ONNX engine looks in for an
  optimised graph (``infinity_onnx/CPUExecutionProvider/*_optimized.onnx``). infinity's own
  optimisation fails with optimum 2.x and silently falls back to the plain graph, so
  ``infinity_optimize.py`` runs optimum's ORTOptimizer there beforehand, offline.

With ``--infinity-engine torch`` infinity serves the sentence-transformers folder itself
(PyTorch), with no export.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.side_by_side import NotMeasured, loadgen
from benchmarks.side_by_side.served import Served
from builder.serve import free_ports

VERSION = "0.0.78"
REQUIREMENT = f"infinity-emb[server,torch,optimum]=={VERSION}"
TORCH = "torch==2.13.0+cpu"
SERVED_NAME = "minilm"
BATCH_SIZE = 32
START_TIMEOUT_S = 300.0
OPTIMIZE_SCRIPT = Path(__file__).resolve().parent / "infinity_optimize.py"
_PROVIDER = "CPUExecutionProvider"
_FOREIGN = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")


@dataclass(frozen=True)
class InfinitySetup:
    venv: Path
    source: Path  # the sentence-transformers folder
    key: str  # source_key of the source
    cache: Path
    engine: str  # optimum | torch

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def model_dir(self) -> Path:
        """The folder infinity is started in (``--model-id .``)."""
        if self.engine == "torch":
            return self.source
        return self.cache / f"infinity-model-{self.key}"

    @property
    def hf_cache(self) -> Path:
        return self.cache / f"infinity-hf-{self.key}"

    @property
    def log_path(self) -> Path:
        return self.cache / "infinity-server.log"


def _tail(text: str, lines: int = 4) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    # pip's configured extra index folders that do not exist here: noise
    kept = [line for line in kept if not line.startswith("WARNING: Location")]
    return " | ".join(kept[-lines:])


def _own_env(**extra: str) -> dict[str, str]:
    """This environment without what points Python at another venv's packages."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    return env | extra


def _run(command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    env = env or _own_env()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        output = _tail(done.stdout + done.stderr)
        raise NotMeasured(f"{what} failed (exit {done.returncode}): {output}")


def ensure_venv(venv: Path) -> None:
    """Install infinity-emb into ``venv`` unless a finished install is there."""
    marker = venv / ".triton-pack-bench-installed"
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == REQUIREMENT:
        return
    print(f"installing {REQUIREMENT} into {venv} (once; a few minutes)", flush=True)
    if not (venv / "bin" / "python").is_file():
        _run([sys.executable, "-m", "venv", str(venv)], "creating the venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, TORCH], f"pip install {TORCH}")
    _run([*pip, REQUIREMENT], f"pip install {REQUIREMENT}")
    marker.write_text(REQUIREMENT + "\n", encoding="utf-8")


def _offline_env(setup: InfinitySetup) -> dict[str, str]:
    hub = str(setup.hf_cache)
    return _own_env(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=hub,
        HUGGINGFACE_HUB_CACHE=hub,
        DO_NOT_TRACK="1",  # infinity's anonymous usage statistics
        COLUMNS="250",  # its log's lines, wrapped at 80 otherwise (_graph_note reads them)
    )


def export_model(setup: InfinitySetup) -> None:
    """The optimum export infinity's ONNX engine loads, unless it is there already."""
    target = setup.model_dir
    if (target / "model.onnx").is_file():
        return
    print(f"exporting {setup.source} for infinity into {target} (once)", flush=True)
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        command = [
            str(setup.bin / "optimum-cli"), "export", "onnx", "--model", str(setup.source),
            "--library-name", "transformers", "--task", "feature-extraction", str(staging),
        ]  # fmt: skip
        _run(command, "optimum-cli export onnx", env=_offline_env(setup))
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def optimize_model(setup: InfinitySetup) -> str:
    """Put the optimised graph where infinity looks for it; a note on what happened."""
    folder = setup.hf_cache / "infinity_onnx" / _PROVIDER
    if any(folder.glob("**/*_optimized.onnx")):
        return "optimised (fused) graph"
    print(f"optimising infinity's graph into {folder} (once)", flush=True)
    try:
        _run(
            [str(setup.bin / "python"), str(OPTIMIZE_SCRIPT), str(setup.model_dir), str(folder)],
            "optimum's ORTOptimizer",
            env=_offline_env(setup),
        )
    except NotMeasured as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return f"plain graph: the offline optimisation failed ({exc})"
    return "optimised (fused) graph"


def prepare(setup: InfinitySetup) -> str:
    """Install, export and optimise as needed; the note for the table."""
    ensure_venv(setup.venv)
    if setup.engine == "torch":
        return "torch engine (sentence-transformers' own tokenization, 256 tokens)"
    export_model(setup)
    return optimize_model(setup) + "; truncates at 512 tokens, not 256"


def _command(setup: InfinitySetup, port: int) -> list[str]:
    return [
        str(setup.bin / "infinity_emb"), "v2", "--model-id", ".",
        "--served-model-name", SERVED_NAME, "--engine", setup.engine, "--device", "cpu",
        "--pooling-method", "mean", "--batch-size", str(BATCH_SIZE),
        "--no-vector-disk-cache", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(encoding="utf-8", errors="replace")
            raise NotMeasured(f"infinity exited with code {process.returncode}: {_tail(text)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise NotMeasured(f"infinity was not ready within {START_TIMEOUT_S:.0f} s; log: {log}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _graph_note(setup: InfinitySetup, note: str) -> str:
    """What the log says about the graph infinity loaded (it logs the optimised one found)."""
    if setup.engine != "optimum":
        return note
    log = setup.log_path.read_text(encoding="utf-8", errors="replace")
    if "Optimized model found" in log:
        return note
    return f"{note}; but its log does not say it loaded the optimised graph (see {setup.log_path})"


@contextmanager
def serve_infinity(setup: InfinitySetup) -> Iterator[Served]:
    note = prepare(setup)
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}"
    with setup.log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(setup, port),
            cwd=setup.model_dir,
            env=_offline_env(setup),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(url, process, setup.log_path)
        yield Served(loadgen.infinity_target(url, SERVED_NAME), _graph_note(setup, note))
    finally:
        _stop(process)
