"""Command line: ``build-repo`` (the CI step) and ``triton-pack build|check|serve``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from builder import __version__
from builder.errors import BuildError
from builder.serve import LocalServer, Ports, free_ports
from builder.spec import load_spec
from builder.write import build_repository, check_repository

__all__ = ["build_repo_main", "main"]

_BUILD_HELP = """\
Build a Triton model repository from a YAML spec.

Each model entry becomes an ensemble named after it (TEXT in; EMBEDDING, or LABEL and
SCORES out) with three members: <name>_tokenizer and <name>_postprocess (Python backend) and
<name>_onnx (ONNX Runtime backend). Exports are checked against PyTorch (export.atol) and
cached: a model whose spec entry, source files and libraries are unchanged is not exported
again. The repository is written to a staging folder and swapped in whole, so a failed build
leaves the previous repository as it was.

examples:
  build-repo models.yaml                    build into the spec's `repository` folder
  build-repo models.yaml -o /tmp/repo       build elsewhere
  build-repo models.yaml --check            exit 1 if committed configs/code are stale
"""


def _add_build_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", type=Path, help="the YAML spec (e.g. models.yaml)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="repository folder (default: the spec's `repository`, model_repository/)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")


def _progress(quiet: bool) -> object:
    if quiet:
        return lambda message: None
    return lambda message: print(message, file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    result = build_repository(spec, args.output, progress=_progress(args.quiet))  # type: ignore[arg-type]
    exported = [m.name for m in result.models if m.exported]
    print(
        f"{result.repository}: {len(result.models)} model(s), "
        f"{len(exported)} exported" + (f" ({', '.join(exported)})" if exported else "")
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    problems = check_repository(spec, args.output, progress=_progress(args.quiet))  # type: ignore[arg-type]
    repo = (args.output or spec.repository_dir).resolve()
    if problems:
        print(f"{repo} is out of date with {args.spec}; run `build-repo {args.spec}`:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"{repo}: configs and code match {args.spec}")
    return 0


def build_repo_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build-repo",
        description=_BUILD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_build_args(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="build nothing; exit 1 if the repository's configs and code differ from the spec",
    )
    parser.add_argument("--version", action="version", version=f"triton-pack {__version__}")
    args = parser.parse_args(argv)
    return _run(_check if args.check else _build, args)


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port")
    return port


def _serve(args: argparse.Namespace) -> int:
    chosen = [args.http_port, args.grpc_port, args.metrics_port]
    spare = iter(free_ports(3))
    ports = Ports(*[port or next(spare) for port in chosen])
    server = LocalServer(
        args.repository,
        ports=ports,
        host=args.host,
        model_control=args.model_control,
        extra_args=tuple(args.tritonserver_args),
        log_path=args.log_file,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        print(f"starting tritonserver on {args.repository} (log: {server.log_path})", flush=True)
        server.start(timeout=args.timeout)
        print(
            f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  "
            f"metrics {server.metrics_url}  (Ctrl-C stops)",
            flush=True,
        )
        code = server.wait()
        print(f"tritonserver exited with code {code}; log: {server.log_path}", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        print("stopping tritonserver", file=sys.stderr)
        return 0
    finally:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="triton-pack",
        description="Build, check and serve Triton model repositories from a YAML spec.",
    )
    parser.add_argument("--version", action="version", version=f"triton-pack {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser(
        "build",
        help="build the repository (same as build-repo)",
        description=_BUILD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_build_args(build)
    build.set_defaults(func=_build)

    check = commands.add_parser(
        "check",
        help="exit 1 if the repository's configs and code differ from what the spec renders",
    )
    _add_build_args(check)
    check.set_defaults(func=_check)

    serve = commands.add_parser(
        "serve",
        help="run a real tritonserver over a repository (no Docker or GPU needed)",
        description=(
            "Run tritonserver over DIR: the one on PATH (NGC image) or the one in the "
            "nvidia-pytriton wheel, with triton-pack's Python stand-ins for backends the "
            "server lacks (onnxruntime). Prints one line with the URLs when every model is "
            "ready; if a model fails to load, prints Triton's error and exits 1. "
            "Arguments after `--` go to tritonserver unchanged."
        ),
    )
    serve.add_argument("repository", type=Path, nargs="?", default=Path("model_repository"))
    serve.add_argument("--http-port", type=_port, default=8000, help="0 picks a free port")
    serve.add_argument("--grpc-port", type=_port, default=8001, help="0 picks a free port")
    serve.add_argument("--metrics-port", type=_port, default=8002, help="0 picks a free port")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--model-control",
        choices=("none", "explicit"),
        default="none",
        help="explicit: load all models at start and allow load/unload over the API",
    )
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for ready")
    serve.add_argument("--log-file", type=Path, default=None, help="tritonserver's log")
    serve.set_defaults(func=_serve)

    words = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, passthrough = words[:cut], words[cut + 1 :]
    args = parser.parse_args(words)
    args.tritonserver_args = passthrough
    if passthrough and args.command != "serve":
        parser.error("arguments after `--` are only for `triton-pack serve`")
    return _run(args.func, args)


def _run(func: object, args: argparse.Namespace) -> int:
    try:
        return int(func(args))  # type: ignore[operator]
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
