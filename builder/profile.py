"""``triton-pack profile``: a served model's throughput and latency, measured by perf_analyzer.

The load generator is Triton's own ``perf_analyzer`` (the binary in the tritonclient 2.51
wheel, or one on PATH as in the NGC SDK image): one run per concurrency level, each over
three time windows of ``seconds / 3``, one text per request drawn in turn from a corpus
(``input_data``: perf_analyzer's ``--input-data`` JSON). Its CSV report (``-f``) gives the
throughput and the p50/p90/p95/p99 client latencies (``parse_csv``), which become a
``ProfileResult`` and then ``profile.json``, ``profile.md`` and ``profile.png``
(``write_report``; matplotlib without pyplot, so no display is needed).

The wheel's perf_analyzer asks for ``libb64.so.0d`` and ``libcudart.so.12``; the
nvidia-pytriton wheel ships both under hashed names, so ``perf_analyzer()`` links them under
the names asked for in a temporary folder put on ``LD_LIBRARY_PATH``.

What ``profile`` is pointed at (``read_target``) is a spec file or a repository folder: it
names the models that can be profiled (encoder ensembles: one text in). Everything that makes
a measurement impossible (unknown model, unreachable server, perf_analyzer missing or
failing) is a ``ProfileError`` saying what to do.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import ProfileError
from builder.manifest import read_manifest
from builder.spec import load_spec

if TYPE_CHECKING:
    from clients.types import TensorSpec

__all__ = [
    "DEFAULT_CORPUS",
    "DEFAULT_LEVELS",
    "Load",
    "PerfAnalyzer",
    "ProfilePoint",
    "ProfileResult",
    "Sweep",
    "Target",
    "check_served_model",
    "input_data",
    "markdown_table",
    "measure",
    "parse_csv",
    "perf_analyzer",
    "pick_model",
    "profile",
    "read_corpus",
    "read_target",
    "require_matplotlib",
    "run_sweep",
    "served",
    "write_report",
]

Progress = Callable[[str], None]

DEFAULT_LEVELS = (1, 2, 4, 8, 16)
# perf_analyzer reports a level once three windows in a row agree within
# --stability-percentage (max/min of throughput and of p99 latency); with a huge percentage
# the first three do, so a level takes three windows of seconds / 3
WINDOWS = 3
WARM_UP = 8  # requests sent before the first level
STABILITY_PERCENT = "1000000"
_LIBRARIES = (("libb64-*.so.0d", "libb64.so.0d"), ("libcudart-*.so.12*", "libcudart.so.12"))
_INSTALL = (
    "perf_analyzer comes with the tritonclient 2.51 wheel (pip install "
    "'tritonclient[http,grpc]==2.51.0'; its libraries with 'triton-pack[local]') or the NGC "
    "tritonserver SDK image"
)

# Varied lengths, from a few words to a long paragraph: what an embedding service meets.
DEFAULT_CORPUS = (
    "Hello world.",
    "The weather is nice today.",
    "Where is the nearest train station?",
    "Please send me the report by Friday afternoon.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Our team shipped the new search feature after three weeks of testing.",
    "I ordered a coffee and a croissant, but the waiter brought me tea instead.",
    "Can you recommend a good book about the history of mathematics?",
    "The museum opens at nine in the morning and closes at six in the evening, except on Mondays.",
    "Customer reported that the mobile app crashes whenever they try to upload a photo "
    "larger than ten megabytes.",
    "Photosynthesis converts light energy into chemical energy that plants store as sugar.",
    "The committee will meet next Tuesday to review the budget proposals for the coming "
    "fiscal year and to vote on the new hiring plan.",
    "Thanks!",
    "Is this product available in blue?",
    "After the storm passed, the neighbours gathered in the street to clear fallen branches "
    "and check on the elderly couple who lived at the corner.",
    "Machine learning models are only as good as the data they are trained on.",
    "The train to Edinburgh was delayed by forty minutes because of signal problems near "
    "York, and many passengers missed their connections.",
    "Remember to water the plants while I am away.",
    "A good night's sleep improves memory, mood and concentration.",
    "The contract states that either party may terminate the agreement with thirty days of "
    "written notice, provided that all outstanding invoices have been paid in full and that "
    "any confidential material has been returned or destroyed.",
    "She learned to play the violin at the age of six and gave her first concert at twelve.",
    "How do I reset my password?",
    "The old lighthouse on the cliff has guided ships safely into the harbour for more than "
    "two hundred years, and it still works today thanks to volunteers who maintain it.",
    "Add two cups of flour, a pinch of salt and one egg, then stir until smooth.",
    "The server returned an error because the request was missing an authentication token.",
    "Every spring the valley fills with wild flowers, and hikers come from far away to walk "
    "the trails, photograph the meadows and camp beside the lake. The rangers ask visitors "
    "to stay on the marked paths, to carry their rubbish home and to keep dogs on a lead, "
    "because the ground-nesting birds are easily disturbed during the breeding season, which "
    "lasts from April until the end of July.",
    "Great service, friendly staff, would come again.",
    "The price of the ticket includes breakfast and a guided tour of the old town.",
    "Our quarterly revenue grew by twelve percent, driven mostly by new customers in Europe "
    "and a strong holiday season.",
    "Let's meet at noon.",
    "The library will be closed for renovation from the first of June until the middle of "
    "September; during that time books can be returned at the community centre.",
    "Why is the sky blue during the day and red at sunset?",
)


@dataclass(frozen=True)
class ProfilePoint:
    """One concurrency level: texts (requests of one text) per second and client latencies."""

    concurrency: int
    throughput: float  # texts/s
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float

    def describe(self) -> str:
        return (
            f"{self.throughput:.1f} texts/s, p50 {self.p50_ms:.1f} ms, "
            f"p90 {self.p90_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"
        )


@dataclass(frozen=True)
class ProfileResult:
    model: str
    url: str
    protocol: str
    seconds: float  # per concurrency level
    corpus: str  # its path, or "built-in"
    texts: int
    perf_analyzer: str  # its version line
    points: tuple[ProfilePoint, ...]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["points"] = [asdict(point) for point in self.points]
        data["units"] = {"throughput": "texts/s (one text per request)", "latency": "ms"}
        return data


# --- inputs ------------------------------------------------------------------------------


def read_corpus(path: Path) -> tuple[str, ...]:
    """The texts of ``path``, one per line; blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"--corpus {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ProfileError(f"--corpus {path}: not UTF-8 text (byte {exc.start})") from None
    texts = tuple(line for line in text.splitlines() if line.strip())
    if not texts:
        raise ProfileError(f"--corpus {path}: holds no text (one text per line)")
    return texts


