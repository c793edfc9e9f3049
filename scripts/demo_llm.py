"""The LLM half of `make demo` (runs in .venv-llm): a streamed generation through Triton.

Makes a tiny random Llama and tokenizer locally (nothing is downloaded), builds a repository
with a `text-generation` / `vllm` entry, serves it with the local tritonserver and our vLLM
stand-in backend, and streams a completion with the typed client. The model is random, so
the text is gibberish: the point is the path, not the prose.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.pipeline import build_repository  # noqa: E402
from builder.serve import LocalServer  # noqa: E402
from builder.spec import load_spec  # noqa: E402
from clients import GenerationClient  # noqa: E402
from tests.tiny_models import make_llama  # noqa: E402

PROMPT = "the server streams"


def main() -> int:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    with tempfile.TemporaryDirectory(prefix="triton-pack-llm-demo-") as tmp:
        folder = Path(tmp)
        model = make_llama(folder / "tiny-llama")
        spec = folder / "models.yaml"
        spec.write_text(
            "repository: repo\n"
            "models:\n"
            "  - name: llm\n"
            "    task: text-generation\n"
            "    backend: vllm\n"
            f"    engine: {{model: {model}, dtype: float32, max_model_len: 512,"
            " enforce_eager: true}\n",
            encoding="utf-8",
        )
        result = build_repository(load_spec(spec), progress=lambda message: None)
        print(f"\nstarting tritonserver with real vLLM (CPU) on {result.repository} ...")
        started = time.monotonic()
        with LocalServer(result.repository) as server:
            print(f"ready in {time.monotonic() - started:.0f}s: gRPC {server.grpc_url}")
            client = GenerationClient(server.grpc_url, "llm")
            print(f"\nstreaming (tiny random model, gibberish expected)\n  {PROMPT!r} ->", end="")
            sampling = {"temperature": 0.0, "max_tokens": 24, "ignore_eos": True}
            with client.stream(PROMPT, **sampling) as stream:
                for piece in stream:
                    print(f" [{piece}]", end="", flush=True)
            whole = client.generate(PROMPT, **sampling)
            streamed = stream.generation
            same = "equal" if streamed.text == whole.text else "DIFFERENT"
            print(
                f"\n\nstreamed text and non-streamed text are {same}; "
                f"{whole.num_output_tokens} tokens, finish reason {whole.finish_reason!r}"
            )
            return 0 if streamed.text == whole.text else 1


if __name__ == "__main__":
    sys.exit(main())
