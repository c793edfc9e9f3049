"""build-repo end to end on real exports: parity, atomicity, caching, determinism, --check."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.cli import build_repo_main
from builder.pipeline import build_repository
from builder.registry import REGISTRY
from builder.spec import load_spec
from tests.integration.conftest import write_spec
from tests.tiny_models import make_model

pytestmark = pytest.mark.slow

ARCHITECTURES = (
    "bert",
    "roberta",
    "distilbert",
    "xlm-roberta",
    "mpnet",
    "deberta-v2",
    "electra",
    "modernbert",
)
# Every registered architecture and task must appear here (Optimum's test_all_models_tested).
# Each architecture has its own token-classification class; a reranker is a one-label
# sequence classifier, so it runs on the architectures rerankers are published on.
EXPORT_MATRIX = [
    (model_type, task)
    for model_type in ARCHITECTURES
    for task in ("text-embedding", "text-classification", "token-classification")
] + [(model_type, "text-reranking") for model_type in ("bert", "xlm-roberta", "deberta-v2")]
OUTPUTS = {
    "text-embedding": ("EMBEDDING", {"kind": "pool", "pooling": "mean", "normalize": True}),
    "text-classification": ("SCORES", {"kind": "softmax"}),
    "text-reranking": ("SCORE", {"kind": "sigmoid"}),
    "token-classification": ("TOKEN_SCORES", {"kind": "softmax"}),
}


def quiet(message: str) -> None:
    """Progress sink for tests."""


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def tiny_spec(
    folder: Path, source: Path, extra: str = "", task: str = "text-classification"
) -> Path:
    return write_spec(
        folder / "models.yaml",
        f"""
