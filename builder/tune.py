"""``triton-pack tune``: build, serve and profile candidate settings; keep the fastest.

The candidates are the grid of a few serving settings of one spec entry (``Axes``): ONNX
instances x ONNX Runtime threads x the dynamic batcher's max queue delay x its preferred
batch sizes x the tokenizer's length bucket. Each is applied to the entry with pydantic's
``model_copy(update=...)`` and validated again (``Settings.apply``; a combination the spec
refuses, such as preferred sizes above ``max_batch_size``, is skipped with the reason).

Every candidate is built into the same temporary repository (``build_repository``: the export
cache keys only the export-relevant keys, so the ONNX files are exported once and then
hard-linked; when the spec's own repository holds a build of the model, its files seed the
temporary one and nothing is exported), served with ``LocalServer``, and measured with
perf_analyzer at one concurrency (``builder.profile``). ``choose`` keeps the highest
throughput among the candidates whose p99 latency is within the bound. ``write_winner``
writes the winner's keys into the spec file's text (``builder.spec_edit``: comments and other
entries stay as written) and checks that the file then loads as the winner.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from builder.errors import BuildError, ProfileError
from builder.manifest import MANIFEST, read_manifest
from builder.pipeline import build_repository
from builder.plan import onnx_threads
from builder.profile import PerfAnalyzer, ProfilePoint, Sweep, run_sweep
from builder.serve import LocalServer
from builder.spec import DynamicBatching, ModelSpec, Spec, parse_spec
from builder.spec_edit import flow, set_keys
from builder.write import link

__all__ = [
    "Axes",
    "Candidate",
    "Settings",
    "Trial",
    "TuneResult",
    "changes",
    "choose",
    "describe_changes",
    "markdown_table",
    "parse_ints",
    "parse_preferred",
    "parse_threads",
    "plan_candidates",
    "run_trials",
    "seed",
    "write_report",
    "write_winner",
]

Progress = Callable[[str], None]


# --- the candidates -----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """One candidate: the values of the tuned keys."""

    instances: int
    threads: int | None  # None: derived from the cores and instances ("auto")
    max_queue_delay_us: int
    preferred_batch_sizes: tuple[int, ...]
    bucket: int

    def apply(self, model: ModelSpec) -> ModelSpec:
        """``model`` with these settings, validated as the spec would be (ValidationError)."""
        batching = DynamicBatching(
            max_queue_delay_us=self.max_queue_delay_us,
            preferred_batch_sizes=self.preferred_batch_sizes,
        )
        candidate = model.model_copy(
            update={
                "instances": self.instances,
                "threads": self.threads,
                "dynamic_batching": batching,
                "tokenizer": model.tokenizer.model_copy(update={"bucket": self.bucket}),
            }
        )
        # model_copy does not validate: a round trip through the spec's own validation does.
        # Only the keys set (in the spec, or here): which keys the spec sets is meaningful
        # (a max_sequence_length the spec does not set comes from a sentence-transformers
        # folder, and the export's cache key records where it came from).
        return ModelSpec.model_validate_json(candidate.model_dump_json(exclude_unset=True))

    def describe(self, derived_threads: int | None = None) -> str:
        return (
            f"instances {self.instances}, threads {self.threads_cell(derived_threads)}, "
            f"queue delay {self.max_queue_delay_us} us, "
            f"preferred {self.preferred_cell()}, bucket {self.bucket}"
        )

    def threads_cell(self, derived: int | None) -> str:
        """The thread count; for ``auto``, with what the build derives, if anything."""
        if self.threads is not None:
            return str(self.threads)
        return f"auto ({derived})" if derived else "auto"

    def preferred_cell(self) -> str:
        return ",".join(map(str, self.preferred_batch_sizes)) or "none"


@dataclass(frozen=True)
class Axes:
    """The values tried for each key; the candidates are their product."""

    instances: tuple[int, ...] = (1, 2)
    threads: tuple[int | None, ...] = (None,)
    max_queue_delay_us: tuple[int, ...] = (0, 1000)
    preferred: tuple[tuple[int, ...], ...] = ((), (8, 16))
    bucket: tuple[int, ...] = (1, 16)

    def grid(self) -> list[Settings]:
        product = itertools.product(
            self.instances, self.threads, self.max_queue_delay_us, self.preferred, self.bucket
        )
        return [Settings(*values) for values in product]


def parse_ints(value: str, minimum: int = 0) -> tuple[int, ...]:
    """``1,2`` -> (1, 2), each at least ``minimum``, once each, in the order given."""
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{value!r}: expected whole numbers separated by commas") from None
    if not numbers:
        raise ValueError(f"{value!r}: give at least one value")
    if min(numbers) < minimum:
        raise ValueError(f"{value!r}: values must be >= {minimum}")
    return tuple(dict.fromkeys(numbers))


def parse_threads(value: str) -> tuple[int | None, ...]:
    """``auto,1,2`` -> (None, 1, 2); ``auto`` leaves the thread count to the build."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"{value!r}: give 'auto' or thread counts")
    threads = [None if part == "auto" else parse_ints(part, 1)[0] for part in parts]
    return tuple(dict.fromkeys(threads))


