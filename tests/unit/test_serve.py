"""builder.serve, the parts that need no tritonserver: ports, log parsing, backend folder."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from builder import serve
from builder.errors import ServeError
from builder.serve import (
    LocalServer,
    Ports,
    TritonInstall,
    assemble_backends,
    free_ports,
    model_errors,
)

STAND_INS = Path(serve.__file__).resolve().parent.parent / "python_backends" / "stand_ins"
PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

# --- free_ports -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 5])
def test_free_ports_are_distinct_and_bindable(count: int) -> None:
    ports = free_ports(count)
    assert len(ports) == count
    assert len(set(ports)) == count
    assert all(type(p) is int and 1024 <= p <= 65535 for p in ports)
    for port in ports:  # closed again: each can be bound
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_free_ports_default_is_three() -> None:
    assert len(free_ports()) == 3


# --- model_errors ---------------------------------------------------------------------------

REASON = (
    "Invalid argument: model 'minilm_onnx', tensor 'last_hidden_state': the model expects "
    "3 dimensions (shape [-1,-1,384]) but the model configuration specifies 3 dimensions "
    "(shape [-1,-1,768])"
)
FAILED_LOAD = (
    f"E1123 18:40:50.509221 2885 model_lifecycle.cc:642] "
    f"\"failed to load 'minilm_onnx' version 1: {REASON}\""
)
FAILED_SHORT = "I1123 18:40:50.509301 2885 model_lifecycle.cc:777] \"failed to load 'minilm_onnx'\""
ENSEMBLE = (
    'E1123 18:40:50.701112 2885 model_repository_manager.cc:703] "Invalid argument: ensemble '
    "'minilm' depends on 'minilm_onnx' which has no loaded version. Model 'minilm_onnx' loading "
    'failed with error: version 1 is at UNAVAILABLE state"'
)
ROW = f"| minilm_onnx        | 1       | UNAVAILABLE: {REASON} |"
CREATE = "error: creating server: Internal - failed to load all models"

INFO = "I1123 18:40:49.812270 2885"  # severity, date, time and thread of a tritonserver line
WARN = "W1123 18:40:49.871600 2885"
HARMLESS_HEAD = [
    f'{INFO} cache_manager.cc:480] "Create CacheManager with cache_dir: '
    "'/opt/tritonserver/caches'\"",
    f'{WARN} pinned_memory_manager.cc:273] "Unable to allocate pinned system memory, pinned memory '
    'pool will not be available: CUDA driver version is insufficient for CUDA runtime version"',
    f'{INFO} cuda_memory_manager.cc:117] "CUDA memory pool disabled"',
    f'{WARN} metrics.cc:811] "Cannot get CUDA device count, GPU metrics will not be available"',
    f'{INFO} model_lifecycle.cc:472] "loading: minilm_onnx:1"',
    f'{INFO} model_lifecycle.cc:472] "loading: minilm_tokenizer:1"',
    f'{INFO} python_be.cc:2249] "TRITONBACKEND_ModelInstanceInitialize: minilm_tokenizer_0_0 '
    '(CPU device 0)"',
]
TABLE_EDGE = "+--------------------+---------+----------------------------------------------+"
LOG = "\n".join(
    [
        *HARMLESS_HEAD,
        FAILED_LOAD,
        FAILED_SHORT,
        f"{INFO} model_lifecycle.cc:838] \"successfully loaded 'minilm_tokenizer'\"",
        ENSEMBLE,
        f"{INFO} server.cc:674]",
        TABLE_EDGE,
        "| Model              | Version | Status                                       |",
        TABLE_EDGE,
        ROW,
        "| minilm_tokenizer   | 1       | READY                                        |",
        TABLE_EDGE,
        "",
        f'{INFO} server.cc:305] "Waiting for in-flight requests to complete."',
        f'{INFO} server.cc:321] "Timeout 30: Found 0 model versions that have in-flight '
        'inferences"',
        FAILED_LOAD,  # repeated: reported once
        CREATE,
        "",
    ]
)


def test_model_errors_extracts_failure_lines_in_order_once() -> None:
    assert model_errors(LOG) == [FAILED_LOAD, FAILED_SHORT, ENSEMBLE, ROW, CREATE]


def test_model_errors_strips_surrounding_whitespace() -> None:
    assert model_errors(f"  {ROW}  \n") == [ROW]


def test_model_errors_of_a_healthy_log_is_empty() -> None:
    healthy = "\n".join(
        line
        for line in LOG.splitlines()
        if line not in (FAILED_LOAD, FAILED_SHORT, ENSEMBLE, ROW, CREATE)
    )
    assert "READY" in healthy
    assert model_errors(healthy) == []


# --- assemble_backends ----------------------------------------------------------------------


def fake_install(root: Path, native: tuple[str, ...] = (), stubs: bool = True) -> TritonInstall:
    """A tritonserver install laid out like the nvidia-pytriton wheel's."""
    backends = root / "backends"
    python = backends / "python"
    python.mkdir(parents=True)
    (python / "libtriton_python.so").write_bytes(b"\x7fELF fake python backend")
    (python / "triton_python_backend_utils.py").write_text("# fake utils\n")
    (backends / "README.txt").write_text("not a backend\n")  # a file, not a backend folder
    for name in native:
        (backends / name).mkdir()
        (backends / name / f"libtriton_{name}.so").write_bytes(b"native")
    stub_root = root / "python_backend_stubs"
    stub = stub_root / PY_VERSION / "triton_python_backend_stub"
    stub.parent.mkdir(parents=True)
    stub.write_bytes(b"#!fake stub\n")
    stub.chmod(0o644)
    return TritonInstall(
        binary=root / "bin" / "tritonserver",
        backends=backends,
        lib_dirs=(root / "libs",),
        stubs=stub_root if stubs else None,
    )


