"""The front's connections to Triton and the per-model helpers the routes use.

Made once, inside the server's event loop (the asyncio clients are bound to their first
loop): one ``AsyncTritonClient`` over gRPC shared by every task client, one
``AsyncGenerationClient`` per text-generation model (each stream opens its own gRPC stream),
a ``tokenizers`` tokenizer per encoder model to count ``usage`` tokens, and a ``Prompter`` per
text-generation model. The retry policy is short: when Triton is down the front answers 503
within a couple of seconds rather than holding the request for the clients' default 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from clients import (
    AsyncClassificationClient,
    AsyncEmbeddingClient,
    AsyncGenerationClient,
    AsyncRerankClient,
    AsyncTokenClassificationClient,
    AsyncTritonClient,
    RetryPolicy,
)
from front.catalog import Catalog, ServedModel
from front.generation import Prompter

__all__ = ["Backend", "FrontSettings", "TokenCounter"]

FRONT_RETRY = RetryPolicy(attempts=2, deadline=2.0, initial_backoff=0.1, max_backoff=0.5)


@dataclass(frozen=True)
class FrontSettings:
    triton: str  # host:port of Triton's gRPC endpoint (or HTTP, with protocol "http")
    protocol: Literal["grpc", "http"] = "grpc"
    timeout: float = 60.0  # seconds for one encoder call
    generation_timeout: float = 600.0  # seconds between two responses of a generation
    concurrency: int = 8  # pieces of one split request in flight at once


class TokenCounter:
    """``usage.prompt_tokens``: the served tokenizer, truncated where the served one is."""

    def __init__(self, model: ServedModel) -> None:
        from tokenizers import Tokenizer

        assert model.tokenizer_file is not None
        self._tokenizer = Tokenizer.from_file(str(model.tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self._max = model.max_length

    def count(self, texts: list[str]) -> int:
        # _fast: no offsets (only the lengths are wanted)
        encodings = self._tokenizer.encode_batch_fast(texts, add_special_tokens=True)
        if self._max is None:
            return sum(len(e.ids) for e in encodings)
        return sum(min(len(e.ids), self._max) for e in encodings)


class Backend:
    def __init__(self, settings: FrontSettings, catalog: Catalog) -> None:
        self.settings = settings
        protocol = settings.protocol
        url = f"{protocol}://{settings.triton}"
        self.client = AsyncTritonClient(url, protocol, timeout=settings.timeout, retry=FRONT_RETRY)
        kinds: dict[str, Any] = {
            "text-embedding": AsyncEmbeddingClient,
            "text-classification": AsyncClassificationClient,
            "text-reranking": AsyncRerankClient,
            "token-classification": AsyncTokenClassificationClient,
        }
        self.tasks: dict[str, Any] = {}
        self.counters: dict[str, TokenCounter] = {}
        self.generators: dict[str, AsyncGenerationClient] = {}
        self.prompters: dict[str, Prompter] = {}
        for model in catalog.models:
            if model.task == "text-generation":
                self.generators[model.name] = AsyncGenerationClient(
                    url,
                    model.name,
                    "grpc",
                    timeout=settings.generation_timeout,
                    retry=FRONT_RETRY,
                )
                folder = model.engine_model
                assert folder is not None
                self.prompters[model.name] = Prompter.load(model.name, folder, model.max_model_len)
                continue
            self.tasks[model.name] = kinds[model.task](
                self.client, model.name, concurrency=settings.concurrency
            )
            if model.task == "text-embedding":
                self.counters[model.name] = TokenCounter(model)

    async def close(self) -> None:
        for task in self.tasks.values():
            await task.close()
        for generator in self.generators.values():
            await generator.close()
        await self.client.close()