def parse_preferred(value: str) -> tuple[tuple[int, ...], ...]:
    """``none;8,16`` -> ((), (8, 16)): sets of preferred batch sizes separated by ``;``."""
    groups = [group.strip() for group in value.split(";") if group.strip()]
    if not groups:
        raise ValueError(f"{value!r}: give 'none' or sizes such as 8,16 (sets separated by ;)")
    sets = [() if group == "none" else tuple(sorted(parse_ints(group, 1))) for group in groups]
    return tuple(dict.fromkeys(sets))


@dataclass(frozen=True)
class Candidate:
    settings: Settings
    model: ModelSpec  # the spec entry with the settings applied
    threads: int | None  # ONNX Runtime intra-op threads the build derives (None: its own)


def plan_candidates(spec: Spec, model: ModelSpec, axes: Axes) -> tuple[list[Candidate], list[str]]:
    """The candidates the spec accepts, and why the others were skipped (ProfileError when
    none is left)."""
    accepted, skipped = [], []
    for settings in axes.grid():
        try:
            entry = settings.apply(model)
        except ValidationError as exc:
            reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            skipped.append(f"{settings.describe()}: {reason}")
            continue
        derived = dict(onnx_threads(entry, spec.defaults.cores)).get("intra_op_thread_count")
        accepted.append(Candidate(settings, entry, int(derived) if derived else None))
    if not accepted:
        raise ProfileError(f"no candidate is a valid spec entry: {'; '.join(skipped[:3])}")
    return accepted, skipped


# --- measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """A candidate and what it measured, or why it could not be measured."""

    settings: Settings
    threads: int | None  # as the build derived them
    point: ProfilePoint | None
    error: str | None = None

    def within(self, p99_ms: float | None) -> bool:
        if self.point is None:
            return False
        return p99_ms is None or self.point.p99_ms <= p99_ms


def choose(trials: Sequence[Trial], p99_ms: float | None) -> int | None:
    """The index of the highest throughput within the p99 bound (the first of equals)."""
    best: int | None = None
    for index, trial in enumerate(trials):
        if trial.point is None or not trial.within(p99_ms):
            continue
        if best is None or trial.point.throughput > _throughput(trials[best]):
            best = index
    return best


def _throughput(trial: Trial) -> float:
    return trial.point.throughput if trial.point is not None else 0.0


def _trial(
    pa: PerfAnalyzer,
    spec: Spec,
    candidate: ModelSpec,
    sweep: Sweep,
    repository: Path,
    progress: Progress,
) -> ProfilePoint:
    started = time.monotonic()
    one = spec.model_copy(update={"models": (candidate,)})  # keeps the spec's path
    build = build_repository(one, repository, progress=lambda message: None)
    export = "exported" if any(m.exported for m in build.models) else "export reused"
    built = time.monotonic()
    with LocalServer(repository) as server:
        progress(
            f"    built in {built - started:.1f} s ({export}), "
            f"served in {time.monotonic() - built:.1f} s"
        )
        result = run_sweep(pa, server.http_url, "http", candidate.name, sweep, progress)
    return result.points[0]


def seed(spec: Spec, model: ModelSpec, repository: Path) -> bool:
    """Link the spec's built repository's files of ``model`` (and its manifest) into
    ``repository``, so that the first build reuses that export if its cache key matches."""
    built = spec.repository_dir
    manifest = read_manifest(built)
    record = manifest.models.get(model.name) if manifest is not None else None
    if record is None or not record.artifacts:
        return False
    for name in record.triton_models:
        for path in sorted((built / name).rglob("*")):
            if path.is_file():
                link(path, repository / path.relative_to(built))
    link(built / MANIFEST, repository / MANIFEST)
    return True


