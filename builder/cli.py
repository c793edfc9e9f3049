"""Command line: ``build-repo`` (the CI step) and
``triton-pack build|check|serve|probe|verify|profile|tune|deploy``.

Exit codes (the README's table):

    0    success
    1    a build, check or serve failure: one line (or a short list) naming the spec file,
         key path, model, folder or Triton's own load error; no traceback (``--debug`` shows it)
    2    bad command-line usage (argparse), or what profile/tune cannot measure with
         (``ProfileError``: unknown model, unreachable server, perf_analyzer missing or failing)
    3    the build finished but a model failed parity, allowed by the spec's
         ``export.allow_parity_failure``; pass ``--allow-parity-failure`` to accept it (exit 0)
    130  interrupted (Ctrl-C); 143 stopped by SIGTERM. Either way the staging folder is removed
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from builder import __version__
from builder.errors import BuildError, ProfileError
from builder.pipeline import build_repository, check_repository
from builder.profile import (
    DEFAULT_CORPUS,
    DEFAULT_LEVELS,
    Sweep,
    markdown_table,
    perf_analyzer,
    pick_model,
    profile,
    read_corpus,
    read_target,
    require_matplotlib,
    write_report,
)
from builder.serve import LocalServer, Ports, check_served_repository, free_ports
from builder.spec import ModelSpec, Spec, load_spec
from builder.storage import (
    RepositoryURI,
    is_uri,
    parse_repository_uri,
    preflight,
    upload_repository,
)
from builder.tune import (
    Axes,
    Candidate,
    TuneResult,
    changes,
    choose,
    describe_changes,
    parse_ints,
    parse_preferred,
    parse_threads,
    plan_candidates,
    run_trials,
    write_winner,
)
from builder.tune import markdown_table as tune_table
from builder.tune import write_report as write_tune_report
from front.cli import add_api_parser

__all__ = ["EXIT_PARITY", "build_repo_main", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARITY = 0, 1, 2, 3

_BUILD_HELP = """\
Build a Triton model repository from a YAML spec.

Each model entry becomes an ensemble named after it (TEXT in; EMBEDDING, or LABEL and
SCORES out) with three members: <name>_tokenizer and <name>_postprocess (Python backend) and
<name>_onnx (ONNX Runtime backend). Exports are checked against PyTorch (export.atol) and
cached: a model whose spec entry, source files and libraries are unchanged is not exported
again. The repository is written to a staging folder and swapped in whole, so a failed build
leaves the previous repository as it was.

The output folder must be absent, empty, or one triton-pack made (its manifest.json); a
folder with other files, the current directory and the spec's folder are refused before
any work.

examples:
  build-repo models.yaml                    build into the spec's `repository` folder
  build-repo models.yaml -o /tmp/repo       build elsewhere
  build-repo models.yaml --check            exit 1 if committed configs/code are stale
  build-repo models.yaml --upload s3://bucket/models
                                            build, then upload to s3://bucket/models/<hash>
                                            and print that URI (serve or deploy it)

exit codes: 0 ok, 1 failed (message names file, model and key), 2 usage,
  3 built with a parity failure the spec allows (see --allow-parity-failure), 130 Ctrl-C,
  143 SIGTERM
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
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only errors, warnings and the summary"
    )
    _add_debug(parser)


def _add_build_only_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upload",
        metavar="URI",
        default=None,
        help="after the build, upload the repository to URI/<content hash> (s3://bucket/prefix "
        "or s3://host:port/bucket/prefix; credentials and region from the AWS environment "
        "variables), manifest last, and print the final URI",
    )
    parser.add_argument(
        "--allow-parity-failure",
        action="store_true",
        help="exit 0, not 3, when a model failed parity and its spec allows that "
        "(export.allow_parity_failure: true); the summary still says PARITY FAILED",
    )


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of a failure"
    )


