"""builder.tune without a server: option parsing, the candidate grid, the choice, the table
and writing the winner into a spec file."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cli import main
from builder.errors import BuildError, ProfileError
from builder.profile import ProfilePoint
from builder.spec import load_spec
from builder.tune import (
    Axes,
    Settings,
    Trial,
    TuneResult,
    changes,
    choose,
    describe_changes,
    markdown_table,
    parse_ints,
    parse_preferred,
    parse_threads,
    plan_candidates,
    write_winner,
)

SPEC = """\
repository: repo
defaults:
  cores: 2
models:
  # the model we tune
  - name: tiny
    task: text-embedding
    source: ./m          # a local folder
    max_batch_size: 8
    dynamic_batching: {max_queue_delay_us: 0}
  - name: other          # left alone
    task: text-embedding
    source: ./m
    instances: 3
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


def test_parse_axes() -> None:
    assert parse_ints("1,2, 2,4") == (1, 2, 4)
    assert parse_threads("auto,1,auto,2") == (None, 1, 2)
    assert parse_preferred("none; 16,8 ;4") == ((), (8, 16), (4,))
    for bad, parse in [("", parse_ints), ("x", parse_ints), ("0", parse_threads)]:
        with pytest.raises(ValueError):
            parse(bad)
    with pytest.raises(ValueError, match=">= 1"):
        parse_ints("0,1", 1)
    with pytest.raises(ValueError, match="'none' or sizes"):
        parse_preferred(";")


def test_grid_is_the_product_in_order() -> None:
    grid = Axes().grid()
    assert len(grid) == 2 * 1 * 2 * 2 * 2
    assert grid[0] == Settings(1, None, 0, (), 1)
    assert grid[-1] == Settings(2, None, 1000, (8, 16), 16)
    assert len(set(grid)) == len(grid)


def test_candidates_apply_the_settings_and_skip_what_the_spec_refuses(spec_file: Path) -> None:
    spec = load_spec(spec_file)
    model = spec.models[0]
    axes = Axes(instances=(1, 2), preferred=((), (4, 8), (8, 16)), bucket=(8,))
    candidates, skipped = plan_candidates(spec, model, axes)
    assert len(candidates) == 2 * 2 * 2  # (8, 16) exceeds max_batch_size 8
    assert len(skipped) == 2 * 2
    assert all("must not exceed max_batch_size (8)" in reason for reason in skipped)
    chosen = candidates[-1]
    assert chosen.settings == Settings(2, None, 1000, (4, 8), 8)
    assert chosen.model.instances == 2 and chosen.model.tokenizer.bucket == 8
    assert chosen.model.dynamic_batching is not None
    assert chosen.model.dynamic_batching.preferred_batch_sizes == (4, 8)
    assert chosen.threads == 1  # cores 2 // instances 2
    assert candidates[0].threads == 2
    assert model.instances == 1 and model.tokenizer.bucket == 1  # the spec is untouched
    # keys the spec leaves unset stay unset (the export's cache key records where a
    # max_sequence_length came from: a change there would export again)
    assert "max_sequence_length" not in chosen.model.model_fields_set
    assert chosen.model.model_fields_set == model.model_fields_set | {
        "instances",
        "threads",
        "dynamic_batching",
        "tokenizer",
    }
    with pytest.raises(ProfileError, match="no candidate is a valid spec entry"):
        plan_candidates(spec, model, Axes(preferred=((16,),)))


def point(throughput: float, p99: float) -> ProfilePoint:
    return ProfilePoint(16, throughput, p99 / 2, p99, p99, p99)


def trials() -> list[Trial]:
    grid = Axes().grid()
    return [
        Trial(grid[0], 2, point(100.0, 20.0)),
        Trial(grid[1], 2, point(180.0, 90.0)),
        Trial(grid[2], 2, None, "perf_analyzer failed at concurrency 16 (exit 2): boom | x"),
        Trial(grid[3], 2, point(150.0, 40.0)),
        Trial(grid[4], 1, point(150.0, 30.0)),
    ]


def test_choose_the_fastest_within_the_bound() -> None:
    assert choose(trials(), None) == 1
    assert choose(trials(), 50.0) == 3  # 180 is past the bound; the first of two 150s
    assert choose(trials(), 20.0) == 0
    assert choose(trials(), 10.0) is None
    assert choose(trials()[2:3], None) is None


