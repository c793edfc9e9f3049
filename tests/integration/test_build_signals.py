"""A build stopped by SIGTERM removes its staging folder; one killed by SIGKILL leaves it, and
the next build removes it. Real `build-repo` processes, stopped while they export."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli import build_repo_main
from tests.integration.conftest import write_spec
from tests.tiny_models import make_model

pytestmark = pytest.mark.slow

BUILD_REPO = "import sys; from builder.cli import build_repo_main; sys.exit(build_repo_main())"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("tiny-bert"), "bert", "text-embedding")


@pytest.fixture
def spec(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return write_spec(
        folder / "models.yaml",
        f"repository: repo\nmodels:\n  - {{name: tiny, task: text-embedding, source: {source}}}\n",
    )


def start_and_wait_for_export(spec: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """A build-repo process, returned once it says it is exporting (its staging exists)."""
    process = subprocess.Popen(
        [sys.executable, "-c", BUILD_REPO, str(spec)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=spec.parent,
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "exporting ONNX" in line:
            return process, lines
    process.wait()
    pytest.fail(f"the build ended before exporting: {''.join(lines)}")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".staging-" in p.name)


def test_sigterm_during_export_removes_the_staging_folder(spec: Path) -> None:
    process, _ = start_and_wait_for_export(spec)
    assert leftovers(spec.parent) == [f".repo.staging-{process.pid}"]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143
    assert err.splitlines()[-1] == "stopped by SIGTERM"
    assert "Traceback" not in err
    assert sorted(p.name for p in spec.parent.iterdir()) == ["models.yaml"]


def test_ctrl_c_during_export_removes_the_staging_folder(spec: Path) -> None:
    process, _ = start_and_wait_for_export(spec)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert err.splitlines()[-1] == "interrupted"
    assert sorted(p.name for p in spec.parent.iterdir()) == ["models.yaml"]


def test_a_sigkill_leftover_is_removed_by_the_next_build(
    spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    process, _ = start_and_wait_for_export(spec)
    process.kill()
    process.communicate(timeout=60)
    stale = f".repo.staging-{process.pid}"
    assert leftovers(spec.parent) == [stale]

    assert build_repo_main([str(spec)]) == 0

    assert f"removed {spec.parent / stale}, left by a build that was killed" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in spec.parent.iterdir()) == ["models.yaml", "repo"]
