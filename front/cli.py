"""``triton-pack api``: its arguments and its run (the parser is added by builder.cli)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_api_parser"]

_HELP = """\
Serve OpenAI- and TEI-compatible HTTP routes over a running tritonserver that serves the
repository built from SPEC:

  POST /v1/embeddings          text-embedding models (OpenAI SDK, LangChain OpenAIEmbeddings)
  POST /v1/chat/completions    text-generation models, with the model's chat template; SSE
  POST /v1/completions         text-generation models; SSE with stream=true
  GET  /v1/models              the servable models and their task
  POST /embed /rerank /predict TEI's shapes (text-embedding, text-reranking,
                               text-classification)
  POST /v1/ner                 token-classification (entities)
  GET  /health                 a real inference on each model: 200, or 503 naming the failures
  GET  /metrics                Prometheus: requests, errors and latency per route and model

Keys: --api-key KEY (repeatable), --api-keys FILE (one a line) or TRITON_PACK_API_KEYS
(comma-separated); clients send 'Authorization: Bearer KEY'. /health and /metrics are open.

example:
  triton-pack serve model_repository &           # Triton on 8000/8001/8002
  triton-pack api --triton 127.0.0.1:8001 --spec models.yaml --port 8080 --api-key sk-local
  python -c "from openai import OpenAI; c = OpenAI(base_url='http://127.0.0.1:8080/v1', \\
      api_key='sk-local'); print(c.embeddings.create(model='minilm', input='hi').usage)"
"""


def _rate(value: str) -> Any:
    from front.guard import parse_rate

    try:
        return parse_rate(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: expected HOST:PORT of Triton's gRPC port")
    return value


def add_api_parser(commands: Any, add_debug: Any) -> None:
    api = commands.add_parser(
        "api",
        help="serve OpenAI- and TEI-compatible routes over a running tritonserver",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    api.add_argument(
        "--triton",
        type=_host_port,
        required=True,
        help="Triton's gRPC endpoint, HOST:PORT (e.g. 127.0.0.1:8001)",
    )
    api.add_argument(
        "--triton-protocol",
        choices=("grpc", "http"),
        default="grpc",
        help="how the front talks to Triton (default grpc; with http, --triton is Triton's "
        "HTTP port, e.g. 127.0.0.1:8000)",
    )
    api.add_argument(
        "--spec", type=Path, required=True, help="the spec the repository was built from"
    )
    api.add_argument(
        "--repository",
        default=None,
        help="the built repository: a folder (default: the spec's `repository`) or the s3:// "
        "URI `build-repo --upload` printed (the front copies the tokenizers from it)",
    )
    api.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    api.add_argument("--port", type=int, default=8080, help="default %(default)s")
    keys = api.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY",
        help="accept this Bearer key (repeatable)",
    )
    keys.add_argument(
        "--api-keys",
        type=Path,
        default=None,
        metavar="FILE",
        help="accept the keys in FILE, one a line",
    )
    api.add_argument(
        "--rate-limit",
        type=_rate,
        default=None,
        metavar="N/s",
        help="per key (or per client address without keys): N/s or N/min",
    )
    api.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 << 20,
        help="larger request bodies get 413 (default %(default)s)",
    )
    api.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds for one encoder call to Triton (default %(default)s)",
    )
    add_debug(api)
    api.set_defaults(func=run_api)


def _keys(args: argparse.Namespace) -> list[str]:
    from front.guard import read_keys

    if args.api_key:
        return list(args.api_key)
    if args.api_keys is not None:
        return read_keys(args.api_keys)
    env = os.environ.get("TRITON_PACK_API_KEYS", "")
    return [key.strip() for key in env.split(",") if key.strip()]


def run_api(args: argparse.Namespace) -> int:
    from front.app import create_app, serve
    from front.backend import FrontSettings
    from front.catalog import load_catalog
    from front.guard import Keys, RateLimiter
    from front.metrics import FrontMetrics
    from front.state import Front

    try:
        keys = Keys.of(_keys(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    catalog = load_catalog(args.spec, args.repository)
    front = Front(catalog, keys, RateLimiter(args.rate_limit), FrontMetrics())
    settings = FrontSettings(
        triton=args.triton, protocol=args.triton_protocol, timeout=args.timeout
    )
    app = create_app(front, settings, max_body_bytes=args.max_body_bytes)
    served = ", ".join(f"{m.name} ({m.task})" for m in catalog.models)
    auth = f"{len(keys.keys)} API key(s)" if keys.required else "no API keys (open)"
    print(
        f"triton-pack api on http://{args.host}:{args.port} -> Triton "
        f"{args.triton_protocol} {args.triton}; "
        f"{served}; {auth}",
        flush=True,
    )
    serve(app, args.host, args.port)
    return 0
