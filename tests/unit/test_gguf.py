"""GGUF entries without converting: the spec key, finding and hashing the file, the conversion
key, the check of a converted folder, and what a build writes before converting."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from builder.errors import SourceError, SpecError
from builder.gguf import (
    GgufFile,
    conversion_key,
    converted_path,
    converted_problems,
    has_chat_template,
    missing_modules,
    require_converter,
    resolve_gguf,
)
from builder.pipeline import check_repository
from builder.plan import plan_vllm
from builder.spec import load_spec, parse_spec

GGUF_BYTES = b"GGUF\x03\x00\x00\x00 not a real model"
SPEC = """\
models:
  - name: smol
    task: text-generation
    backend: vllm
    gguf: {gguf}
    engine: {{dtype: float32, max_model_len: 2048}}
"""


def spec_error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, Path("models.yaml"))
    return str(caught.value)


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.Q4.gguf"
    path.write_bytes(GGUF_BYTES)
    return path


def test_a_gguf_entry_needs_no_engine_model_and_plans_the_converted_folder() -> None:
    spec = parse_spec(SPEC.format(gguf="./m.gguf"), Path("models.yaml"))
    model = spec.models[0]
    assert model.gguf == "./m.gguf"
    assert model.engine == {"dtype": "float32", "max_model_len": 2048}
    plan = plan_vllm(model, "/repo/smol/1/hf")
    assert json.loads(plan.model_json) == {
        "dtype": "float32",
        "max_model_len": 2048,
        "model": "/repo/smol/1/hf",
    }


def test_a_gguf_entry_may_leave_out_engine() -> None:
    text = "models:\n  - {name: smol, task: text-generation, backend: vllm, gguf: ./m.gguf}\n"
    spec = parse_spec(text, Path("models.yaml"))
    assert json.loads(plan_vllm(spec.models[0], "/r/smol/1/hf").model_json) == {
        "model": "/r/smol/1/hf"
    }


def test_engine_model_and_gguf_together_are_refused() -> None:
    text = SPEC.format(gguf="./m.gguf").replace("{dtype:", "{model: /m, dtype:")
    message = spec_error(text)
    assert (
        "models.yaml: models[0].engine (model 'smol'): 'model' must not be given with 'gguf'"
        in (message)
    )


def test_without_gguf_engine_model_is_still_required() -> None:
    text = (
        "models:\n"
        "  - {name: smol, task: text-generation, backend: vllm, engine: {dtype: float32}}\n"
    )
    message = spec_error(text)
    assert "models[0].engine (model 'smol'): 'model' is required" in message
    assert "or give 'gguf'" in message


def test_gguf_on_an_encoder_entry_is_refused() -> None:
    text = "models:\n  - {name: e, task: text-embedding, source: ./m, gguf: ./m.gguf}\n"
    assert "'gguf' applies only to task text-generation" in spec_error(text)


def test_resolve_finds_hashes_and_names_a_relative_path(gguf_file: Path) -> None:
    found = resolve_gguf("./model.Q4.gguf", gguf_file.parent)
    assert found.path == gguf_file.resolve()
    assert found.sha256 == hashlib.sha256(GGUF_BYTES).hexdigest()
    assert found.as_manifest() == {
        "gguf": "./model.Q4.gguf",
        "file": "model.Q4.gguf",
        "sha256": hashlib.sha256(GGUF_BYTES).hexdigest(),
    }


def test_resolve_refuses_a_missing_file_a_folder_and_a_file_that_is_not_gguf(
    tmp_path: Path,
) -> None:
    with pytest.raises(SourceError, match=r"GGUF file .*missing\.gguf does not exist"):
        resolve_gguf("missing.gguf", tmp_path)
    with pytest.raises(SourceError, match=r"is a folder; give the \.gguf file itself"):
        resolve_gguf(".", tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"PK\x03\x04zip")
    with pytest.raises(SourceError, match=r"is not a GGUF file \(it starts with b'PK\\x03\\x04'"):
        resolve_gguf("weights.bin", tmp_path)


def test_resolve_a_package_reference(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="Python package 'no_such_pkg_xyz' is not installed"):
        resolve_gguf("package:no_such_pkg_xyz/m.gguf", tmp_path)
    # a package that exists but has no such file: the path inside it is named
    with pytest.raises(SourceError, match=r"GGUF file .*builder/absent\.gguf does not exist"):
        resolve_gguf("package:builder/absent.gguf", tmp_path)


def test_conversion_key_follows_the_file_hash_and_the_libraries() -> None:
    versions = {"torch": "2.13.0", "transformers": "5.19.0", "gguf": "0.19.0"}
    one = GgufFile("a.gguf", Path("/x/a.gguf"), "1" * 64)
    key = conversion_key(one, versions, "0.1.0")
    assert key == conversion_key(GgufFile("b.gguf", Path("/y/b.gguf"), "1" * 64), versions, "0.1.0")
    assert key == conversion_key(one, dict(reversed(list(versions.items()))), "0.1.0")
    assert key != conversion_key(GgufFile("a.gguf", Path("/x/a.gguf"), "2" * 64), versions, "0.1.0")
    assert key != conversion_key(one, {**versions, "gguf": "0.20.0"}, "0.1.0")
    assert key != conversion_key(one, versions, "0.2.0")


def test_missing_converter_modules_are_named() -> None:
    assert missing_modules(("json", "no_such_module_xyz")) == ["no_such_module_xyz"]
    with pytest.raises(SourceError, match=r"needs the Python package\(s\) no_such_module_xyz"):
        require_converter(("json", "no_such_module_xyz"))
    require_converter(("json",))


def _folder(tmp_path: Path, config: dict[str, object], template: str | None) -> Path:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    tokenizer_config = {"chat_template": template} if template is not None else {}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def test_converted_problems_accepts_a_float32_folder(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"dtype": "float32", "model_type": "llama"}, "{{ messages }}")
    assert converted_problems(folder) == []
    assert has_chat_template(folder)


def test_converted_problems_names_each_problem(tmp_path: Path) -> None:
    config = {"dtype": "bfloat16", "quantization_config": {"quant_method": "gguf"}}
    folder = _folder(tmp_path, config, None)
    (folder / "model.safetensors").unlink()
    (folder / "tokenizer.json").unlink()
    assert converted_problems(folder) == [
        "tokenizer.json is missing",
        "no *.safetensors weights",
        "config.json dtype is 'bfloat16', not 'float32'",
        "config.json still has a quantization_config",
    ]
    assert not has_chat_template(folder)


def test_check_renders_model_json_with_the_final_folder_without_converting(
    tmp_path: Path, gguf_file: Path
) -> None:
    spec_path = tmp_path / "models.yaml"
    spec_path.write_text("repository: repo\n" + SPEC.format(gguf=gguf_file.name), encoding="utf-8")
    spec = load_spec(spec_path)
    repo = tmp_path / "repo"
    # --check on an unbuilt folder: everything is missing, nothing converted, no gguf needed
    problems = check_repository(spec, progress=lambda message: None)
    assert problems == [
        "missing: .gitignore",
        "missing: smol/1/model.json",
        "missing: smol/config.pbtxt",
    ]
    assert not repo.exists()
    assert converted_path(repo.resolve(), "smol") == repo.resolve() / "smol" / "1" / "hf"


def test_a_missing_gguf_file_fails_the_build_naming_the_spec_key(tmp_path: Path) -> None:
    spec_path = tmp_path / "models.yaml"
    spec_path.write_text("repository: repo\n" + SPEC.format(gguf="gone.gguf"), encoding="utf-8")
    with pytest.raises(SourceError) as caught:
        check_repository(load_spec(spec_path), progress=lambda message: None)
    message = str(caught.value)
    assert message.startswith(f"{spec_path.resolve()}: models[0].gguf (model 'smol'): GGUF file ")
    assert message.endswith("gone.gguf does not exist")