def input_data(texts: Sequence[str], input_names: str | Sequence[str] = "TEXT") -> dict[str, Any]:
    """perf_analyzer's ``--input-data`` JSON: one step per text, a BYTES tensor of shape [1]
    per input (perf_analyzer adds the batch dimension, so each request is one text, or one
    pair). A model of several text inputs (a pair classifier's TEXT and TEXT_PAIR, a
    reranker's QUERY and TEXT) gets step i's k-th input from text i + k of the corpus."""
    if not texts:
        raise ProfileError("no texts to send")
    names = (input_names,) if isinstance(input_names, str) else tuple(input_names)
    count = len(texts)
    return {
        "data": [
            {
                name: {"content": [texts[(i + k) % count]], "shape": [1]}
                for k, name in enumerate(names)
            }
            for i in range(count)
        ]
    }


# --- targets: what the first argument names ----------------------------------------------


@dataclass(frozen=True)
class Target:
    """A spec file or a repository folder, the repository it serves, and its models."""

    path: Path
    repository: Path
    models: tuple[str, ...]  # what can be profiled: one text in
    others: tuple[tuple[str, str], ...] = ()  # (name, why it cannot be profiled)


_GENERATION = "a text-generation model (profile sends one text to an encoder ensemble)"


def read_target(path: Path) -> Target:
    """Read a spec file (its models and repository) or a repository folder (its models)."""
    if path.is_file():
        spec = load_spec(path)
        encoders = tuple(m.name for m in spec.models if m.task != "text-generation")
        others = tuple((m.name, _GENERATION) for m in spec.models if m.task == "text-generation")
        return Target(path, spec.repository_dir, encoders, others)
    if not path.is_dir():
        raise ProfileError(f"{path}: no such spec file or repository folder")
    manifest = read_manifest(path)
    if manifest is not None:
        records = sorted(manifest.models.items())
        encoders = tuple(name for name, r in records if r.task != "text-generation")
        others = tuple((name, _GENERATION) for name, r in records if r.task == "text-generation")
        return Target(path, path.resolve(), encoders, others)
    plain = tuple(sorted(config.parent.name for config in path.glob("*/config.pbtxt")))
    if not plain:
        raise ProfileError(f"{path}: holds no models (no */config.pbtxt) and is not a spec file")
    return Target(path, path.resolve(), plain)


