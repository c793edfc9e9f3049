"""builder.cli: help texts, exit codes, errors on stderr, and a failed build touching nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder import __version__
from builder.cli import build_repo_main, main

BAD_SPEC = """\
models:
  - name: minilm
    task: text-embedding
    source: ./minilm
    dynamic_batching: {max_queue_delay_us: 1000, bogus: 1}
"""


def help_text(capsys: pytest.CaptureFixture[str], run: object, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as caught:
        run(argv)  # type: ignore[operator]
    assert caught.value.code == 0
    return capsys.readouterr().out


def test_build_repo_help(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, build_repo_main, ["--help"])
    assert text.startswith("usage: build-repo ")
    for option in (
        "spec",
        "-o OUTPUT, --output OUTPUT",
        "--check",
        "-q, --quiet",
        "--version",
        "--debug",
        "--allow-parity-failure",
    ):
        assert option in text
    assert "build-repo models.yaml -o /tmp/repo" in text
    assert "exit codes: 0 ok, 1 failed" in text


def test_triton_pack_help(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, main, ["--help"])
    assert text.startswith("usage: triton-pack ")
    for command in ("build", "check", "serve"):
        assert f"    {command} " in text


def test_triton_pack_serve_help(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, main, ["serve", "--help"])
    assert text.startswith("usage: triton-pack serve ")
    for option in (
        "repository",
        "--http-port",
        "--grpc-port",
        "--metrics-port",
        "--host",
        "--model-control {none,explicit}",
        "--timeout",
        "--log-file",
        "--keep-log",
        "--debug",
    ):
        assert option in text
    assert "0 picks a free port" in text


@pytest.mark.parametrize("run", [build_repo_main, main])
def test_version(capsys: pytest.CaptureFixture[str], run: object) -> None:
    assert help_text(capsys, run, ["--version"]) == f"triton-pack {__version__}\n"


def test_installed_build_repo_entry_point() -> None:
    script = Path(sys.executable).parent / "build-repo"
    if not script.is_file():
        pytest.skip(f"{script} is not installed (pip install -e .)")
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: build-repo ")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for folders)."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes() if path.is_file() else None)
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def existing_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "out" / "repo"
    (repo / "minilm" / "1").mkdir(parents=True)
    (repo / "minilm" / "config.pbtxt").write_bytes(b'name: "minilm"\n\x00binary\xff\n')
    (repo / "manifest.json").write_text('{"format": "triton-pack-repository/1"}\n')
    return repo


def test_bad_spec_returns_1_and_leaves_the_output_alone(
    tmp_path: Path, existing_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "models.yaml"
    spec.write_text(BAD_SPEC)
    before = snapshot(tmp_path / "out")

    assert build_repo_main([str(spec), "-o", str(existing_repo)]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: {spec}: models[0].dynamic_batching.bogus (model 'minilm'): unknown key\n"
    )
    assert snapshot(tmp_path / "out") == before


def test_failing_build_returns_1_and_leaves_the_output_alone(
    tmp_path: Path, existing_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid spec whose source is missing fails after staging began; nothing changes."""
    spec = tmp_path / "models.yaml"
    spec.write_text("models:\n  - {name: minilm, task: text-embedding, source: ./missing}\n")
    before = snapshot(tmp_path / "out")

    assert build_repo_main([str(spec), "-o", str(existing_repo), "--quiet"]) == 1

    err = capsys.readouterr().err
    assert err == (
        f"error: {spec}: models[0].source (model 'minilm'): "
        f"folder {(tmp_path / 'missing').resolve()} does not exist\n"
    )
    assert snapshot(tmp_path / "out") == before  # no staging folder left beside it either


def test_check_with_a_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "models.yaml"
    spec.write_text(BAD_SPEC)
    assert main(["check", str(spec)]) == 1
    assert (
        "models[0].dynamic_batching.bogus (model 'minilm'): unknown key" in capsys.readouterr().err
    )


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["build", str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"error: {missing}: cannot read spec: No such file or directory\n"
    )


def test_passthrough_arguments_only_for_serve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["build", "models.yaml", "--", "--log-verbose=1"])
    assert caught.value.code == 2
    assert "arguments after `--` are only for `triton-pack serve`" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_rejects_a_bad_port(capsys: pytest.CaptureFixture[str], port: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", f"--http-port={port}"])
    assert caught.value.code == 2
    assert f"{port} is not a port" in capsys.readouterr().err


def test_debug_shows_the_traceback_of_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "models.yaml"
    spec.write_text(BAD_SPEC)
    assert build_repo_main([str(spec)]) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert build_repo_main([str(spec), "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith(
        f"error: {spec}: models[0].dynamic_batching.bogus (model 'minilm'): unknown key\n"
    )
