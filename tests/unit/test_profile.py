"""builder.profile without a server: perf_analyzer's CSV, the input data, the corpus, the
targets, the perf_analyzer wrapper (with stand-in scripts) and the report files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from builder.cli import main
from builder.errors import ProfileError
from builder.profile import (
    DEFAULT_CORPUS,
    Load,
    ProfilePoint,
    ProfileResult,
    check_served_model,
    input_data,
    markdown_table,
    measure,
    parse_csv,
    perf_analyzer,
    pick_model,
    read_corpus,
    read_target,
    write_report,
)
from builder.serve import free_ports

# what perf_analyzer 2.51 wrote with -f and --percentile 99 (latencies in microseconds)
CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
    "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
    "p50 latency,p90 latency,p95 latency,p99 latency\n"
    "4,1215.34,62,1974,0,29,912,304,0,1995,5246,6993,20896\n"
)

SPEC = """\
repository: repo
models:
  - {name: alpha, task: text-embedding, source: ./m}
  - {name: beta, task: text-classification, source: ./m}
  - name: llm
    task: text-generation
    backend: vllm
    engine: {model: /models/x}
"""


def test_parse_csv_reads_throughput_and_percentiles_in_ms() -> None:
    assert parse_csv(CSV) == [
        ProfilePoint(
            concurrency=4,
            throughput=1215.34,
            p50_ms=1.995,
            p90_ms=5.246,
            p95_ms=6.993,
            p99_ms=20.896,
        )
    ]


def test_parse_csv_names_missing_columns() -> None:
    text = "Concurrency,Inferences/Second,p50 latency\n1,10,100\n"
    with pytest.raises(ProfileError, match="lacks p90 latency, p95 latency, p99 latency"):
        parse_csv(text)
    with pytest.raises(ProfileError, match="lacks rows"):
        parse_csv(CSV.splitlines()[0] + "\n")
    with pytest.raises(ProfileError, match="bad row"):
        parse_csv(CSV.replace("1215.34", "fast"))


def test_input_data_is_one_text_of_shape_1_per_step() -> None:
    data = input_data(["hello", "naïve café 東京"], "TEXT")
    assert data == {
        "data": [
            {"TEXT": {"content": ["hello"], "shape": [1]}},
            {"TEXT": {"content": ["naïve café 東京"], "shape": [1]}},
        ]
    }
    assert json.loads(json.dumps(data)) == data
    with pytest.raises(ProfileError, match="no texts"):
        input_data([])


def test_input_data_for_a_pair_takes_the_next_text_as_the_second() -> None:
    data = input_data(["a", "b", "c"], ["QUERY", "TEXT"])
    assert [{n: t["content"][0] for n, t in step.items()} for step in data["data"]] == [
        {"QUERY": "a", "TEXT": "b"},
        {"QUERY": "b", "TEXT": "c"},
        {"QUERY": "c", "TEXT": "a"},
    ]
    assert all(t["shape"] == [1] for step in data["data"] for t in step.values())


def test_read_corpus_skips_blank_lines(tmp_path: Path) -> None:
    corpus = tmp_path / "texts.txt"
    corpus.write_text("first text\n\n   \nsecond, ünïcode\r\nlast", encoding="utf-8")
    assert read_corpus(corpus) == ("first text", "second, ünïcode", "last")


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read it"), (b"\n \n", "holds no text"), (b"ok\n\xff\xfe", "not UTF-8")],
)
def test_read_corpus_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    corpus = tmp_path / "texts.txt"
    if content is not None:
        corpus.write_bytes(content)
    with pytest.raises(ProfileError, match=message):
        read_corpus(corpus)


def test_default_corpus_has_varied_lengths() -> None:
    words = sorted(len(text.split()) for text in DEFAULT_CORPUS)
    assert len(set(DEFAULT_CORPUS)) == len(DEFAULT_CORPUS) >= 20
    assert words[0] <= 3 and words[-1] >= 60  # 1 to 68 words


def test_target_from_a_spec_lists_its_encoders(tmp_path: Path) -> None:
    spec = tmp_path / "models.yaml"
    spec.write_text(SPEC)
    target = read_target(spec)
    assert target.repository == (tmp_path / "repo").resolve()
    assert target.models == ("alpha", "beta")
    assert pick_model(target, "beta") == "beta"
    with pytest.raises(ProfileError, match="no model 'gamma'; known models: alpha, beta"):
        pick_model(target, "gamma")
    with pytest.raises(ProfileError, match="name the model to profile; it has: alpha, beta"):
        pick_model(target, None)
    with pytest.raises(ProfileError, match="'llm' is a text-generation model"):
        pick_model(target, "llm")


def test_target_from_a_plain_repository(tmp_path: Path) -> None:
    (tmp_path / "solo" / "1").mkdir(parents=True)
    (tmp_path / "solo" / "config.pbtxt").write_text('name: "solo"\n')
    target = read_target(tmp_path)
    assert target.models == ("solo",)
    assert pick_model(target, None) == "solo"
    with pytest.raises(ProfileError, match="holds no models"):
        read_target(tmp_path / "solo")
    with pytest.raises(ProfileError, match="no such spec file or repository folder"):
        read_target(tmp_path / "missing")


def fake_perf_analyzer(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "perf_analyzer"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return folder


def test_perf_analyzer_not_found(tmp_path: Path) -> None:
    with (
        pytest.raises(ProfileError, match=r"perf_analyzer not found \(looked in .*tritonclient"),
        perf_analyzer([tmp_path]),
    ):
        pass


def test_perf_analyzer_that_does_not_run_is_quoted(tmp_path: Path) -> None:
    folder = fake_perf_analyzer(
        tmp_path,
        'echo "perf_analyzer: error while loading shared libraries: libb64.so.0d" >&2\nexit 127\n',
    )
    with (
        pytest.raises(ProfileError, match=r"exit 127\): perf_analyzer: error while loading"),
        perf_analyzer([folder]),
    ):
        pass


def test_the_installed_perf_analyzer_runs() -> None:
    with perf_analyzer() as pa:
        assert pa.version.startswith("Perf Analyzer Version 2.51")
        assert pa.workdir.is_dir()
        workdir = pa.workdir
    assert not workdir.exists()


def test_measure_passes_the_sweep_and_reads_the_report(tmp_path: Path) -> None:
    """A stand-in records its arguments and writes the CSV where -f says."""
    record = tmp_path / "args.txt"
    body = (
        'case "$1" in --version) echo "Perf Analyzer Version 2.51.0"; exit 0;; esac\n'
        f'echo "$@" > {record}\n'
        'while [ "$#" -gt 0 ]; do [ "$1" = "-f" ] && out="$2"; shift; done\n'
        f"printf '{CSV.replace(chr(10), chr(92) + 'n')}' > \"$out\"\n"
    )
    with perf_analyzer([fake_perf_analyzer(tmp_path / "bin", body)]) as pa:
        load = Load("127.0.0.1:8000", "grpc", "tiny", tmp_path / "data.json")
        point = measure(pa, load, 4, 1.5)
    assert point.throughput == 1215.34 and point.p99_ms == 20.896
    args = record.read_text().split()
    expected = {
        "-m": "tiny",
        "-u": "127.0.0.1:8000",
        "-i": "grpc",
        "-b": "1",
        "--concurrency-range": "4:4",
        "--measurement-interval": "500",
        "--max-trials": "3",
        "--input-data": str(tmp_path / "data.json"),
    }
    for flag, value in expected.items():
        assert args[args.index(flag) + 1] == value, flag


def test_measure_quotes_a_failure(tmp_path: Path) -> None:
    body = (
        'case "$1" in --version) echo "Perf Analyzer Version 2.51.0"; exit 0;; esac\n'
        'echo "error: failed to get model metadata: Request for unknown model" >&2\n'
        "exit 99\n"
    )
    with perf_analyzer([fake_perf_analyzer(tmp_path, body)]) as pa:
        load = Load("127.0.0.1:8000", "http", "tiny", tmp_path / "data.json")
        with pytest.raises(
            ProfileError,
            match=r"failed at concurrency 2 \(exit 99\): error: failed to get model metadata",
        ):
            measure(pa, load, 2, 1.0)


def test_an_unreachable_server_is_a_profile_error() -> None:
    (port,) = free_ports(1)
    with pytest.raises(ProfileError, match=f"no server answers at 127.0.0.1:{port}"):
        check_served_model(f"127.0.0.1:{port}", "http", "tiny")


def result() -> ProfileResult:
    points = (
        ProfilePoint(1, 812.25, 1.2, 2.0, 2.5, 4.75),
        ProfilePoint(4, 1490.5, 2.5, 4.0, 5.0, 9.5),
    )
    return ProfileResult(
        "tiny", "http://127.0.0.1:8000", "http", 2.0, "built-in", 32, "Perf Analyzer", points
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_markdown_table_rows() -> None:
    assert markdown_table(result().points).splitlines() == [
        "| concurrency | texts/s | p50 ms | p90 ms | p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: |",
        "| 1 | 812.2 | 1.2 | 2.0 | 4.8 |",
        "| 4 | 1490.5 | 2.5 | 4.0 | 9.5 |",
    ]


def test_write_report(tmp_path: Path) -> None:
    json_path, md_path, png_path = write_report(result(), tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert [p["concurrency"] for p in data["points"]] == [1, 4]
    assert data["points"][1]["throughput"] == 1490.5 and data["points"][1]["p99_ms"] == 9.5
    assert data["model"] == "tiny" and data["texts"] == 32 and data["units"]["latency"] == "ms"
    assert "| 4 | 1490.5 | 2.5 | 4.0 | 9.5 |" in md_path.read_text()
    assert png_size(png_path) == (1000, 400)
    assert png_path.stat().st_size > 10_000  # two plotted panels, not an empty canvas


def test_profile_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "models.yaml"
    spec.write_text(SPEC)
    assert main(["profile", str(spec), "gamma"]) == 2
    assert capsys.readouterr().err == (
        f"error: {spec}: no model 'gamma'; known models: alpha, beta\n"
    )
    (port,) = free_ports(1)
    assert main(["profile", str(spec), "alpha", "--url", f"127.0.0.1:{port}", "-q"]) == 2
    assert f"error: no server answers at 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["profile", str(spec), "alpha", "--corpus", str(tmp_path / "none.txt")]) == 2
    assert "--corpus" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["--concurrency", "0"], ["--concurrency", "a,b"], ["--seconds", "0"]]
)
def test_profile_cli_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["profile", str(tmp_path), *argv])
    assert caught.value.code == 2
    assert f"argument {argv[0]}" in capsys.readouterr().err


def test_profile_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["profile", "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for part in ("SPEC|REPO", "--url", "--corpus", "--concurrency", "--seconds", "--protocol"):
        assert part in text
    assert "triton-pack profile models.yaml minilm --url localhost:8000" in text
    assert "profile.json" in text and "profile.png" in text