def pick_model(target: Target, name: str | None) -> str:
    """``name``, checked against the target's models; the only model when ``name`` is None."""
    known = ", ".join(target.models) or "none"
    if name is None:
        if len(target.models) == 1:
            return target.models[0]
        raise ProfileError(f"{target.path}: name the model to profile; it has: {known}")
    reasons = dict(target.others)
    if name in reasons:
        raise ProfileError(f"{target.path}: model {name!r} is {reasons[name]}")
    if name not in target.models:
        raise ProfileError(f"{target.path}: no model {name!r}; known models: {known}")
    return name


# --- perf_analyzer ------------------------------------------------------------------------


@dataclass(frozen=True)
class PerfAnalyzer:
    """A runnable perf_analyzer: its binary, environment, version and a scratch folder."""

    binary: Path
    env: dict[str, str]
    version: str
    workdir: Path


def _find_binary(search: Sequence[Path] | None) -> Path:
    folders = list(search) if search is not None else [Path(sysconfig.get_path("scripts"))]
    for folder in folders:
        candidate = folder / "perf_analyzer"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which("perf_analyzer") if search is None else None
    if on_path:
        return Path(on_path)
    looked = ", ".join(str(f) for f in folders) + (", PATH" if search is None else "")
    raise ProfileError(f"perf_analyzer not found (looked in {looked}); {_INSTALL}")