def test_assemble_backends_from_the_wheel(tmp_path: Path) -> None:
    install = fake_install(tmp_path / "triton", native=("identity",))
    dest = tmp_path / "work" / "backends"

    assert assemble_backends(install, dest) == dest

    assert sorted(p.name for p in dest.iterdir()) == ["identity", "onnxruntime", "python", "vllm"]
    assert (dest / "identity").is_symlink()
    assert (dest / "identity").resolve() == (install.backends / "identity").resolve()

    python = dest / "python"
    assert python.is_dir() and not python.is_symlink()
    assert sorted(p.name for p in python.iterdir()) == [
        "libtriton_python.so",
        "triton_python_backend_stub",
        "triton_python_backend_utils.py",
    ]
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        assert not (python / name).is_symlink()
        assert (python / name).read_bytes() == (install.backends / "python" / name).read_bytes()
    stub = python / "triton_python_backend_stub"
    assert not stub.is_symlink()
    assert stub.read_bytes() == b"#!fake stub\n"
    assert stub.stat().st_mode & 0o777 == 0o755

    stand_in = dest / "onnxruntime"
    assert stand_in.is_dir() and not stand_in.is_symlink()
    assert [p.name for p in stand_in.iterdir()] == ["model.py"]
    assert (stand_in / "model.py").read_bytes() == (
        STAND_INS / "onnxruntime" / "model.py"
    ).read_bytes()
    # a stand-in's pure modules travel with its model.py
    assert sorted(p.name for p in (dest / "vllm").iterdir()) == [
        "llm_ops.py",
        "model.py",
        "vllm_contract.py",
    ]


def test_copies_do_not_follow_later_changes_to_the_install(tmp_path: Path) -> None:
    install = fake_install(tmp_path / "triton")
    dest = assemble_backends(install, tmp_path / "backends")
    (install.backends / "python" / "libtriton_python.so").write_bytes(b"changed")
    assert (dest / "python" / "libtriton_python.so").read_bytes() == b"\x7fELF fake python backend"


def test_no_stand_in_when_the_server_has_onnxruntime(tmp_path: Path) -> None:
    install = fake_install(tmp_path / "triton", native=("onnxruntime",))
    dest = assemble_backends(install, tmp_path / "backends")

    assert sorted(p.name for p in dest.iterdir()) == ["onnxruntime", "python", "vllm"]
    assert (dest / "onnxruntime").is_symlink()
    # the native backend folder is left as it was
    assert sorted(p.name for p in (install.backends / "onnxruntime").iterdir()) == [
        "libtriton_onnxruntime.so"
    ]


def test_native_install_links_its_python_backend(tmp_path: Path) -> None:
    install = fake_install(tmp_path / "triton", native=("onnxruntime", "vllm"), stubs=False)
    dest = assemble_backends(install, tmp_path / "backends")
    assert sorted(p.name for p in dest.iterdir()) == ["onnxruntime", "python", "vllm"]
    assert (dest / "vllm").is_symlink()  # the NGC image's own vllm backend wins
    assert (dest / "python").is_symlink()
    assert (dest / "python").resolve() == (install.backends / "python").resolve()


def test_missing_stub_for_this_python(tmp_path: Path) -> None:
    install = fake_install(tmp_path / "triton")
    (install.stubs / PY_VERSION / "triton_python_backend_stub").unlink()  # type: ignore[operator]
    with pytest.raises(ServeError) as caught:
        assemble_backends(install, tmp_path / "backends")
    assert str(caught.value) == (
        f"the nvidia-pytriton wheel has no Python backend stub for {PY_VERSION}"
    )


# --- LocalServer without starting it --------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    work = tmp_path / "serve-work"
    work.mkdir()
    monkeypatch.setattr(serve.tempfile, "mkdtemp", lambda prefix: str(work))
    return LocalServer(tmp_path / "repo", ports=Ports(18000, 18001, 18002), host="0.0.0.0")


