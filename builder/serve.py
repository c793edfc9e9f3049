"""Run a real tritonserver over a repository, with or without Docker and GPU.

``check_served_repository`` looks at the folder first, so a newcomer who has not built yet
hears "run build-repo first" rather than Triton's low-level errors. ``LocalServer.stop``
bounds shutdown: tritonserver gets SIGINT (it stops taking new work and drains in-flight
requests, for up to its 30 s exit timeout), and the whole process group (server and Python
backend stubs) is killed if it is not gone within ``STOP_SECONDS``, so a stop takes under
10 s even while clients keep sending. A short ``--exit-timeout-secs`` is not passed: after it
runs out, tritonserver unloads the models while its endpoints still answer, so clients see
"unknown model" (not retried) instead of a refused connection (retried).

``find_tritonserver`` takes ``tritonserver`` from PATH (the NGC image) or the binary shipped in
the ``nvidia-pytriton`` wheel. ``assemble_backends`` builds a backend directory: the native
backends found beside the server, the Python backend with the stub for the running Python,
and our Python-based stand-ins (``python_backends/<backend>/model.py``) for any backend the
server lacks, so the same ``config.pbtxt`` serves in both places.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from types import TracebackType

from builder.errors import ServeError
from builder.manifest import MANIFEST, read_manifest
from builder.output import GITIGNORE_HEADER, made_by_triton_pack
from builder.storage import RepositoryURI, check_remote_repository

__all__ = [
    "LocalServer",
    "Ports",
    "TritonInstall",
    "assemble_backends",
    "check_served_repository",
    "find_tritonserver",
    "free_ports",
    "serving_args",
]

STAND_INS_DIR = Path(__file__).resolve().parent.parent / "python_backends" / "stand_ins"
# tritonserver is killed, with its stubs, if it has not exited this long after SIGINT.
STOP_SECONDS = 6.0
_FAILED = re.compile(r"failed to load|UNAVAILABLE|failed to stat|Invalid argument|error:", re.I)


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backends: Path  # the server's own backend directory
    lib_dirs: tuple[Path, ...]  # needed on LD_LIBRARY_PATH
    stubs: Path | None  # python_backend_stubs/<major.minor>/ in the wheel; None when native


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


def free_ports(count: int = 3) -> list[int]:
    """Ports free on 127.0.0.1 right now (bound together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def find_tritonserver() -> TritonInstall:
    """tritonserver from PATH, else from the nvidia-pytriton wheel."""
    on_path = shutil.which("tritonserver")
    if on_path:
        binary = Path(on_path).resolve()
        backends = binary.parent.parent / "backends"
        if not (backends / "python").is_dir():
            raise ServeError(
                f"the tritonserver on PATH ({on_path}) is not laid out like the NGC image: "
                f"{backends}/python (Triton's Python backend) does not exist. Remove it from "
                "PATH to use the tritonserver of the nvidia-pytriton wheel "
                "(pip install 'triton-pack[local]')"
            )
        return TritonInstall(binary, backends, (), None)
    found = importlib_util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        raise ServeError(
            "no tritonserver found: none on PATH, and the nvidia-pytriton wheel is not "
            "installed (pip install 'triton-pack[local]', or run inside the NGC image)"
        )
    package = Path(next(iter(found.submodule_search_locations)))
    root = package / "tritonserver"
    libs = package.parent / "nvidia_pytriton.libs"
    return TritonInstall(
        binary=root / "bin" / "tritonserver",
        backends=root / "backends",
        lib_dirs=(libs,),
        stubs=root / "python_backend_stubs",
    )


def assemble_backends(install: TritonInstall, dest: Path) -> Path:
    """A backend directory in ``dest``: native backends, the Python backend, our stand-ins."""
    dest.mkdir(parents=True, exist_ok=True)
    for native in sorted(install.backends.iterdir()):
        if native.is_dir() and native.name != "python":
            (dest / native.name).symlink_to(native, target_is_directory=True)
    python = dest / "python"
    if install.stubs is None:
        python.symlink_to(install.backends / "python", target_is_directory=True)
    else:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = install.stubs / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServeError(f"the nvidia-pytriton wheel has no Python backend stub for {version}")
        python.mkdir()
        # copies, not links: tritonserver refuses a backend library that resolves elsewhere
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(install.backends / "python" / name, python / name)
        shutil.copy2(stub, python / stub.name)
        (python / stub.name).chmod(0o755)
    for stand_in in sorted(STAND_INS_DIR.glob("*/model.py")):
        backend = stand_in.parent.name
        if (dest / backend).exists():
            continue
        # the whole folder: model.py and the pure modules it imports
        shutil.copytree(
            stand_in.parent, dest / backend, ignore=shutil.ignore_patterns("__pycache__")
        )
    # the vllm stand-in serves the contract the builder renders: the same module, copied
    if (dest / "vllm" / "llm_ops.py").is_file():
        shutil.copy2(STAND_INS_DIR.parent / "vllm_contract.py", dest / "vllm" / "vllm_contract.py")
    return dest


def _artifacts_missing(repository: Path) -> list[str]:
    """Files the manifest lists (weights, tokenizer files) that are not in ``repository``."""
    manifest = read_manifest(repository)
    paths = manifest.artifact_paths() if manifest else ()
    return [rel for rel in paths if not (repository / rel).is_file()]


def check_served_repository(repository: Path | RepositoryURI) -> None:
    """Raise ServeError or StorageError (saying what to run) unless ``repository`` looks
    servable.

    An S3 repository must hold a manifest and every file it lists (an upload that did not
    finish has no manifest: it is uploaded last). A folder triton-pack built must have its
    manifest and every file it lists; configs without a manifest (the committed ones on a
    fresh clone) have not been built yet. Any other folder with ``*/config.pbtxt`` is served
    as a plain Triton repository.
    """
    if isinstance(repository, RepositoryURI):
        check_remote_repository(repository)
        return
    build = "run `build-repo SPEC` (e.g. `build-repo models.yaml`) first"
    if not repository.exists():
        raise ServeError(f"{repository}: no such model repository; {build}")
    if not repository.is_dir():
        raise ServeError(f"{repository}: is a file, not a model repository folder")
    if made_by_triton_pack(repository):
        missing = _artifacts_missing(repository)
        if missing:
            shown = ", ".join(missing[:3]) + (
                f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            )
            raise ServeError(
                f"{repository}: files of the build are missing ({shown}); run `build-repo` "
                "again to restore them"
            )
        return
    try:
        generated = (repository / ".gitignore").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        generated = ""
    if generated.startswith(GITIGNORE_HEADER):
        raise ServeError(
            f"{repository}: has configs but was never built here (no {MANIFEST}, no weights); "
            f"{build}"
        )
    if not any(repository.glob("*/config.pbtxt")):
        raise ServeError(f"{repository}: holds no models (no */config.pbtxt); {build}")


def _environment(install: TritonInstall) -> dict[str, str]:
    env = dict(os.environ)
    # The stub finds site-packages through the first python3 on PATH (its venv's pyvenv.cfg)
    # and must link the libpython of the interpreter running us, or stdlib extensions break.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libdir = sysconfig.get_config_var("LIBDIR")
    dirs = [str(d) for d in install.lib_dirs] + ([libdir] if libdir else [])
    if env.get("LD_LIBRARY_PATH"):
        dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
    return env


def model_errors(log: str) -> list[str]:
    """The lines of a tritonserver log that say why models failed to load."""
    lines = []
    for line in log.splitlines():
        if _FAILED.search(line) and line.strip() not in lines:
            lines.append(line.strip())
    return lines


def serving_args(repository: str, ports: Ports) -> list[str]:
    """The tritonserver arguments every way of serving shares: ``LocalServer`` and the pods
    that ``triton-pack deploy`` renders (a test holds them equal)."""
    return [
        f"--model-repository={repository}",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
        "--allow-metrics=true",
    ]


class LocalServer:
    """A tritonserver process over ``repository`` (a folder or an S3 URI); a context manager.

    For an S3 repository tritonserver reads the objects itself, with the AWS variables of
    this process's environment.
    """

    def __init__(
        self,
        repository: Path | RepositoryURI,
        ports: Ports | None = None,
        host: str = "127.0.0.1",
        model_control: str = "none",
        extra_args: tuple[str, ...] = (),
        log_path: Path | None = None,
        keep_log: bool = False,
    ) -> None:
        self.repository: Path | RepositoryURI = (
            repository if isinstance(repository, RepositoryURI) else Path(repository).resolve()
        )
        if ports is None:
            ports = Ports(*free_ports(3))
        self.ports = ports
        self.host = host
        self.model_control = model_control
        self.extra_args = extra_args
        self._workdir = Path(tempfile.mkdtemp(prefix="triton-pack-serve-"))
        self.log_path = log_path or self._workdir / "tritonserver.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._keep_log = keep_log

    @property
    def log_kept(self) -> bool:
        """Whether the log outlives ``close()`` (a given --log-file always does)."""
        return self._keep_log or self.log_path.parent != self._workdir

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    def command(self, install: TritonInstall, backends: Path) -> list[str]:
        repository, *ports = serving_args(str(self.repository), self.ports)
        cmd = [
            str(install.binary),
            repository,
            f"--backend-directory={backends}",
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            *ports,
        ]
        if self.model_control == "explicit":
            cmd += ["--model-control-mode=explicit", "--load-model=*"]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 300.0) -> None:
        check_served_repository(self.repository)
        install = find_tritonserver()
        backends = assemble_backends(install, self._workdir / "backends")
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.command(install, backends),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(install),
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"tritonserver exited with code {self._process.returncode}")
            if self._ready():
                return
            time.sleep(0.25)
        self.stop()
        self._fail(f"tritonserver was not ready within {timeout:.0f}s")

    def _fail(self, reason: str) -> None:
        self.stop()
        self._keep_log = True  # the error message points at it
        log = self.log_path.read_text(encoding="utf-8", errors="replace")
        errors = model_errors(log) or log.strip().splitlines()[-20:]
        raise ServeError(f"{reason}; log: {self.log_path}\n  " + "\n  ".join(errors))

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def poll(self) -> int | None:
        """The server's exit code, or None while it runs."""
        return None if self._process is None else self._process.poll()

    def wait(self) -> int:
        """Block until the server exits; its log is kept if it exited with an error."""
        if self._process is None:
            return 0
        code = self._process.wait()
        self._keep_log = self._keep_log or code != 0
        return code

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGINT, then SIGKILL to the server and its stubs after ``timeout`` seconds."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        # Python backend stubs are children of the server: end the whole group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        """Stop the server; remove the temporary folder unless a failure's log is in it."""
        self.stop()
        if self.log_kept and self.log_path.parent == self._workdir:
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)
        else:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
