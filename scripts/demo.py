"""`make demo`: serve model_repository/ with a real tritonserver and compare with the source.

Starts the local server on free ports, sends a few texts to the `minilm` ensemble over HTTP
and gRPC, prints the embeddings and their cosine similarity to sentence-transformers'
``encode(..., normalize_embeddings=True)`` on the same texts, runs ``triton-pack verify``
against the server (every model of models.yaml against its source), and stops the server.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from builder.cli import main as triton_pack
from builder.serve import LocalServer
from builder.sources import resolve_source
from builder.spec import load_spec
from clients import EmbeddingClient

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "Triton serves this sentence.",
    "A platform engineer hand-writes config.pbtxt files.",
    "Unicode works too: Grüße aus Köln, 東京, 🚀",
    "",
]


def main() -> int:
    spec = load_spec(ROOT / "models.yaml")
    model = spec.models[0]
    print(f"starting tritonserver on {spec.repository_dir} ...", flush=True)
    with LocalServer(spec.repository_dir) as server:
        print(f"ready: HTTP {server.http_url}, gRPC {server.grpc_url}")
        # the typed clients from clients/, as application code would use them
        with EmbeddingClient(server.http_url, model.name) as http:
            via_http = http.embed(TEXTS)
        with EmbeddingClient(server.grpc_url, model.name, protocol="grpc") as grpc:
            via_grpc = grpc.embed(TEXTS)
        print(f"\n$ triton-pack verify models.yaml --url {server.http_url}", flush=True)
        verified = triton_pack(["verify", str(ROOT / "models.yaml"), "--url", server.http_url])

    from sentence_transformers import SentenceTransformer

    source = resolve_source(model, spec)
    reference = SentenceTransformer(str(source.directory), device="cpu").encode(
        TEXTS, normalize_embeddings=True
    )
    worst = 1.0
    print(f"\n{model.name}: {via_http.shape[1]}-dim embeddings served by tritonserver")
    for text, served, grpc_row, ref in zip(TEXTS, via_http, via_grpc, reference, strict=True):
        cosine = float(np.dot(served, ref) / (np.linalg.norm(served) * np.linalg.norm(ref)))
        worst = min(worst, cosine)
        head = ", ".join(f"{v:+.4f}" for v in served[:4])
        same = "same over gRPC" if np.allclose(served, grpc_row, atol=1e-6) else "gRPC DIFFERS"
        print(f"  {text!r:58} [{head}, ...]  cos vs sentence-transformers {cosine:.6f}  {same}")
    verdict = "OK" if worst >= 0.9999 else "TOO FAR"
    print(f"\nlowest cosine similarity: {worst:.6f} ({verdict}, required >= 0.9999)")
    return 0 if worst >= 0.9999 and verified == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