def test_urls_and_command(server: LocalServer, tmp_path: Path) -> None:
    install = fake_install(tmp_path / "triton")
    assert server.http_url == "http://0.0.0.0:18000"
    assert server.grpc_url == "0.0.0.0:18001"
    assert server.metrics_url == "http://0.0.0.0:18002/metrics"
    assert server.log_path == tmp_path / "serve-work" / "tritonserver.log"
    assert server.command(install, Path("/b")) == [
        str(tmp_path / "triton" / "bin" / "tritonserver"),
        f"--model-repository={(tmp_path / 'repo').resolve()}",
        "--backend-directory=/b",
        "--http-address=0.0.0.0",
        "--grpc-address=0.0.0.0",
        "--http-port=18000",
        "--grpc-port=18001",
        "--metrics-port=18002",
        "--allow-metrics=true",
    ]


def test_command_explicit_model_control_and_extra_args(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    server = LocalServer(
        tmp_path, ports=Ports(1, 2, 3), model_control="explicit", extra_args=("--log-verbose=1",)
    )
    command = server.command(fake_install(tmp_path / "triton"), Path("/b"))
    assert command[-3:] == ["--model-control-mode=explicit", "--load-model=*", "--log-verbose=1"]


def test_start_without_a_repository(server: LocalServer) -> None:
    with pytest.raises(ServeError, match=r"repo: no such model repository; run `build-repo SPEC`"):
        server.start(timeout=1)


def test_environment_puts_our_python_and_libraries_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/old/lib")
    env = serve._environment(fake_install(tmp_path / "triton"))
    assert env["PATH"] == os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin"])
    dirs = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert dirs[0] == str(tmp_path / "triton" / "libs")
    assert dirs[-1] == "/old/lib"


# --- find_tritonserver: one on PATH -----------------------------------------------------------


def _on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = tmp_path / "opt" / "tritonserver" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(binary.parent))
    return binary


def test_a_tritonserver_on_path_in_the_ngc_layout_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _on_path(tmp_path, monkeypatch)
    (binary.parent.parent / "backends" / "python").mkdir(parents=True)
    install = serve.find_tritonserver()
    assert install == TritonInstall(binary, binary.parent.parent / "backends", (), None)


def test_a_tritonserver_on_path_in_another_layout_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binary = _on_path(tmp_path, monkeypatch)
    with pytest.raises(ServeError) as caught:
        serve.find_tritonserver()
    assert str(caught.value) == (
        f"the tritonserver on PATH ({binary}) is not laid out like the NGC image: "
        f"{binary.parent.parent / 'backends'}/python (Triton's Python backend) does not exist. "
        "Remove it from PATH to use the tritonserver of the nvidia-pytriton wheel "
        "(pip install 'triton-pack[local]')"
    )


# --- check_served_repository ----------------------------------------------------------------

BUILD_FIRST = "run `build-repo SPEC` (e.g. `build-repo models.yaml`) first"


def _manifest(repo: Path, artifacts: dict[str, str]) -> None:
    manifest = {"format": "triton-pack-repository/1", "models": {"m": {"artifacts": artifacts}}}
    (repo / "manifest.json").write_text(json.dumps(manifest))


def _serve_error(repo: Path) -> str:
    with pytest.raises(ServeError) as caught:
        serve.check_served_repository(repo)
    return str(caught.value)


def test_serving_a_missing_folder_says_build_first(tmp_path: Path) -> None:
    assert _serve_error(tmp_path / "nope") == (
        f"{tmp_path / 'nope'}: no such model repository; {BUILD_FIRST}"
    )


def test_serving_committed_configs_that_were_never_built(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text('name: "m"\n')
    (tmp_path / ".gitignore").write_text("# Generated by triton-pack: configs are committed\n")
    assert _serve_error(tmp_path) == (
        f"{tmp_path}: has configs but was never built here (no manifest.json, no weights); "
        f"{BUILD_FIRST}"
    )


def test_serving_a_build_with_missing_weights(tmp_path: Path) -> None:
    (tmp_path / "m_onnx" / "1").mkdir(parents=True)
    (tmp_path / "m_onnx" / "1" / "model.onnx").write_bytes(b"graph")
    _manifest(tmp_path, {"m_onnx/1/model.onnx": "x", "m_onnx/1/model.onnx.data": "y"})
    assert _serve_error(tmp_path) == (
        f"{tmp_path}: files of the build are missing (m_onnx/1/model.onnx.data); "
        "run `build-repo` again to restore them"
    )
    (tmp_path / "m_onnx" / "1" / "model.onnx.data").write_bytes(b"weights")
    serve.check_served_repository(tmp_path)  # complete: no error


def test_a_plain_triton_repository_is_served_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "handmade").mkdir()
    (tmp_path / "handmade" / "config.pbtxt").write_text('name: "handmade"\n')
    serve.check_served_repository(tmp_path)
    (tmp_path / "handmade" / "config.pbtxt").unlink()
    assert "holds no models (no */config.pbtxt)" in _serve_error(tmp_path)