def test_the_table_marks_the_winner_and_failures() -> None:
    result = TuneResult("tiny", "models.yaml", 16, 5.0, 50.0, tuple(trials()), 3)
    lines = markdown_table(result).splitlines()
    assert lines[0] == (
        "| # | instances | threads | queue delay us | preferred | bucket | texts/s | p50 ms "
        "| p99 ms | p99 <= 50 ms | note |"
    )
    assert lines[2] == "| 1 | 1 | auto (2) | 0 | none | 1 | 100.0 | 10.0 | 20.0 | yes |  |"
    assert lines[3].endswith("| 180.0 | 45.0 | 90.0 | no |  |")
    assert lines[4] == (
        "| 3 | 1 | auto (2) | 0 | 8,16 | 1 | - | - | - | no | failed: perf_analyzer failed at "
        "concurrency 16 (exit 2): boom \\| x |"
    )
    assert lines[5].endswith("| 150.0 | 20.0 | 40.0 | yes | **winner** |")
    assert len(lines) == 2 + 5
    data = result.as_json()
    assert data["winner"] == 3
    assert [row["within_bound"] for row in data["candidates"]] == [True, False, False, True, True]
    assert data["candidates"][2]["point"] is None
    assert data["candidates"][4]["settings"]["preferred_batch_sizes"] == []


def test_changes_are_the_differing_keys(spec_file: Path) -> None:
    model = load_spec(spec_file).models[0]
    winner = Settings(2, None, 1000, (4, 8), 1).apply(model)
    delta = changes(model, winner)
    assert delta == {
        "dynamic_batching": {"max_queue_delay_us": 1000, "preferred_batch_sizes": [4, 8]},
        "instances": 2,
    }
    assert describe_changes(delta) == [
        "dynamic_batching.max_queue_delay_us: 1000",
        "dynamic_batching.preferred_batch_sizes: [4, 8]",
        "instances: 2",
    ]
    assert changes(model, model) == {}


def test_write_winner_keeps_comments_and_the_other_entry(spec_file: Path) -> None:
    spec = load_spec(spec_file)
    model = spec.models[0]
    winner = Settings(2, 1, 500, (4,), 32).apply(model)
    written = write_winner(spec, model, winner)
    assert written["instances"] == 2 and written["tokenizer"] == {"bucket": 32}
    text = spec_file.read_text(encoding="utf-8")
    for kept in ("# the model we tune", "source: ./m          # a local folder", "# left alone"):
        assert kept in text
    assert "    dynamic_batching: {max_queue_delay_us: 500, preferred_batch_sizes: [4]}\n" in text
    reloaded = load_spec(spec_file)
    assert reloaded.models[0].model_dump() == winner.model_dump()
    assert reloaded.models[1].model_dump() == spec.models[1].model_dump()
    # the same winner again: nothing to write, the file is not touched
    before = spec_file.read_bytes()
    assert write_winner(reloaded, reloaded.models[0], winner) == {}
    assert spec_file.read_bytes() == before


def test_write_winner_refuses_what_an_alias_shares(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  - {name: a, task: text-embedding, source: ./m, dynamic_batching: &db {}}\n"
        "  - {name: b, task: text-embedding, source: ./m, dynamic_batching: *db}\n"
    )
    spec = load_spec(path)
    before = path.read_bytes()
    for index, reason in [(1, "is a YAML alias"), (0, "editing it would not give the winner")]:
        model = spec.models[index]
        winner = Settings(1, None, 700, (), 16).apply(model)
        with pytest.raises(BuildError, match=rf"{reason}.*set these keys of models\[{index}\]"):
            write_winner(spec, model, winner)
        assert path.read_bytes() == before


def test_tune_cli_errors(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", str(spec_file), "nope"]) == 2
    assert "no model 'nope'; known models: tiny, other" in capsys.readouterr().err
    assert main(["tune", str(spec_file), "tiny", "--preferred", "16"]) == 2
    assert "no candidate is a valid spec entry" in capsys.readouterr().err
    assert main(["tune", str(spec_file.parent), "tiny"]) == 2
    with pytest.raises(SystemExit) as caught:
        main(["tune", str(spec_file), "--threads", "auto,x"])
    assert caught.value.code == 2
    assert "argument --threads" in capsys.readouterr().err


def test_tune_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["tune", "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for part in ("--instances", "--threads", "--max-queue-delay-us", "--preferred", "--bucket"):
        assert part in text
    for part in ("--concurrency", "--p99-ms", "--seconds", "--dry-run", "tune.json"):
        assert part in text
    assert "triton-pack tune models.yaml minilm --p99-ms 100" in text
