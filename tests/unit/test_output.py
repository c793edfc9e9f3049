"""builder.output: which folders a build may replace, and the leftovers of killed builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import OutputError
from builder.output import (
    FORMAT,
    GITIGNORE_HEADER,
    check_output_folder,
    remove_stale_staging,
    staging,
    swap,
)

MODELS = ("minilm", "minilm_tokenizer", "minilm_onnx", "minilm_postprocess")


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    path = project / "models.yaml"
    path.write_text("models: []\n")
    return path


def check(repo: Path, spec: Path, protected: tuple[Path, ...] = ()) -> None:
    check_output_folder(repo, spec_file=spec, model_names=MODELS, protected=protected)


def refusal(repo: Path, spec: Path, protected: tuple[Path, ...] = ()) -> str:
    with pytest.raises(OutputError) as caught:
        check(repo, spec, protected)
    return str(caught.value)


def test_absent_and_empty_folders_may_be_written(spec: Path, tmp_path: Path) -> None:
    check(tmp_path / "new" / "repo", spec)
    (tmp_path / "empty").mkdir()
    check(tmp_path / "empty", spec)


def test_a_folder_with_triton_packs_manifest_may_be_replaced(spec: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "anything").mkdir(parents=True)
    (repo / "manifest.json").write_text(json.dumps({"format": FORMAT}))
    check(repo, spec)


def test_a_manifest_of_an_older_triton_pack_build_counts(spec: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    old = {"format": 1, "tool": {"name": "triton-pack", "version": "0.1.0"}}
    (repo / "manifest.json").write_text(json.dumps(old))
    check(repo, spec)


def test_committed_configs_on_a_fresh_clone_may_be_built(spec: Path, tmp_path: Path) -> None:
    """model_repository/ as git checks it out: triton-pack's .gitignore and model folders."""
    repo = tmp_path / "model_repository"
    for name in MODELS:
        (repo / name).mkdir(parents=True)
    (repo / ".gitignore").write_text(f"{GITIGNORE_HEADER}: configs are committed\n")
    check(repo, spec)
    (repo / "notes.txt").write_text("mine")  # a user's file in it: no longer ours
    message = refusal(repo, spec)
    assert "it holds .gitignore, minilm, minilm_onnx, minilm_postprocess, minilm_tokenizer" in (
        message
    )
    assert "and 1 more" in message


def test_model_folders_without_the_generated_gitignore_are_refused(
    spec: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "minilm").mkdir(parents=True)
    assert f"{repo}: it is not empty and was not made by triton-pack (no manifest.json)" in (
        refusal(repo, spec)
    )


def test_a_foreign_manifest_is_not_ours(spec: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "manifest.json").write_text('{"name": "my web app"}')
    message = refusal(repo, spec)
    assert "(its manifest.json is not triton-pack's); it holds manifest.json." in message


def test_a_folder_with_git_is_refused_even_with_a_manifest(spec: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "manifest.json").write_text(json.dumps({"format": FORMAT}))
    assert "it holds a .git folder" in refusal(repo, spec)


@pytest.mark.parametrize("where", ["spec folder", "above the spec", "cwd"])
def test_the_project_itself_is_refused(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "cwd":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        assert f"it is or holds the current directory {elsewhere}" in refusal(elsewhere, spec)
    elif where == "spec folder":
        assert f"to {spec.parent}: it is the spec's folder" in refusal(spec.parent, spec)
    else:
        monkeypatch.chdir(tmp_path.parent)
        assert f"to {tmp_path}: it holds the spec's folder {spec.parent}" in (
            refusal(tmp_path, spec)
        )


def test_a_folder_holding_a_model_source_is_refused(spec: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "manifest.json").parent.mkdir()
    (repo / "manifest.json").write_text(json.dumps({"format": FORMAT}))
    source = repo / "my-model"
    assert f"it holds the model source {source}" in refusal(repo, spec, (source,))


def test_a_file_is_refused(spec: Path, tmp_path: Path) -> None:
    path = tmp_path / "repo"
    path.write_text("x")
    assert "it is a file, not a folder" in refusal(path, spec)


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_dead_builds_are_removed_live_ones_kept(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    dead = dead_pid()
    for purpose in ("staging", "check"):
        (tmp_path / f".repo.{purpose}-{dead}" / "x").mkdir(parents=True)
    live = tmp_path / f".repo.staging-{os.getppid()}"
    live.mkdir()
    other = tmp_path / f".other.staging-{dead}"
    other.mkdir()

    notes = remove_stale_staging(repo)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".other.staging-" + str(dead), live.name, "repo"]
    )
    assert notes == [
        f"removed {tmp_path / f'.repo.check-{dead}'}, left by a build that was killed",
        f"removed {tmp_path / f'.repo.staging-{dead}'}, left by a build that was killed",
    ]


def test_a_repository_renamed_aside_by_a_killed_swap_is_restored(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    old = tmp_path / f".repo.old-{dead_pid()}"
    (old / "minilm").mkdir(parents=True)
    assert remove_stale_staging(repo) == [
        f"restored {repo} from {old.name}, left by a build that was killed"
    ]
    assert (repo / "minilm").is_dir()
    assert not old.exists()


def test_staging_is_removed_on_failure_and_swap_replaces(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "old").mkdir(parents=True)
    with pytest.raises(KeyboardInterrupt), staging(repo, "staging") as staged:
        (staged / "half").mkdir()
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    with staging(repo, "staging") as staged:
        (staged / "new").mkdir()
        swap(staged, repo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert sorted(p.name for p in repo.iterdir()) == ["new"]