repository: repo
models:
  - name: tiny
    task: {task}
    source: {source}
    max_sequence_length: 64
    max_batch_size: 4
{extra}""",
    )


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("tiny-bert"), "bert", "text-classification")


@pytest.fixture()
def built(tmp_path: Path, tiny_bert: Path) -> Path:
    spec = tiny_spec(tmp_path, tiny_bert)
    build_repository(load_spec(spec), progress=quiet)
    return spec


def test_every_registered_architecture_is_in_the_export_matrix() -> None:
    assert {m for m, _ in EXPORT_MATRIX} == set(REGISTRY.model_types)
    assert {t for _, t in EXPORT_MATRIX} == set(REGISTRY.tasks)


@pytest.mark.parametrize(("model_type", "task"), EXPORT_MATRIX)
def test_export_matrix(tmp_path: Path, model_type: str, task: str) -> None:
    source = make_model(tmp_path / "src", model_type, task)
    spec = tiny_spec(tmp_path, source, task=task)
    result = build_repository(load_spec(spec), progress=quiet)
    manifest = json.loads((result.repository / "manifest.json").read_text())
    parity = manifest["models"]["tiny"]["parity"]
    assert parity["passed"] is True
    assert parity["max_abs_diff"] <= 1e-4
    # the graph's final output (pooling / softmax inside), compared with PyTorch's raw output
    # put through python_backends.text_ops
    head = manifest["models"]["tiny"]["export"]["head"]
    assert (parity["output"], head) == OUTPUTS[task]
    # parity ran on shapes unlike the export example (batch 2, length 8, unpadded)
    assert parity["cases"][0] == "batch 3, lengths [13, 7, 1]"
    assert parity["cases"][2] == "batch 1, lengths [64]"
    # and on real text tokenized as served: the built-in samples, the longest cut at 64
    # (a reranker's: the samples paired with themselves in reverse order, both sides cut)
    assert parity["cases"][3].startswith("texts: batch 7, lengths [")
    assert parity["cases"][3].endswith(", 64]")
    onnx_files = sorted(p.name for p in (result.repository / "tiny_onnx" / "1").iterdir())
    assert onnx_files == ["model.onnx", "model.onnx.data"]
    config = (result.repository / "tiny_onnx" / "config.pbtxt").read_text()
    has_types = 'name: "token_type_ids"' in config
    assert has_types == (model_type in ("bert", "electra"))


def test_forced_parity_failure_names_model_output_and_diff_and_writes_nothing(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = built.parent / "repo"
    before = snapshot(repo)
    text = built.read_text() + "    export: {atol: 1.0e-12, rtol: 0}\n"
    built.write_text(text)
    assert build_repo_main([str(built)]) == 1
    err = capsys.readouterr().err
    assert "model 'tiny'" in err
    assert "output 'SCORES'" in err
    assert "beyond |onnx - torch| <= atol + rtol * |torch|: max |onnx - torch| on SCORES" in err
    assert "(atol 1e-12, rtol 0)" in err
    assert snapshot(repo) == before
    assert sorted(p.name for p in built.parent.iterdir()) == ["models.yaml", "repo"]


def test_allow_parity_failure_builds_says_so_and_exits_3(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    built.write_text(
        built.read_text() + "    export: {atol: 1.0e-12, rtol: 0, allow_parity_failure: true}\n"
    )
    assert build_repo_main([str(built), "-q"]) == 3
    out, err = capsys.readouterr()
    assert out.endswith("1 model(s), 1 exported (tiny); PARITY FAILED: tiny\n")
    # -q keeps the warning
    assert err.startswith("warning: model 'tiny' was built although its ONNX export differs")
    assert "allowed by export.allow_parity_failure" in err
    manifest = json.loads((built.parent / "repo" / "manifest.json").read_text())
    parity = manifest["models"]["tiny"]["parity"]
    assert parity["passed"] is False
    assert parity["max_abs_diff"] > 1e-12
    # the command line may accept it too (the manifest still records the failure)
    assert build_repo_main([str(built), "-q", "--allow-parity-failure"]) == 0
    assert "PARITY FAILED: tiny" in capsys.readouterr().out


BAD_ENTRIES = [
    ("    instances: '2'\n", "models[0].instances (model 'tiny'): Input should be a valid integer"),
    ("    bogus: 1\n", "models[0].bogus (model 'tiny'): unknown key"),
    (
        "    pooling: weighted\n",
        "models[0].pooling (model 'tiny'): Input should be 'mean', 'cls', 'max', "
        "'mean_sqrt_len_tokens' or 'lasttoken'",
    ),
    (
        "    dynamic_batching: {max_queue_delay_us: abc}\n",
        "models[0].dynamic_batching.max_queue_delay_us (model 'tiny')",
    ),
    ("  - {name: tiny, task: text-embedding, source: x}\n", "'tiny' collides with models[0]"),
    ("  - {name: '../up', task: text-embedding, source: x}\n", "models[1].name"),
    ("  - {name: 'has space', task: text-embedding, source: x}\n", "unsafe model name"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_ENTRIES)
def test_bad_spec_exits_nonzero_with_key_path_and_keeps_repository(
    built: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str
) -> None:
    repo = built.parent / "repo"
    before = snapshot(repo)
    built.write_text(built.read_text() + extra)
    assert build_repo_main([str(built)]) == 1
    err = capsys.readouterr().err
    assert str(built) in err
    assert message in err
    assert snapshot(repo) == before


def test_second_build_reexports_nothing(built: Path) -> None:
    repo = built.parent / "repo"
    before = snapshot(repo)
    result = build_repository(load_spec(built), progress=quiet)
    assert [m.exported for m in result.models] == [False]
    assert snapshot(repo) == before


def test_config_only_change_rerenders_without_export(built: Path) -> None:
    built.write_text(built.read_text() + "    instances: 3\n")
    result = build_repository(load_spec(built), progress=quiet)
    assert [m.exported for m in result.models] == [False]
    config = (built.parent / "repo" / "tiny_onnx" / "config.pbtxt").read_text()
    assert "count: 3" in config


def test_export_setting_change_reexports(built: Path) -> None:
    built.write_text(built.read_text() + "    export: {opset: 17}\n")
    result = build_repository(load_spec(built), progress=quiet)
    assert [m.exported for m in result.models] == [True]
    manifest = json.loads((built.parent / "repo" / "manifest.json").read_text())
    assert manifest["models"]["tiny"]["export"]["opset"] == 17


def test_tampered_artifact_is_rebuilt(built: Path) -> None:
    data = built.parent / "repo" / "tiny_onnx" / "1" / "model.onnx.data"
    data.write_bytes(b"corrupt")
    result = build_repository(load_spec(built), progress=quiet)
    assert [m.exported for m in result.models] == [True]
    assert data.stat().st_size > 1000


def test_builds_are_deterministic(tmp_path: Path, tiny_bert: Path) -> None:
    first = tiny_spec(tmp_path, tiny_bert)
    second_dir = tmp_path / "again"
    second_dir.mkdir()
    second = tiny_spec(second_dir, tiny_bert)
    a = build_repository(load_spec(first), progress=quiet).repository
    b = build_repository(load_spec(second), progress=quiet).repository
    assert snapshot(a) == snapshot(b)


def test_check_reports_drift(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = built.parent / "repo"
    assert build_repo_main([str(built), "--check", "-q"]) == 0
    config = repo / "tiny_onnx" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 4", "max_batch_size: 5"))
    (repo / "tiny_postprocess" / "1" / "model.py").unlink()
    capsys.readouterr()
    assert build_repo_main([str(built), "--check", "-q"]) == 1
    out = capsys.readouterr().out
    assert "differs: tiny_onnx/config.pbtxt" in out
    assert "missing: tiny_postprocess/1/model.py" in out


def test_committed_repository_matches_models_yaml() -> None:
    root = Path(__file__).resolve().parents[2]
    assert build_repo_main([str(root / "models.yaml"), "--check", "-q"]) == 0


def test_a_fresh_clone_builds_its_committed_repository(tmp_path: Path) -> None:
    """model_repository/ as git checks it out (configs, code, .gitignore; no manifest) is
    recognised as triton-pack's and built in place; a user's file in it would not be."""
    root = Path(__file__).resolve().parents[2]
    listed = subprocess.run(
        ["git", "ls-files", "models.yaml", "model_repository"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    for rel in listed.stdout.split():
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, clone / rel)
    assert not (clone / "model_repository" / "manifest.json").exists()

    assert build_repo_main([str(clone / "models.yaml"), "-q"]) == 0

    manifest = json.loads((clone / "model_repository" / "manifest.json").read_text())
    assert manifest["format"] == "triton-pack-repository/1"
    assert (clone / "model_repository" / "minilm_onnx" / "1" / "model.onnx.data").is_file()
    assert build_repo_main([str(clone / "models.yaml"), "--check", "-q"]) == 0


def test_failed_export_of_a_second_model_keeps_the_first_build(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = built.parent / "repo"
    before = snapshot(repo)
    missing = tmp_path / "nowhere"
    built.write_text(
        built.read_text() + f"  - {{name: other, task: text-embedding, source: {missing}}}\n"
    )
    assert build_repo_main([str(built)]) == 1
    assert f"models[1].source (model 'other'): folder {missing} does not exist" in (
        capsys.readouterr().err
    )
    assert snapshot(repo) == before
    shutil.rmtree(repo)


def test_every_written_config_round_trips_through_model_config(built: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    configs = sorted((built.parent / "repo").glob("*/config.pbtxt"))
    assert [p.parent.name for p in configs] == [
        "tiny",
        "tiny_onnx",
        "tiny_postprocess",
        "tiny_tokenizer",
    ]
    for path in configs:
        parsed = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        again = text_format.Parse(
            text_format.MessageToString(parsed), model_config_pb2.ModelConfig()
        )
        assert again == parsed
        assert parsed.name == path.parent.name


@pytest.mark.parametrize("task", ["text-embedding", "text-classification"])
def test_optimize_fuses_the_graph_checks_parity_and_records_it(tmp_path: Path, task: str) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort

    source = make_model(tmp_path / "src", "bert", task)
    spec = tiny_spec(tmp_path, source, "    export: {optimize: true}\n", task=task)
    messages: list[str] = []
    result = build_repository(load_spec(spec), progress=messages.append)
    record = json.loads((result.repository / "manifest.json").read_text())["models"]["tiny"]
    optimize = record["export"]["optimize"]
    assert optimize["applied"] is True
    # the fusions ONNX Runtime runs as single kernels, counted per encoder layer (2 here)
    assert optimize["fusions"]["attention"] == 2
    assert optimize["fusions"]["skip_layer_normalization"] >= 2
    assert record["parity"]["passed"] is True
    assert any("optimised (" in m and "attention x2" in m for m in messages)
    graph_dir = result.repository / "tiny_onnx" / "1"
    assert sorted(p.name for p in graph_dir.iterdir()) == ["model.onnx", "model.onnx.data"]
    ops = {n.op_type for n in onnx.load(str(graph_dir / "model.onnx")).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops
    # the served file is the fused one, and it runs under plain ONNX Runtime
    session = ort.InferenceSession(str(graph_dir / "model.onnx"))
    feeds = {i.name: np.ones((2, 5), dtype=np.int64) for i in session.get_inputs()}
    (out,) = session.run(None, feeds)
    assert out.shape[0] == 2 and np.isfinite(out).all()
    # a spec without optimize records nothing about it, and re-exports (a new cache key)
    plain = tiny_spec(tmp_path, source, task=task)
    result = build_repository(load_spec(plain), progress=quiet)
    record = json.loads((result.repository / "manifest.json").read_text())["models"]["tiny"]
    assert "optimize" not in record["export"]
    ops = {n.op_type for n in onnx.load(str(graph_dir / "model.onnx")).graph.node}
    assert "Attention" not in ops
