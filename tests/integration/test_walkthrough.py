"""The README's "Serve your own model" walkthrough, block by block, as a newcomer runs it:
make the model, write the spec, build, serve, call it. Only the ports differ (free ones)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from builder.serve import free_ports

pytestmark = [pytest.mark.triton, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from builder.cli import {0}; sys.exit({0}())"


def walkthrough_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README's walkthrough section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Serve your own model\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def command(line: str) -> list[str]:
    """A README shell line as this environment's command (the venv's entry points)."""
    words = shlex.split(line)
    entry = {"build-repo": "build_repo_main", "triton-pack": "main"}[words[0]]
    return [sys.executable, "-c", CLI.format(entry), *words[1:]]


def test_the_readme_walkthrough_works_offline(tmp_path: Path) -> None:
    blocks = walkthrough_blocks()
    assert [language for language, _ in blocks] == ["python", "yaml", "sh", "python", "sh"]
    (_, make_model), (_, spec), (_, build_and_serve), (_, client), (_, curl) = blocks
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    subprocess.run([sys.executable, "-c", make_model], cwd=tmp_path, env=env, check=True)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (tmp_path / "my_model").iterdir()
    }
    (tmp_path / "my_models.yaml").write_text(spec, encoding="utf-8")
    build_line, serve_line = build_and_serve.strip().splitlines()
    built = subprocess.run(
        command(build_line), cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip().endswith("my_repository: 1 model(s), 1 exported (my_embedder)")

    http, grpc, metrics = free_ports(3)
    ports = ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    server = subprocess.Popen(
        command(serve_line) + ports,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = []
        for line in server.stdout:
            lines.append(line)
            if line.startswith("ready:"):
                break
        assert lines[-1].startswith(f"ready: HTTP http://127.0.0.1:{http}"), "".join(lines)

        called = subprocess.run(
            [sys.executable, "-c", client.replace("localhost:8000", f"localhost:{http}")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert called.returncode == 0, called.stderr
        assert called.stdout == "(2, 32)\n"
        if shutil.which("curl"):
            reply = subprocess.run(
                ["sh", "-c", curl.replace("localhost:8000", f"localhost:{http}")],
                capture_output=True,
                text=True,
                check=True,
            )
            outputs = json.loads(reply.stdout)["outputs"]
            assert outputs[0]["name"] == "EMBEDDING"
            assert outputs[0]["shape"] == [1, 32]
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    assert server.returncode == 0