def run_trials(
    pa: PerfAnalyzer,
    spec: Spec,
    candidates: Sequence[Candidate],
    sweep: Sweep,
    workdir: Path,
    progress: Progress,
) -> list[Trial]:
    """Build, serve and measure each candidate in turn; a failing one is recorded, not fatal."""
    trials = []
    if candidates and seed(spec, candidates[0].model, workdir / "repository"):
        progress(f"reusing the export in {spec.repository_dir} if it is current")
    for index, candidate in enumerate(candidates):
        settings = candidate.settings
        progress(f"[{index + 1}/{len(candidates)}] {settings.describe(candidate.threads)}")
        try:
            point = _trial(pa, spec, candidate.model, sweep, workdir / "repository", progress)
        except BuildError as exc:
            error = str(exc).strip() or type(exc).__name__
            progress("    failed: " + error.replace("\n", "\n    "))
            trials.append(Trial(settings, candidate.threads, None, error))
            continue
        trials.append(Trial(settings, candidate.threads, point))
    return trials


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneResult:
    model: str
    spec: str
    concurrency: int
    seconds: float
    p99_ms: float | None
    trials: tuple[Trial, ...]
    winner: int | None
    skipped: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        rows = []
        for trial in self.trials:
            row: dict[str, Any] = {"settings": asdict(trial.settings)}
            row["settings"]["preferred_batch_sizes"] = list(trial.settings.preferred_batch_sizes)
            row["threads_derived"] = trial.threads
            row["point"] = asdict(trial.point) if trial.point is not None else None
            row["within_bound"] = trial.within(self.p99_ms)
            row["error"] = trial.error
            rows.append(row)
        return {
            "model": self.model,
            "spec": self.spec,
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "p99_ms": self.p99_ms,
            "candidates": rows,
            "winner": self.winner,
            "skipped": list(self.skipped),
            "units": {"throughput": "texts/s (one text per request)", "latency": "ms"},
        }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(result: TuneResult) -> str:
    """Every candidate with its figures; the winner marked in the last column."""
    header = ["#", "instances", "threads", "queue delay us", "preferred", "bucket"]
    header += ["texts/s", "p50 ms", "p99 ms"]
    if result.p99_ms is not None:
        header.append(f"p99 <= {result.p99_ms:g} ms")
    header.append("note")
    lines = ["| " + " | ".join(header) + " |", "|" + " ---: |" * (len(header) - 1) + " --- |"]
    for index, trial in enumerate(result.trials):
        s = trial.settings
        cells = [str(index + 1), str(s.instances), s.threads_cell(trial.threads)]
        cells += [str(s.max_queue_delay_us), s.preferred_cell(), str(s.bucket)]
        point = trial.point
        if point is None:
            cells += ["-", "-", "-"]
        else:
            cells += [f"{point.throughput:.1f}", f"{point.p50_ms:.1f}", f"{point.p99_ms:.1f}"]
        if result.p99_ms is not None:
            cells.append("yes" if trial.within(result.p99_ms) else "no")
        note = "**winner**" if index == result.winner else ""
        if trial.error:
            note = f"failed: {trial.error.splitlines()[0][:160]}"
        cells.append(_cell(note))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown(result: TuneResult) -> str:
    bound = f"p99 <= {result.p99_ms:g} ms" if result.p99_ms is not None else "no p99 bound"
    text = (
        f"# Tuning `{result.model}` ({result.spec})\n\n"
        f"perf_analyzer at concurrency {result.concurrency}, about {result.seconds:g} s per "
        f"candidate; the winner has the highest throughput with {bound}.\n\n"
        + markdown_table(result)
    )
    if result.skipped:
        text += "\nSkipped (the spec refuses them):\n\n"
        text += "".join(f"- {reason}\n" for reason in result.skipped)
    return text


def write_report(result: TuneResult, out: Path) -> tuple[Path, Path]:
    """``tune.json`` and ``tune.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = dict(result.as_json(), created=datetime.now(UTC).isoformat(timespec="seconds"))
    paths = (out / "tune.json", out / "tune.md")
    paths[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(_markdown(result), encoding="utf-8")
    return paths


# --- writing the winner -------------------------------------------------------------------


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if value == old:
            continue
        if isinstance(value, dict) and isinstance(old, dict):
            delta[key] = _diff(old, value)
        else:
            delta[key] = value
    return delta


def changes(original: ModelSpec, winner: ModelSpec) -> dict[str, Any]:
    """The keys (nested) whose values differ between two versions of an entry."""
    return _diff(original.model_dump(mode="json"), winner.model_dump(mode="json"))


def write_winner(spec: Spec, original: ModelSpec, winner: ModelSpec) -> dict[str, Any]:
    """Write the winner's differing keys into the spec file; return them (empty: unchanged).

    The edited text must load as the spec with only this entry changed, else nothing is
    written and the error gives the keys to set by hand."""
    delta = changes(original, winner)
    if not delta:
        return delta
    index = spec.models.index(original)
    text = spec.path.read_text(encoding="utf-8")
    by_hand = f"set these keys of models[{index}] by hand: {flow(delta)}"
    try:
        edited = set_keys(text, index, delta, str(spec.path))
        check = parse_spec(edited, spec.path)
    except BuildError as exc:
        raise BuildError(f"cannot write the winner: {exc}; {by_hand}") from None
    expected = [*spec.models[:index], winner, *spec.models[index + 1 :]]
    same = [m.model_dump() for m in check.models] == [m.model_dump() for m in expected]
    if not same or (check.repository, check.defaults) != (spec.repository, spec.defaults):
        raise BuildError(f"{spec.path}: editing it would not give the winner; {by_hand}")
    staged = spec.path.with_name(f".{spec.path.name}.tune-{os.getpid()}")
    staged.write_text(edited, encoding="utf-8")
    shutil.copymode(spec.path, staged)
    os.replace(staged, spec.path)
    return delta


def describe_changes(delta: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"tokenizer": {"bucket": 16}}`` -> ``["tokenizer.bucket: 16"]``."""
    lines = []
    for key, value in delta.items():
        if isinstance(value, dict) and value:
            lines += describe_changes(value, f"{prefix}{key}.")
        else:
            lines.append(f"{prefix}{key}: {flow(value)}")
    return lines