def _progress(quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda message: None
    return lambda message: print(message, file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class Stopped(BaseException):
    """A signal asked the process to stop (SIGTERM): unwinds like Ctrl-C, cleaning up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """SIGTERM and Ctrl-C unwind a build (removing its staging folder) instead of killing it.

    The handlers raise at once; they also remember the signal, and ``progress`` raises it
    again at the next step, because torch's exporter can swallow an exception raised inside
    it and go on (seen with Ctrl-C on a busy machine: the build then finished with exit 0).
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def _raise(self, signum: int) -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second one must not cut the cleanup short
        self.received = signum
        self._raise(signum)

    def progress(self, sink: Callable[[str], None]) -> Callable[[str], None]:
        def report(message: str) -> None:
            if self.received is not None:
                self._raise(self.received)
            sink(message)

        return report

    @contextmanager
    def installed(self) -> Iterator[_Signals]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers belong to the main thread; an embedding caller's own
            return
        previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _build(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    upload: RepositoryURI | None = None
    client = None
    if getattr(args, "upload", None) is not None:
        # a bad URI, no credentials or no bucket fail here, before any work
        upload = parse_repository_uri(args.upload)
        client = preflight(upload)
    with _Signals().installed() as signals:
        progress = signals.progress(_progress(args.quiet))
        result = build_repository(spec, args.output, progress=progress)
        if upload is not None:
            uploaded = upload_repository(result.repository, upload, progress, client)
    exported = [m.name for m in result.models if m.exported]
    failed = result.parity_failures
    print(
        f"{result.repository}: {len(result.models)} model(s), "
        f"{len(exported)} exported"
        + (f" ({', '.join(exported)})" if exported else "")
        + (f"; PARITY FAILED: {', '.join(failed)}" if failed else "")
    )
    if upload is not None:
        print(uploaded, flush=True)  # the content-addressed URI: serve or deploy this
    if not failed:
        return EXIT_OK
    for model in result.models:
        if model.parity_failed:
            _warn(
                f"model {model.name!r} was built although its ONNX export differs from "
                f"PyTorch by {model.parity['max_abs_diff']:.3e} on {model.parity['output']!r} "
                f"(export.atol {model.parity['atol']:g}; allowed by "
                "export.allow_parity_failure); it may serve wrong results"
            )
    return EXIT_OK if args.allow_parity_failure else EXIT_PARITY


def _check(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    with _Signals().installed() as signals:
        progress = signals.progress(_progress(args.quiet))
        problems = check_repository(spec, args.output, progress=progress)
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
    _add_build_only_args(parser)
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
    repository: Path | RepositoryURI = (
        parse_repository_uri(args.repository)
        if is_uri(args.repository)
        else Path(args.repository).resolve()
    )
    check_served_repository(repository)  # before anything starts or prints
    chosen = [args.http_port, args.grpc_port, args.metrics_port]
    spare = iter(free_ports(3))
    ports = Ports(*[port or next(spare) for port in chosen])
    server = LocalServer(
        repository,
        ports=ports,
        host=args.host,
        model_control=args.model_control,
        extra_args=tuple(args.tritonserver_args),
        log_path=args.log_file,
        keep_log=args.keep_log,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # further signals must not cut the shutdown short (it is bounded: see LocalServer.stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        print(f"starting tritonserver on {repository} (log: {server.log_path})", flush=True)
        server.start(timeout=args.timeout)
        return _serve_until_stopped(server, args)
    except KeyboardInterrupt:
        print("stopping tritonserver", file=sys.stderr, flush=True)
        return 0
    finally:
        server.close()
        if server.log_kept and server.log_path.exists():
            print(f"tritonserver log kept: {server.log_path}", file=sys.stderr, flush=True)


def _report(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _serve_until_stopped(server: LocalServer, args: argparse.Namespace) -> int:
    """Probe every model once (ready means answering), then heal until stopped."""
    from builder.health import Healer, probe
    from clients import TritonClient

    with TritonClient(server.http_url, timeout=60.0) as client:
        broken = [r for r in probe(client) if not r.ok]
        if broken:
            for result in broken:
                _report(f"error: model {result.model!r} does not answer: {result.detail}")
            return EXIT_FAILED
        heals = args.heal_interval > 0 and args.model_control == "explicit"
        healer = Healer(client, args.heal_interval, _report) if heals else None
        print(
            f"ready: HTTP {server.http_url}  gRPC {server.grpc_url}  "
            f"metrics {server.metrics_url}  (every model answered a probe; Ctrl-C stops)",
            flush=True,
        )
        if healer is not None:
            healer.start()
        try:
            while (code := server.poll()) is None:
                if healer is not None and healer.failed.wait(0.5):
                    _report(f"error: {healer.failure}; stopping so that a supervisor restarts it")
                    return EXIT_FAILED
                if healer is None:
                    time.sleep(0.5)
        finally:
            if healer is not None:
                healer.stop()
    print(f"tritonserver exited with code {code}; log: {server.log_path}", file=sys.stderr)
    return code or 1


def _probe(args: argparse.Namespace) -> int:
    from builder.health import probe
    from clients import ClientError, TritonClient

    try:
        with TritonClient(args.url, args.protocol, timeout=args.timeout) as client:
            results = probe(client, args.timeout, tuple(args.model))
    except ClientError as exc:
        print(f"FAIL {args.url}: {exc}")
        return EXIT_FAILED
    for result in results:
        mark = "skip" if result.skipped else ("ok  " if result.ok else "FAIL")
        if not args.quiet or not result.ok:
            print(f"{mark} {result.model}: {result.detail}")
    failed = [r.model for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} model(s) do not answer: {', '.join(failed)}")
        return EXIT_FAILED
    if not args.quiet:
        print(f"{len(results)} model(s) answer")
    return EXIT_OK


def _deploy(args: argparse.Namespace) -> int:
    from builder.deploy import KUBERNETES_VERSIONS, plan_deployment, render_manifests
    from builder.deploy import write_manifests as write_deploy
    from builder.storage import fetch_manifest

    spec = load_spec(args.spec)
    repository = parse_repository_uri(args.repository)
    manifest = None if args.offline else fetch_manifest(repository)
    plan = plan_deployment(
        spec,
        args.target,
        repository,
        name=args.name,
        image=args.image,
        front=not args.no_front,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        queue_target_us=args.queue_target_us,
        manifest=manifest,
    )
    for path in write_deploy(render_manifests(plan), args.output):
        print(path)
    checked = "offline: not read" if manifest is None else "its manifest lists the spec's models"
    print(
        f"{len(plan.models)} model(s) from {repository} ({checked}); {args.target} manifests "
        f"for Kubernetes {KUBERNETES_VERSIONS[0]}-{KUBERNETES_VERSIONS[-1]}; "
        f"{'GPU requests: ' + str(plan.gpus) + ' per replica' if plan.gpus else 'CPU only'}",
        file=sys.stderr,
    )
    return EXIT_OK


_DEPLOY_HELP = """\
Render Kubernetes manifests that serve a repository uploaded with `build-repo --upload`.

--target kubernetes: a Deployment of tritonserver reading URI (the image the Dockerfile
builds: it carries the Python members' packages and triton-pack's probe), with GPU requests
when a model of SPEC has target gpu; startup, readiness and liveness probes that run a real
inference on every model (`triton-pack probe`); a Service (HTTP, gRPC, metrics); a
PodDisruptionBudget; an HPA on queue time per request, with the prometheus-adapter rule that
computes it written to prometheus-adapter-values.yaml.
--target kserve: an InferenceService on KServe's Triton runtime with storageUri, the same
probes, and the same HPA (autoscalerClass external) on its predictor.
Both: the API front (`triton-pack api`) as its own Deployment and Service, with SPEC in a
ConfigMap and API keys from the Secret <name>-api-keys (--no-front leaves it out). S3
credentials come from the Secret <name>-s3 (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION), which you create.

examples:
  triton-pack deploy models.yaml --target kubernetes \\
      --repository s3://bucket/models/3f5647ec3c8bfecf -o deploy/
  triton-pack deploy models.yaml --target kserve --repository s3://… -o deploy/ --no-front
"""


def _add_deploy_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = commands.add_parser(
        "deploy",
        help="render Kubernetes or KServe manifests for an uploaded repository",
        description=_DEPLOY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    deploy.add_argument("spec", type=Path, metavar="SPEC", help="the YAML spec it was built from")
    deploy.add_argument("--target", choices=("kubernetes", "kserve"), required=True)
    deploy.add_argument(
        "--repository",
        required=True,
        metavar="URI",
        help="the URI `build-repo SPEC --upload` printed (its manifest is read to check it)",
    )
    deploy.add_argument("-o", "--output", type=Path, required=True, help="folder to write into")
    deploy.add_argument(
        "--name", default="triton-pack", help="base of every resource name (default %(default)s)"
    )
    deploy.add_argument(
        "--image",
        default="triton-pack-models:latest",
        help="the image the Dockerfile builds, pushed where the cluster pulls (default "
        "%(default)s)",
    )
    deploy.add_argument("--no-front", action="store_true", help="leave the API front out")
    deploy.add_argument("--min-replicas", type=_positive_int, default=1)
    deploy.add_argument("--max-replicas", type=_positive_int, default=4)
    deploy.add_argument(
        "--queue-target-us",
        type=_positive_int,
        default=5000,
        help="the HPA's target queue time per request, µs (default %(default)s)",
    )
    deploy.add_argument(
        "--offline",
        action="store_true",
        help="do not read the repository's manifest (no credentials needed); the URI is "
        "then not checked to hold a finished upload of SPEC",
    )
    _add_debug(deploy)
    deploy.set_defaults(func=_deploy)


def _verify(args: argparse.Namespace) -> int:
    from builder.verify import SAMPLE_TEXTS, verify_spec
    from clients import ClientError

    spec = load_spec(args.spec)
    texts = list(SAMPLE_TEXTS)
    if args.texts is not None:
        try:
            extra = args.texts.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BuildError(f"--texts {args.texts}: cannot read it: {exc}") from None
        texts += [line for line in extra if line.strip()]
    try:
        verdicts = verify_spec(
            spec,
            args.url,
            args.protocol,
            texts,
            min_cosine=args.min_cosine,
            max_score_diff=args.max_score_diff,
            progress=_progress(args.quiet),
        )
    except ClientError as exc:
        raise BuildError(f"verify against {args.url}: {exc}") from None
    for verdict in verdicts:
        print(f"{'ok  ' if verdict.ok else 'FAIL'} {verdict.model}: {verdict.summary}")
    failed = [v.model for v in verdicts if not v.ok]
    if failed:
        print(f"{len(failed)} model(s) differ from their source: {', '.join(failed)}")
        return EXIT_FAILED
    print(f"{len(verdicts)} model(s) served equal to their source models")
    return EXIT_OK


_VERIFY_HELP = """\
Check a running server against the source models: send sample texts (unicode, empty, longer
than max_sequence_length, plus --texts FILE, one per line) to every encoder model of SPEC,
compute the source model's own answer in-process (sentence-transformers `encode` for a
sentence-transformers folder served with its own settings; transformers otherwise) and print
per model the worst cosine, or the worst score difference and the label mismatches.
Exit 1 when a model is past its bound.

example:
  triton-pack serve &                        # or any server with the built repository
  triton-pack verify models.yaml --url localhost:8000
"""


def _levels(value: str) -> tuple[int, ...]:
    """``1,2,4`` -> (1, 2, 4): concurrency levels, each >= 1, sorted, once each."""
    try:
        levels = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected numbers such as 1,2,4,8") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: concurrency levels are numbers >= 1")
    return tuple(levels)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0.3 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{value}: give between 0.3 and 3600 seconds")
    return seconds


def _corpus(args: argparse.Namespace) -> tuple[tuple[str, ...], str]:
    if args.corpus is None:
        return DEFAULT_CORPUS, "built-in"
    return read_corpus(args.corpus), str(args.corpus)


def _profile(args: argparse.Namespace) -> int:
    target = read_target(args.target)
    model = pick_model(target, args.model)
    texts, corpus = _corpus(args)
    require_matplotlib()
    sweep = Sweep(args.concurrency, args.seconds, texts, corpus)
    with perf_analyzer() as pa, _Signals().installed():  # SIGTERM stops a local server too
        result = profile(pa, target, model, args.url, args.protocol, sweep, _progress(args.quiet))
    paths = write_report(result, args.output or Path("profile") / model)
    print(f"{model} ({result.protocol}, {result.seconds:g} s per level)")
    print(markdown_table(result.points), end="")
    print("wrote " + ", ".join(str(path) for path in paths))
    return EXIT_OK


_PROFILE_HELP = """\
Measure a served model's throughput and latency with Triton's perf_analyzer (from the
tritonclient 2.51 wheel) over a sweep of concurrency levels: one perf_analyzer run per
level, about --seconds long, each request one text taken in turn from --corpus (one text a
line; a built-in corpus of varied-length English sentences otherwise).

TARGET is a spec file (its repository and model names) or a repository folder. With --url,
the server running there is measured; without it, TARGET's repository is served with a local
tritonserver for the duration. MODEL may be left out when TARGET has one model.

Writes, in -o DIR (default profile/<model>/): profile.json (every level's texts/s and
p50/p90/p95/p99 latency in ms), profile.md (the table) and profile.png (throughput and
p50/p99 latency against concurrency). Prints a line per level as it goes, then the table.

examples:
  triton-pack profile models.yaml minilm                     serve model_repository/ meanwhile
  triton-pack profile models.yaml minilm --url localhost:8000 --concurrency 1,4,16 --seconds 10
  triton-pack profile model_repository minilm --corpus texts.txt -o /tmp/minilm-profile

exit codes: 0 ok, 1 the repository cannot be served (message says why), 2 usage, an unknown
  model (the known ones are listed), an unreachable server, perf_analyzer missing or failing
  (its own error is quoted)
"""


def _add_profile_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    profile = commands.add_parser(
        "profile",
        help="measure throughput and p50/p99 latency over concurrency levels (perf_analyzer)",
        description=_PROFILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    profile.add_argument("target", type=Path, metavar="SPEC|REPO", help="spec file or repository")
    profile.add_argument("model", nargs="?", default=None, metavar="MODEL", help="model to measure")
    profile.add_argument(
        "--url",
        default=None,
        help="a running server (host:port); default: serve the repository locally meanwhile",
    )
    profile.add_argument("--protocol", choices=("http", "grpc"), default="http")
    profile.add_argument(
        "--corpus", type=Path, default=None, help="texts to send, one per line (default built-in)"
    )
    profile.add_argument(
        "--concurrency",
        type=_levels,
        default=DEFAULT_LEVELS,
        help="requests in flight, one level a run (default 1,2,4,8,16)",
    )
    profile.add_argument(
        "--seconds", type=_seconds, default=5.0, help="measured per level (default %(default)s)"
    )
    profile.add_argument(
        "-o", "--output", type=Path, default=None, help="folder (default profile/<model>/)"
    )
    profile.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    _add_debug(profile)
    profile.set_defaults(func=_profile)


def _axis(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from one of builder.tune's parsers (their ValueError is the message)."""

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _tune_measure(
    args: argparse.Namespace,
) -> tuple[Spec, ModelSpec, list[Candidate], TuneResult]:
    """Plan the candidates, measure them, write tune.json and tune.md; print the table."""
    target = read_target(args.spec)
    if not args.spec.is_file():
        raise ProfileError(f"{args.spec}: tune needs the spec file (it builds the candidates)")
    spec = load_spec(args.spec)
    model = next(m for m in spec.models if m.name == pick_model(target, args.model))
    axes = Axes(args.instances, args.threads, args.max_queue_delay_us, args.preferred, args.bucket)
    candidates, skipped = plan_candidates(spec, model, axes)
    progress = _progress(args.quiet)
    for reason in skipped:
        progress(f"skipped: {reason}")
    texts, corpus = _corpus(args)
    sweep = Sweep((args.concurrency,), args.seconds, texts, corpus)
    with perf_analyzer() as pa, _Signals().installed():
        progress(
            f"tuning {model.name!r}: {len(candidates)} candidate(s) at concurrency "
            f"{args.concurrency}, {args.seconds:g} s each"
        )
        trials = run_trials(pa, spec, candidates, sweep, pa.workdir, progress)
    result = TuneResult(
        model.name, str(args.spec), args.concurrency, args.seconds, args.p99_ms,
        tuple(trials), choose(trials, args.p99_ms), tuple(skipped),
    )  # fmt: skip
    paths = write_tune_report(result, args.output or Path("tune") / model.name)
    print(tune_table(result), end="")
    print("wrote " + ", ".join(str(path) for path in paths))
    return spec, model, candidates, result


def _tune(args: argparse.Namespace) -> int:
    spec, model, candidates, result = _tune_measure(args)
    if result.winner is None:
        bound = f"within p99 <= {args.p99_ms:g} ms" if args.p99_ms is not None else "measured"
        print(f"no candidate {bound}; {args.spec} unchanged", file=sys.stderr)
        return EXIT_FAILED
    number, best = result.winner + 1, candidates[result.winner].model
    if args.dry_run:
        would = describe_changes(changes(model, best))
        print(
            f"winner: #{number}; dry run, {args.spec} unchanged"
            + (f" (the winner would set {', '.join(would)})" if would else "")
        )
        return EXIT_OK
    written = describe_changes(write_winner(spec, model, best))
    if written:
        print(f"winner: #{number}; wrote into {args.spec}: {', '.join(written)}")
    else:
        print(f"winner: #{number}; {args.spec} already has its settings")
    return EXIT_OK


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 1")
    return number


def _milliseconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of milliseconds") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value}: must be a positive number")
    return number


_TUNE_HELP = """\
Try serving settings of one model of SPEC and keep the fastest: for every combination of
the values given (ONNX instances x ONNX Runtime threads x max queue delay x preferred batch
sizes x the tokenizer's length bucket), build the model into a temporary repository (the
ONNX export is made once and reused), serve it with a local tritonserver, and measure it
with perf_analyzer at --concurrency for --seconds. The winner has the highest throughput
among the candidates whose p99 latency is within --p99-ms (all, without it).

Prints a line per candidate as it goes, then the table of all of them with the winner
marked; writes tune.json and tune.md in -o DIR (default tune/<model>/). Then writes the
winner's keys into SPEC's entry for the model, changing only those values (comments and
the other entries stay as written), unless --dry-run.

examples:
  triton-pack tune models.yaml minilm --p99-ms 100
  triton-pack tune models.yaml minilm --instances 1,2,3 --threads auto,1 \\
      --max-queue-delay-us 0,2000 --preferred 'none;4,8;16' --bucket 8 --dry-run

exit codes: 0 ok, 1 no candidate within the bound (or a build failure), 2 usage, an unknown
  model, perf_analyzer missing or failing
"""


def _add_tune_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tune = commands.add_parser(
        "tune",
        help="build, serve and profile candidate settings; write the fastest into the spec",
        description=_TUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tune.add_argument("spec", type=Path, metavar="SPEC", help="the YAML spec")
    tune.add_argument("model", nargs="?", default=None, metavar="MODEL", help="the model to tune")
    default = Axes()
    tune.add_argument(
        "--instances",
        type=_axis(lambda value: parse_ints(value, 1)),
        default=default.instances,
        help="ONNX instance counts (default 1,2)",
    )
    tune.add_argument(
        "--threads",
        type=_axis(parse_threads),
        default=default.threads,
        help="ONNX Runtime threads per instance; auto: cores // instances (default auto)",
    )
    tune.add_argument(
        "--max-queue-delay-us",
        type=_axis(lambda value: parse_ints(value, 0)),
        default=default.max_queue_delay_us,
        help="dynamic batcher delays in microseconds (default 0,1000)",
    )
    tune.add_argument(
        "--preferred",
        type=_axis(parse_preferred),
        default=default.preferred,
        help="sets of preferred batch sizes, separated by ';' (default 'none;8,16')",
    )
    tune.add_argument(
        "--bucket",
        type=_axis(lambda value: parse_ints(value, 1)),
        default=default.bucket,
        help="tokenizer.bucket values: pad to a multiple of this many tokens (default 1,16)",
    )
    tune.add_argument(
        "--concurrency",
        type=_positive_int,
        default=16,
        help="requests in flight while measuring (default %(default)s)",
    )
    tune.add_argument(
        "--p99-ms", type=_milliseconds, default=None, help="p99 latency bound in ms (default none)"
    )
    tune.add_argument(
        "--seconds", type=_seconds, default=5.0, help="measured per candidate (default 5)"
    )
    tune.add_argument(
        "--corpus", type=Path, default=None, help="texts to send, one per line (default built-in)"
    )
    tune.add_argument(
        "-o", "--output", type=Path, default=None, help="folder (default tune/<model>/)"
    )
    tune.add_argument("--dry-run", action="store_true", help="leave SPEC unchanged")
    tune.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    _add_debug(tune)
    tune.set_defaults(func=_tune)


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
    _add_build_only_args(build)
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
            "Run tritonserver over REPOSITORY, a folder or an S3 URI (s3://bucket/prefix, "
            "s3://host:port/bucket/prefix; AWS credentials and region from the environment; "
            "its manifest.json must be there, so a half-uploaded build is refused) with the "
            "tritonserver on PATH (NGC image) or the one in the nvidia-pytriton wheel, with "
            "triton-pack's Python stand-ins for backends the server lacks (onnxruntime). "
            "Prints one line with the URLs when every model is ready; if a model fails to "
            "load, prints Triton's error and exits 1. "
            "Ctrl-C or SIGTERM stops the server and its stubs within 10 s (exit 0). "
            "Arguments after `--` go to tritonserver unchanged."
        ),
    )
    serve.add_argument(
        "repository",
        nargs="?",
        default="model_repository",
        metavar="REPOSITORY",
        help="a built repository folder (default model_repository) or an S3 URI that "
        "`build-repo --upload` printed",
    )
    serve.add_argument("--http-port", type=_port, default=8000, help="0 picks a free port")
    serve.add_argument("--grpc-port", type=_port, default=8001, help="0 picks a free port")
    serve.add_argument("--metrics-port", type=_port, default=8002, help="0 picks a free port")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--model-control",
        choices=("none", "explicit"),
        default="explicit",
        help="explicit (default): load every model at start and allow load/unload over the "
        "API (healing reloads through it); none: Triton's static mode, no healing",
    )
    serve.add_argument(
        "--heal-interval",
        type=float,
        default=10.0,
        help="seconds between canary inferences on every model; a model whose stub died is "
        "reloaded (0 turns healing off; needs --model-control explicit)",
    )
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for ready")
    serve.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="write tritonserver's log here and keep it (default: a temporary file, kept "
        "only after a failure or with --keep-log)",
    )
    serve.add_argument(
        "--keep-log", action="store_true", help="keep the temporary log after a clean stop"
    )
    _add_debug(serve)
    serve.set_defaults(func=_serve)

    probe_cmd = commands.add_parser(
        "probe",
        help="exit 0 if every model of a running server answers a real inference",
        description=(
            "Send one canary inference (built from each model's own metadata) to every READY "
            "model of the server at --url and print one line per model; exit 1 if any does "
            "not answer. Triton's ready flag stays 200 when a Python stub died; this does not. "
            "Usable as a Kubernetes exec liveness/readiness probe."
        ),
    )
    probe_cmd.add_argument("--url", default="localhost:8000", help="default %(default)s")
    probe_cmd.add_argument("--protocol", choices=("http", "grpc"), default="http")
    probe_cmd.add_argument("--timeout", type=float, default=10.0, help="seconds per model")
    probe_cmd.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME",
        help="probe only this model (repeatable); it fails if the repository does not list it "
        "(default: every READY model)",
    )
    probe_cmd.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    _add_debug(probe_cmd)
    probe_cmd.set_defaults(func=_probe)

    verify = commands.add_parser(
        "verify",
        help="check a running server's answers against the source models",
        description=_VERIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("spec", type=Path, help="the YAML spec the repository was built from")
    verify.add_argument("--url", default="localhost:8000", help="the server (default %(default)s)")
    verify.add_argument("--protocol", choices=("http", "grpc"), default="http")
    verify.add_argument("--texts", type=Path, default=None, help="more texts, one per line")
    verify.add_argument(
        "--min-cosine", type=float, default=0.9999, help="embeddings (default %(default)s)"
    )
    verify.add_argument(
        "--max-score-diff",
        type=float,
        default=1e-3,
        help="classification probabilities (default %(default)s)",
    )
    verify.add_argument("-q", "--quiet", action="store_true", help="print only the verdicts")
    _add_debug(verify)
    verify.set_defaults(func=_verify)

    _add_profile_parser(commands)
    _add_tune_parser(commands)
    _add_deploy_parser(commands)
    add_api_parser(commands, _add_debug)

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


def _run(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return int(func(args))
    except BuildError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        # profile/tune: the command's inputs (a model, a URL, perf_analyzer) are wrong
        return EXIT_USAGE if isinstance(exc, ProfileError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Stopped as exc:
        print(f"stopped by {exc}", file=sys.stderr)
        return 128 + exc.signum
    except OSError as exc:  # a folder that cannot be written, a full disk: the user's to fix
        if args.debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug, not a user's mistake: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (a bug in triton-pack; run again "
            "with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
