"""Embedding throughput through the typed clients against the local tritonserver.

    .venv/bin/python benchmarks/bench_embed.py [--texts 1000]

Serves model_repository/ (build it first: `make repo`), then times EmbeddingClient.embed on
N short texts over HTTP and gRPC at several concurrency levels, and N single-text requests
one after another for comparison. Prints texts per second; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.serve import LocalServer  # noqa: E402
from clients import EmbeddingClient, TritonClient  # noqa: E402


def texts(count: int) -> list[str]:
    words = "triton serves sentence embeddings for search ranking and clustering".split()
    return [" ".join(words[(i + k) % len(words)] for k in range(4 + i % 12)) for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    args = parser.parse_args()
    batch = texts(args.texts)
    with LocalServer(args.repository) as server:
        for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
            client = TritonClient(url, protocol)
            client.infer("minilm", {"TEXT": [["warm up"]]})
            for concurrency in (1, 4, 8):
                with EmbeddingClient(client, "minilm", concurrency=concurrency) as embedder:
                    started = time.perf_counter()
                    embedder.embed(batch)
                    seconds = time.perf_counter() - started
                print(
                    f"{protocol:4}  embed({args.texts}) concurrency {concurrency}: "
                    f"{seconds:6.2f} s  {args.texts / seconds:7.0f} texts/s"
                )
            started = time.perf_counter()
            for text in batch[:200]:
                client.infer("minilm", {"TEXT": [[text]]})
            seconds = time.perf_counter() - started
            print(f"{protocol:4}  200 single-text requests in a row: {200 / seconds:7.0f} texts/s")
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
