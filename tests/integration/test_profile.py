"""`triton-pack profile` and `tune` against a real tritonserver, measured by the real
perf_analyzer, on a tiny model; short sweeps. Figures are checked for sense, never for speed:
the machine is busy."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.cli import main
from builder.pipeline import build_repository
from builder.serve import LocalServer
from builder.spec import load_spec
from tests.integration.conftest import write_spec
from tests.tiny_models import make_model

pytestmark = [pytest.mark.triton, pytest.mark.slow]

SPEC = """\
repository: repo
defaults:
  cores: 2
models:
  # tiny: the model profile and tune measure
  - name: tiny
    task: text-embedding
    source: {source}      # made by the test
    max_sequence_length: 64
    max_batch_size: 8
    dynamic_batching: {{max_queue_delay_us: 0}}
  - name: other           # not tuned; must survive the write-back as it is
    task: text-embedding
    source: {source}
    instances: 1
"""


@pytest.fixture(scope="module")
def built_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("profile")
    source = make_model(folder / "model", "bert", "text-embedding")
    spec = write_spec(folder / "models.yaml", SPEC.format(source=source))
    build_repository(load_spec(spec), progress=lambda message: None)
    return spec


@pytest.fixture(scope="module")
def server(built_spec: Path) -> Iterator[LocalServer]:
    with LocalServer(built_spec.parent / "repo") as running:
        yield running


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def check_points(points: list[dict[str, Any]], levels: list[int]) -> None:
    assert [p["concurrency"] for p in points] == levels
    for p in points:
        assert p["throughput"] > 0
        assert 0 < p["p50_ms"] <= p["p90_ms"] <= p["p95_ms"] <= p["p99_ms"]


def test_profile_a_running_server(
    built_spec: Path, server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "texts.txt"
    corpus.write_text("good film\n\nthe service was very slow\nhello world\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["profile", str(built_spec), "tiny", "--url", server.http_url, "--corpus", str(corpus)]
    code = main([*argv, "--concurrency", "2,1", "--seconds", "2", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err

    data = json.loads((out / "profile.json").read_text())
    check_points(data["points"], [1, 2])
    assert (data["model"], data["url"], data["protocol"]) == ("tiny", server.http_url, "http")
    assert (data["texts"], data["corpus"], data["seconds"]) == (3, str(corpus), 2.0)
    assert data["perf_analyzer"].startswith("Perf Analyzer Version 2.51")

    table = (out / "profile.md").read_text()
    for p in data["points"]:
        row = (
            f"| {p['concurrency']} | {p['throughput']:.1f} | {p['p50_ms']:.1f} | "
            f"{p['p90_ms']:.1f} | {p['p99_ms']:.1f} |"
        )
        assert row in table
        assert row in captured.out  # the table is printed too
    assert png_size(out / "profile.png") == (1000, 400)
    assert (out / "profile.png").stat().st_size > 10_000
    # one progress line per level, with its figures
    for level in (1, 2):
        assert f"] concurrency {level}: " in captured.err
    print(captured.err, table)  # the figures, for the log of the test run


def test_profile_serves_the_repository_itself_over_grpc(
    built_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["profile", str(built_spec.parent / "repo"), "other", "--protocol", "grpc"]
    code = main([*argv, "--concurrency", "2", "--seconds", "1", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads((out / "profile.json").read_text())
    check_points(data["points"], [2])
    assert data["protocol"] == "grpc" and data["corpus"] == "built-in"
    assert "starting tritonserver over" in captured.err


def test_profile_a_model_the_server_lacks(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ghost").mkdir()
    (tmp_path / "ghost" / "config.pbtxt").write_text('name: "ghost"\n')
    assert main(["profile", str(tmp_path), "ghost", "--url", server.http_url]) == 2
    err = capsys.readouterr().err
    assert f"the server at {server.http_url} has no ready model 'ghost'; ready models: " in err
    assert "tiny, tiny_onnx" in err


def tune(spec: Path, out: Path, *options: str) -> list[str]:
    sweep = ["--concurrency", "2", "--seconds", "2"]
    return ["tune", str(spec), "tiny", *sweep, "-o", str(out), *options]


def test_tune_dry_run_picks_the_fastest_within_the_bound(
    built_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = built_spec.read_bytes()
    out = tmp_path / "tune"
    options = ["--instances", "1,2", "--max-queue-delay-us", "0", "--preferred", "none"]
    code = main(tune(built_spec, out, *options, "--bucket", "16", "--p99-ms", "60000", "--dry-run"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert built_spec.read_bytes() == before

    data = json.loads((out / "tune.json").read_text())
    rows = data["candidates"]
    assert [row["settings"]["instances"] for row in rows] == [1, 2]
    assert [row["threads_derived"] for row in rows] == [2, 1]
    for row in rows:
        assert row["error"] is None, row["error"]
        check_points([row["point"]], [2])
    within = [i for i, row in enumerate(rows) if row["point"]["p99_ms"] <= 60000]
    best = max(within, key=lambda i: rows[i]["point"]["throughput"])
    assert data["winner"] == best and all(row["within_bound"] for row in rows)

    table = (out / "tune.md").read_text()
    lines = [line for line in captured.out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| # | instances | threads |") and len(lines) == 2 + 2
    for index, row in enumerate(rows):
        line = lines[2 + index]
        assert line in table
        assert f"| {row['point']['throughput']:.1f} |" in line
        assert line.endswith("| yes | **winner** |") == (index == best)
    assert f"winner: #{best + 1}; dry run, {built_spec} unchanged" in captured.out
    # the spec's own build seeded the candidates: nothing was exported
    assert "reusing the export in" in captured.err
    assert captured.err.count("(export reused), served in") == 2
    print(captured.err, table)


def test_tune_writes_the_winner_into_the_spec(
    built_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = built_spec.with_name("tuned.yaml")  # a copy beside the build, whose export it reuses
    shutil.copy2(built_spec, spec)
    options = ["--instances", "2", "--threads", "1", "--max-queue-delay-us", "500"]
    code = main(tune(spec, tmp_path / "tune", *options, "--preferred", "2,4", "--bucket", "8"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "winner: #1; wrote into" in captured.out
    text = spec.read_text()
    assert "  # tiny: the model profile and tune measure\n" in text
    assert "    source: " in text and "      # made by the test\n" in text
    assert "# not tuned; must survive the write-back as it is" in text
    assert (
        "    dynamic_batching: {max_queue_delay_us: 500, preferred_batch_sizes: [2, 4]}\n" in text
    )
    tuned = load_spec(spec)
    original = load_spec(built_spec)
    model = tuned.models[0]
    assert (model.instances, model.threads, model.tokenizer.bucket) == (2, 1, 8)
    assert model.dynamic_batching is not None
    assert model.dynamic_batching.max_queue_delay_us == 500
    assert model.dynamic_batching.preferred_batch_sizes == (2, 4)
    assert tuned.models[1].model_dump() == original.models[1].model_dump()
    changed = {"instances", "threads", "dynamic_batching", "tokenizer"}
    assert model.model_dump(exclude=changed) == original.models[0].model_dump(exclude=changed)


def test_profile_a_reranker_sends_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model of two text inputs (QUERY, TEXT) is profiled with pairs from the corpus."""
    source = make_model(tmp_path / "model", "bert", "text-reranking")
    spec = write_spec(
        tmp_path / "models.yaml",
        f"repository: repo\nmodels:\n  - {{name: rr, task: text-reranking, source: {source}, "
        "max_sequence_length: 32, max_batch_size: 4}\n",
    )
    build_repository(load_spec(spec), progress=lambda message: None)
    out = tmp_path / "out"
    code = main(["profile", str(spec), "--concurrency", "1", "--seconds", "1", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads((out / "profile.json").read_text())
    assert result["model"] == "rr"
    check_points(result["points"], [1])