def _library_env(links: Path) -> dict[str, str]:
    """The environment with the wheel's libb64 and libcudart linked under the names wanted."""
    env = dict(os.environ)
    found = importlib_util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        return env  # e.g. the NGC SDK image, where the libraries are installed as such
    libs = Path(next(iter(found.submodule_search_locations))).parent / "nvidia_pytriton.libs"
    links.mkdir(parents=True, exist_ok=True)
    for pattern, name in _LIBRARIES:
        shipped = sorted(libs.glob(pattern))
        if shipped and not (links / name).exists():
            (links / name).symlink_to(shipped[0])
    dirs = [str(links), str(libs)] + (
        [env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []
    )
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
    return env


def _tail(*streams: str, lines: int = 12) -> str:
    """The last lines of the first stream that has any: ``<last line>\n  <lines before>``."""
    for stream in streams:
        kept = [line.rstrip() for line in stream.splitlines() if line.strip()][-lines:]
        if kept:
            return kept[-1].strip() + "".join(f"\n  {line}" for line in kept[:-1])
    return "(no output)"


@contextmanager
def perf_analyzer(search: Sequence[Path] | None = None) -> Iterator[PerfAnalyzer]:
    """Find perf_analyzer and check that it runs (``--version``); ``search``: the folders to
    look in instead of this environment's scripts folder and PATH."""
    binary = _find_binary(search)
    with tempfile.TemporaryDirectory(prefix="triton-pack-profile-") as scratch:
        workdir = Path(scratch)
        env = _library_env(workdir / "libs")
        try:
            done = subprocess.run(
                [str(binary), "--version"], env=env, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProfileError(f"{binary} does not run: {exc}") from None
        if done.returncode != 0:
            raise ProfileError(
                f"{binary} does not run (exit {done.returncode}): "
                + _tail(done.stderr, done.stdout)
                + f"\n{_INSTALL}"
            )
        version = (done.stdout + done.stderr).strip().splitlines()
        yield PerfAnalyzer(binary, env, version[0] if version else "perf_analyzer", workdir)


_COLUMNS = {
    "concurrency": "Concurrency",
    "throughput": "Inferences/Second",
    "p50": "p50 latency",
    "p90": "p90 latency",
    "p95": "p95 latency",
    "p99": "p99 latency",
}


def parse_csv(text: str) -> list[ProfilePoint]:
    """The rows of perf_analyzer's ``-f`` CSV (latencies in microseconds) as points."""
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or ())
    rows = list(reader)
    missing = [column for column in _COLUMNS.values() if column not in header]
    if not rows or missing:
        shown = ", ".join(header) or "nothing"
        raise ProfileError(
            f"perf_analyzer's CSV report lacks {', '.join(missing) or 'rows'} (it has: {shown})"
        )
    points = []
    for row in rows:
        try:
            values = {key: float(row[column]) for key, column in _COLUMNS.items()}
        except (TypeError, ValueError):
            raise ProfileError(f"perf_analyzer's CSV report has a bad row: {row}") from None
        points.append(
            ProfilePoint(
                concurrency=int(values["concurrency"]),
                throughput=values["throughput"],
                p50_ms=values["p50"] / 1000,
                p90_ms=values["p90"] / 1000,
                p95_ms=values["p95"] / 1000,
                p99_ms=values["p99"] / 1000,
            )
        )
    return points


@dataclass(frozen=True)
class Load:
    """Where and what perf_analyzer sends: the server, the model and the input-data file."""

    address: str  # host:port, no scheme
    protocol: str
    model: str
    data: Path


def measure(pa: PerfAnalyzer, load: Load, concurrency: int, seconds: float) -> ProfilePoint:
    """One perf_analyzer run at ``concurrency``, about ``seconds`` long."""
    report = pa.workdir / f"concurrency-{concurrency}.csv"
    report.unlink(missing_ok=True)  # perf_analyzer leaves an old report when it fails
    window_ms = max(100, round(seconds * 1000 / WINDOWS))
    command = [
        str(pa.binary), "-m", load.model, "-u", load.address, "-i", load.protocol,
        "-b", "1", "--concurrency-range", f"{concurrency}:{concurrency}",
        "--input-data", str(load.data), "--measurement-mode", "time_windows",
        "--measurement-interval", str(window_ms), "--max-trials", str(WINDOWS),
        "--stability-percentage", STABILITY_PERCENT, "--percentile", "99", "-f", str(report),
    ]  # fmt: skip
    limit = seconds * 4 + 120  # windows wait for the requests in flight; a hung server does not
    try:
        done = subprocess.run(command, env=pa.env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        raise ProfileError(
            f"perf_analyzer did not finish concurrency {concurrency} within {limit:.0f} s "
            f"(is {load.model!r} at {load.address} answering?)"
        ) from None
    if done.returncode != 0 or not report.is_file():
        raise ProfileError(
            f"perf_analyzer failed at concurrency {concurrency} (exit {done.returncode}): "
            + _tail(done.stderr, done.stdout)
        )
    points = [
        p for p in parse_csv(report.read_text(encoding="utf-8")) if p.concurrency == concurrency
    ]
    if not points:
        raise ProfileError(f"perf_analyzer's report has no row for concurrency {concurrency}")
    return points[0]


# --- the server ---------------------------------------------------------------------------


def check_served_model(url: str, protocol: str, model: str) -> tuple[str, tuple[TensorSpec, ...]]:
    """The perf_analyzer address (host:port) of ``url`` and the model's text inputs (one, or
    two for pair tasks); ProfileError when the server does not answer, lacks the model or the
    model takes something other than texts."""
    from clients import ClientError, RetryPolicy, TransportError, TritonClient
    from clients.endpoints import check_protocol, parse_endpoint

    try:
        chosen = check_protocol(protocol)
        endpoint = parse_endpoint(url, chosen)
    except ClientError as exc:
        raise ProfileError(f"--url {url}: {exc}") from None
    if endpoint.ssl:
        raise ProfileError(f"--url {url}: profile runs perf_analyzer without TLS; give a plain URL")
    try:
        with TritonClient(url, chosen, timeout=10.0, retry=RetryPolicy(deadline=0)) as client:
            index = client.repository_index()
            ready = sorted(entry.name for entry in index if entry.state == "READY")
            if model not in ready:
                raise ProfileError(
                    f"the server at {url} has no ready model {model!r}; ready models: "
                    f"{', '.join(ready) or 'none'}"
                )
            inputs = client.model_metadata(model).inputs
            decoupled = client.model_config(model).decoupled
    except TransportError as exc:
        raise ProfileError(f"no server answers at {url} ({protocol}): {exc}") from None
    except ClientError as exc:
        raise ProfileError(f"cannot profile at {url} ({protocol}): {exc}") from None
    texts = tuple(spec for spec in inputs if spec.datatype == "BYTES")
    if decoupled or not texts or len(texts) != len(inputs) or len(texts) > 2:
        shown = ", ".join(f"{s.name} {s.datatype}" for s in inputs)
        raise ProfileError(
            f"model {model!r} does not take one text (or one pair) per request (inputs: "
            f"{shown}{'; decoupled' if decoupled else ''}); profile measures encoder ensembles"
        )
    return endpoint.address, texts


def warm_up(
    url: str, protocol: str, model: str, text_inputs: Sequence[TensorSpec], texts: Sequence[str]
) -> None:
    """A few requests of one text before measuring: the first ones after a load pay for lazy
    set-up (ONNX Runtime's first runs, the Python members' first calls)."""
    import numpy as np

    from clients import ClientError, TritonClient
    from clients.endpoints import check_protocol

    try:
        with TritonClient(url, check_protocol(protocol), timeout=60.0) as client:
            for text in (list(texts) * WARM_UP)[:WARM_UP]:
                rows = {}
                for spec in text_inputs:
                    shape = tuple(1 if dim < 0 else dim for dim in spec.shape)  # [-1, 1] or [1]
                    rows[spec.name] = np.full(shape, text.encode("utf-8"), dtype=np.object_)
                client.infer(model, rows)
    except ClientError as exc:
        raise ProfileError(f"model {model!r} at {url} does not answer: {exc}") from None


@dataclass(frozen=True)
class Sweep:
    """What to measure: the concurrency levels, seconds per level, and the texts sent."""

    levels: tuple[int, ...]
    seconds: float
    texts: tuple[str, ...]
    corpus: str  # the corpus file, or "built-in"


def run_sweep(
    pa: PerfAnalyzer, url: str, protocol: str, model: str, sweep: Sweep, progress: Progress
) -> ProfileResult:
    """Check the server, then measure each concurrency level in turn (a line per level)."""
    address, text_inputs = check_served_model(url, protocol, model)
    warm_up(url, protocol, model, text_inputs, sweep.texts)
    data = pa.workdir / "input-data.json"
    names = [spec.name for spec in text_inputs]
    data.write_text(json.dumps(input_data(sweep.texts, names)), encoding="utf-8")
    load = Load(address, protocol, model, data)
    points = []
    for index, level in enumerate(sweep.levels):
        started = time.monotonic()
        point = measure(pa, load, level, sweep.seconds)
        took = time.monotonic() - started
        progress(
            f"  [{index + 1}/{len(sweep.levels)}] concurrency {level}: {point.describe()} "
            f"({took:.1f} s)"
        )
        points.append(point)
    return ProfileResult(
        model=model,
        url=url,
        protocol=protocol,
        seconds=sweep.seconds,
        corpus=sweep.corpus,
        texts=len(sweep.texts),
        perf_analyzer=pa.version,
        points=tuple(points),
    )


@contextmanager
def served(repository: Path, protocol: str, progress: Progress) -> Iterator[str]:
    """A LocalServer over ``repository`` for the duration; yields its URL for ``protocol``."""
    from builder.serve import LocalServer

    started = time.monotonic()
    progress(f"starting tritonserver over {repository}")
    with LocalServer(repository) as server:
        progress(f"  ready in {time.monotonic() - started:.1f} s")
        yield server.http_url if protocol == "http" else server.grpc_url


def profile(
    pa: PerfAnalyzer,
    target: Target,
    model: str,
    url: str | None,
    protocol: str,
    sweep: Sweep,
    progress: Progress,
) -> ProfileResult:
    """Sweep ``model`` at ``url``; without a URL, serve the target's repository meanwhile."""
    about = f"{len(sweep.levels)} level(s) x {sweep.seconds:g} s, {len(sweep.texts)} texts"
    if url is not None:
        progress(f"profiling {model!r} at {url} ({protocol}): {about}")
        return run_sweep(pa, url, protocol, model, sweep, progress)
    with served(target.repository, protocol, progress) as local:
        progress(f"profiling {model!r} at {local} ({protocol}): {about}")
        return run_sweep(pa, local, protocol, model, sweep, progress)


# --- the report ---------------------------------------------------------------------------


def require_matplotlib() -> None:
    if importlib_util.find_spec("matplotlib") is None:
        raise ProfileError(
            "matplotlib is not installed; profile draws profile.png with it "
            "(pip install 'triton-pack[profile]')"
        )


def markdown_table(points: Sequence[ProfilePoint]) -> str:
    lines = [
        "| concurrency | texts/s | p50 ms | p90 ms | p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in points:
        figures = (p.throughput, p.p50_ms, p.p90_ms, p.p99_ms)
        lines.append(f"| {p.concurrency} | " + " | ".join(f"{f:.1f}" for f in figures) + " |")
    return "\n".join(lines) + "\n"


def _markdown(result: ProfileResult) -> str:
    corpus = "the built-in corpus" if result.corpus == "built-in" else f"`{result.corpus}`"
    return (
        f"# Profile of `{result.model}`\n\n"
        f"{result.perf_analyzer}, {result.protocol} at {result.url}; one text per request from "
        f"{result.texts} texts of {corpus}; about {result.seconds:g} s per concurrency level.\n\n"
        + markdown_table(result.points)
    )


def _plot(result: ProfileResult, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display

    levels = [p.concurrency for p in result.points]
    figure = Figure(figsize=(10, 4), layout="constrained")
    speed, latency = figure.subplots(1, 2)
    speed.plot(levels, [p.throughput for p in result.points], marker="o", label="throughput")
    speed.set_ylabel("texts/s")
    speed.set_title("throughput")
    latency.plot(levels, [p.p50_ms for p in result.points], marker="o", label="p50")
    latency.plot(levels, [p.p99_ms for p in result.points], marker="s", label="p99")
    latency.set_ylabel("latency, ms")
    latency.set_title("latency")
    latency.legend()
    for axes in (speed, latency):
        axes.set_xscale("log", base=2)
        axes.set_xticks(levels, labels=[str(level) for level in levels])
        axes.minorticks_off()
        axes.set_xlabel("concurrency (requests in flight)")
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
    figure.suptitle(
        f"{result.model}: perf_analyzer, {result.protocol}, {result.seconds:g} s per level"
    )
    figure.savefig(path, dpi=100)


def write_report(result: ProfileResult, out: Path) -> tuple[Path, Path, Path]:
    """``profile.json``, ``profile.md`` and ``profile.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = dict(result.as_json(), created=datetime.now(UTC).isoformat(timespec="seconds"))
    paths = (out / "profile.json", out / "profile.md", out / "profile.png")
    paths[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(_markdown(result), encoding="utf-8")
    _plot(result, paths[2])
    return paths
