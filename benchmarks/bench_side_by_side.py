"""Side by side: the built `minilm` ensemble against a hand-written baseline, infinity-emb and
the in-process ceiling, one after another on the same cores (not run by CI; the README
quotes it).

    .venv/bin/python benchmarks/bench_side_by_side.py                 # all four, 20 s a level
    .venv/bin/python benchmarks/bench_side_by_side.py --cpus 0,1 --json side_by_side.json
    .venv/bin/python benchmarks/bench_side_by_side.py --systems ours,baseline --seconds 5
    .venv/bin/python benchmarks/bench_side_by_side.py --rounds 3   # in turns; medians too

Systems (--systems, in this order):
  ours      the built repository (--repository; build it first: `build-repo models.yaml`)
            served by builder.serve.LocalServer, ensemble `minilm`
  baseline  benchmarks/baseline/minilm_python: one Triton Python model written by hand
            (tokenizers, ONNX Runtime with default options on a plain export of the same
            model, mean pooling and normalisation in numpy, dynamic batching, max batch 32,
            one instance), served by the same tritonserver
  infinity  infinity-emb 0.0.78 (ONNX engine), installed once into its own venv
            (--infinity-venv); if that fails, its row says why and the others go on
  ceiling   tokenizers + ONNX Runtime + pooling in this process, no server: the best
            texts/s over batch sizes (--ceiling-batches) and two layouts, one session with
            intra-op threads = cores, and one session of one thread per core, each fed by
            its own Python thread; no latency
  loadgen   (not by default) a trivial endpoint with a canned answer: how fast the load
            generator itself can go on these cores

Every served system gets the same corpus (--corpus FILE, one text per line, or a seeded
generator of 6-40-word texts) and the same closed-loop load generator: N workers
(--concurrency, one level after another), each sending one text per request over HTTP
keep-alive, --warmup seconds not counted, then --seconds measured. Every answer must be a 200
with one 384-d vector of finite numbers; anything else counts as a failure. Before the load,
each system embeds a few texts, alone and together in one request, and the worst cosine
against sentence-transformers goes into the table, so a fast but wrong system shows.

This process pins itself to --cpus (default: every core it may use) and re-executes itself,
so every thread of its own and every server it starts (tritonserver and its Python stubs,
infinity) runs on those cores. The built repository's ONNX thread counts come from its
spec's `cores` (models.yaml: 2); on fewer cores it is oversubscribed.

The acceptance figures below the table use the lowest concurrency level as "c=1" and the
highest as "c=16" (defaults 1 and 16). Caches (plain export, infinity's venv, export and
optimised graph) live in --cache (default ~/.cache/triton-pack-bench).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.side_by_side import NotMeasured, corpus, loadgen, plain, served  # noqa: E402
from benchmarks.side_by_side import infinity as infinity_emb  # noqa: E402

SYSTEMS = ("ours", "baseline", "infinity", "ceiling", "loadgen")
DEFAULT_SYSTEMS = "ours,baseline,infinity,ceiling"
LABELS = {
    "ours": "triton-pack (built ensemble)",
    "baseline": "hand-written Python model",
    "infinity": "infinity-emb 0.0.78",
    "ceiling": "in-process ceiling",
    "loadgen": "trivial endpoint",
}
_PINNED = "TRITON_PACK_BENCH_PINNED"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected non-negative numbers: {text!r}")
    return values


def _systems(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown system(s) {unknown}; choose from {SYSTEMS}")
    return [name for name in SYSTEMS if name in names]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--systems",
        type=_systems,
        default=_systems(DEFAULT_SYSTEMS),
        help=f"comma-separated, from {','.join(SYSTEMS)} (default {DEFAULT_SYSTEMS})",
    )
    add(
        "--cpus",
        type=_int_list,
        default=None,
        help="cores to pin everything to, e.g. 0,1 (default: all this process may use)",
    )
    add(
        "--concurrency",
        type=_int_list,
        default=[1, 16],
        help="closed-loop concurrency levels (default 1,16)",
    )
    add(
        "--seconds",
        type=float,
        default=20.0,
        help="measured seconds per level (default 20); the ceiling runs half as long per "
        "batch size and layout",
    )
    add("--warmup", type=float, default=5.0, help="seconds of load not counted (default 5)")
    add("--corpus", type=Path, default=None, help="one text per line (default: generated)")
    add("--corpus-size", type=int, default=1000, help="generated texts (default 1000)")
    add("--seed", type=int, default=1234, help="seed of the generated corpus (default 1234)")
    add(
        "--words",
        type=_int_list,
        default=[corpus.MIN_WORDS, corpus.MAX_WORDS],
        help="fewest and most words of a generated text (default "
        f"{corpus.MIN_WORDS},{corpus.MAX_WORDS}, the acceptance corpus)",
    )
    add(
        "--repository",
        type=Path,
        default=ROOT / "model_repository",
        help="the built repository served as 'ours' (default: model_repository/)",
    )
    add("--ensemble", default="minilm", help="the ensemble to hit (default minilm)")
    add(
        "--ceiling-batches",
        type=_int_list,
        default=[1, 8, 16, 32],
        help="batch sizes the ceiling tries (default 1,8,16,32)",
    )
    add(
        "--cache",
        type=Path,
        default=plain.default_cache(),
        help="folder for exports and infinity's venv (default ~/.cache/triton-pack-bench)",
    )
    add(
        "--infinity-venv",
        type=Path,
        default=None,
        help="infinity-emb's throwaway venv (default CACHE/infinity-venv)",
    )
    add(
        "--infinity-engine",
        choices=("optimum", "torch"),
        default="optimum",
        help="infinity's engine: optimum (ONNX Runtime, default) or torch",
    )
    add(
        "--rounds",
        type=int,
        default=1,
        help="measure every system this many times, in turns (ours, baseline, ..., ours, "
        "baseline, ...); each round prints its table, then the median and range of each "
        "acceptance figure over the rounds (default 1)",
    )
    add("--json", type=Path, default=None, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if min(args.concurrency) < 1 or min(args.ceiling_batches) < 1:
        parser.error("--concurrency and --ceiling-batches take numbers of at least 1")
    if len(args.words) != 2 or not 1 <= args.words[0] <= args.words[1]:
        parser.error("--words takes MIN,MAX with 1 <= MIN <= MAX")
    if args.rounds < 1:
        parser.error("--rounds takes a number of at least 1")
    args.concurrency = sorted(set(args.concurrency))
    return args


def pin(cpus: list[int] | None) -> list[int]:
    """Pin to ``cpus`` and re-execute once, so every thread and child starts pinned."""
    allowed = sorted(os.sched_getaffinity(0))
    wanted = sorted(set(cpus)) if cpus else allowed
    if not set(wanted) <= set(allowed):
        raise SystemExit(f"--cpus {wanted}: this process may use only cores {allowed}")
    mark = ",".join(map(str, wanted))
    if os.environ.get(_PINNED) != mark:
        os.sched_setaffinity(0, wanted)
        os.environ[_PINNED] = mark
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, *sys.argv])
    return wanted


@dataclass
class Row:
    """One system's figures."""

    system: str
    levels: dict[int, loadgen.LevelResult] = field(default_factory=dict)
    ceiling: dict[tuple[int, int, int], float] = field(default_factory=dict)
    # (sessions, intra-op threads per session, batch size) -> texts/s
    min_cosine: float | None = None
    notes: list[str] = field(default_factory=list)
    measured: bool = False

    def texts_per_s(self, level: int, lowest: int) -> float | None:
        if self.ceiling:  # the lowest level: one caller, one text at a time
            one = [rate for (n, _, batch), rate in self.ceiling.items() if (n, batch) == (1, 1)]
            return max(one, default=None) if level == lowest else max(self.ceiling.values())
        result = self.levels.get(level)
        return result.texts_per_s if result else None

    def as_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "label": LABELS[self.system],
            "measured": self.measured,
            "levels": {str(c): r.as_json() for c, r in self.levels.items()},
            "ceiling": [
                {"sessions": s, "threads_per_session": t, "batch": b, "texts_per_s": v}
                for (s, t, b), v in self.ceiling.items()
            ],
            "min_cosine_vs_sentence_transformers": self.min_cosine,
            "notes": self.notes,
        }


@dataclass
class Bench:
    """What every system shares: settings, corpus, check texts and their reference vectors."""

    args: argparse.Namespace
    cpus: list[int]
    texts: list[str]
    check: list[str]
    expected: Any  # sentence-transformers' vectors of ``check``
    source: Path
    load_at_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    _plain: plain.PlainModel | None = None

    @property
    def plain_model(self) -> plain.PlainModel:
        if self._plain is None:
            self._plain = plain.plain_export(self.source, self.args.cache)
        return self._plain


def correctness(bench: Bench, target: loadgen.Target) -> float:
    """Worst cosine vs sentence-transformers, over each check text alone and all in one."""
    alone = [loadgen.embed(target, [text])[0] for text in bench.check]
    together = loadgen.embed(target, bench.check)
    return min(plain.min_cosine(alone, bench.expected), plain.min_cosine(together, bench.expected))


def _level_line(name: str, result: loadgen.LevelResult) -> str:
    return (
        f"  {name} c={result.concurrency}: {result.texts_per_s:7.1f} texts/s  "
        f"p50 {result.percentile_ms(50):7.1f} ms  p99 {result.percentile_ms(99):7.1f} ms  "
        f"failures {result.failures}  load generator "
        f"{result.loadgen_cpu_us_per_request:.0f} µs CPU/request"
    )


def measure_served(
    bench: Bench, row: Row, serve: Callable[[], AbstractContextManager[served.Served]]
) -> None:
    """Start, check, load at each level, stop."""
    with serve() as system:
        if system.note:
            row.notes.append(system.note)
        if row.system != "loadgen":
            try:
                row.min_cosine = correctness(bench, system.target)
            except (OSError, loadgen.BadAnswer) as exc:
                raise NotMeasured(f"the correctness check failed: {exc}") from None
        args = bench.args
        for level in args.concurrency:
            result = loadgen.run_level(system.target, bench.texts, level, args.warmup, args.seconds)
            row.levels[level] = result
            print(_level_line(row.system, result), flush=True)
            if result.first_failure:
                row.notes.append(f"c={level}: first failure: {result.first_failure}")
    row.measured = True


def _layouts(cores: int) -> list[tuple[int, int]]:
    """(sessions, intra-op threads each): one session on every core; a session per core."""
    return [(1, cores)] if cores == 1 else [(1, cores), (cores, 1)]


def measure_ceiling(bench: Bench, row: Row) -> None:
    cores = len(bench.cpus)
    for sessions, threads in _layouts(cores):
        embedders = [plain.PlainEmbedder(bench.plain_model, threads) for _ in range(sessions)]
        if row.min_cosine is None:
            row.min_cosine = plain.min_cosine(embedders[0](bench.check), bench.expected)
        for batch in bench.args.ceiling_batches:
            rate = plain.ceiling_throughput(embedders, bench.texts, batch, bench.args.seconds / 2)
            row.ceiling[sessions, threads, batch] = rate
            print(
                f"  ceiling {sessions} session(s) x {threads} thread(s), batch {batch}: "
                f"{rate:7.1f} texts/s",
                flush=True,
            )
    sessions, threads, batch = max(row.ceiling, key=row.ceiling.__getitem__)
    row.notes.append(
        f"in-process, no HTTP: texts/s only, no latency; the c={min(bench.args.concurrency)} "
        f"column is one session of {cores} thread(s) at batch 1, the others the best over "
        f"batch sizes {','.join(map(str, bench.args.ceiling_batches))} and layouts "
        f"(best: {sessions} session(s) x {threads} thread(s), batch {batch})"
    )
    row.measured = True


def _infinity_setup(bench: Bench) -> infinity_emb.InfinitySetup:
    args = bench.args
    return infinity_emb.InfinitySetup(
        venv=args.infinity_venv or args.cache / "infinity-venv",
        source=bench.source,
        key=plain.source_key(bench.source),
        cache=args.cache,
        engine=args.infinity_engine,
    )


def measure(bench: Bench, name: str) -> Row:
    row = Row(name)
    servers: dict[str, Callable[[], AbstractContextManager[served.Served]]] = {
        "ours": lambda: served.serve_ours(bench.args.repository.resolve(), bench.args.ensemble),
        "baseline": lambda: served.serve_baseline(bench.plain_model),
        "infinity": lambda: infinity_emb.serve_infinity(_infinity_setup(bench)),
        "loadgen": served.serve_trivial,
    }
    try:
        if name == "ceiling":
            measure_ceiling(bench, row)
        else:
            measure_served(bench, row, servers[name])
    except NotMeasured as exc:
        row.notes.insert(0, f"not measured: {exc}")
        print(f"  {name}: not measured: {exc}", flush=True)
    return row


# ---- report -------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _ratio(top: float | None, bottom: float | None) -> float | None:
    if top is None or bottom is None or bottom == 0 or math.isnan(top) or math.isnan(bottom):
        return None
    return top / bottom


def _cells(row: Row, levels: list[int], ours: Row | None) -> list[str]:
    lowest, highest = levels[0], levels[-1]
    cells = [LABELS[row.system]]
    for level in levels:
        result = row.levels.get(level)
        cells.append(_num(row.texts_per_s(level, lowest)))
        cells.append(_num(result.percentile_ms(50)) if result else "—")
        cells.append(_num(result.percentile_ms(99)) if result else "—")
    base = ours.texts_per_s(highest, lowest) if ours else None
    ratio = _ratio(row.texts_per_s(highest, lowest), base)
    cells.append(f"{ratio:.2f}x" if ratio is not None else "—")
    cells.append(_num(row.min_cosine, 6) if row.min_cosine is not None else "—")
    failures = sum(r.failures for r in row.levels.values())
    cells.append(str(failures) if row.levels else "—")
    cells.append("" if row.measured else row.notes[0])
    return cells


def table(rows: list[Row], levels: list[int]) -> str:
    ours = next((r for r in rows if r.system == "ours" and r.measured), None)
    header = ["system"]
    for level in levels:
        header += [f"c={level} texts/s", f"c={level} p50 ms", f"c={level} p99 ms"]
    header += [f"c={levels[-1]} texts/s ÷ ours", "min cos vs ST", "failures", "notes"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cells(row, levels, ours)) + " |" for row in rows]
    return "\n".join(lines)


def acceptance(rows: list[Row], levels: list[int]) -> dict[str, float | None]:
    by_name = {row.system: row for row in rows if row.measured}
    lowest, highest = levels[0], levels[-1]

    def rate(name: str) -> float | None:
        row = by_name.get(name)
        return row.texts_per_s(highest, lowest) if row else None

    def latency(name: str, level: int, q: float) -> float | None:
        result = by_name[name].levels.get(level) if name in by_name else None
        return result.percentile_ms(q) if result else None

    return {
        f"ours / baseline texts/s at c={highest}": _ratio(rate("ours"), rate("baseline")),
        f"ours / infinity-emb texts/s at c={highest}": _ratio(rate("ours"), rate("infinity")),
        f"ours / in-process ceiling texts/s at c={highest}": _ratio(rate("ours"), rate("ceiling")),
        f"ours p99 / p50 at c={highest}": _ratio(
            latency("ours", highest, 99), latency("ours", highest, 50)
        ),
        f"ours p50 / baseline p50 at c={lowest}": _ratio(
            latency("ours", lowest, 50), latency("baseline", lowest, 50)
        ),
    }


def _loadgen_lines(rows: list[Row]) -> Iterator[str]:
    for row in rows:
        for level, result in row.levels.items():
            yield (
                f"  {LABELS[row.system]}, c={level}: {result.loadgen_cpu_us_per_request:.0f} µs "
                f"of load-generator CPU per request ({result.requests_sent} requests)"
            )


def report(bench: Bench, rows: list[Row]) -> dict[str, Any]:
    levels = bench.args.concurrency
    figures = acceptance(rows, levels)
    print()
    print(table(rows, levels))
    print()
    notes = [
        f"- {LABELS[row.system]}: {note}"
        for row in rows
        for note in (row.notes if row.measured else row.notes[1:])
    ]
    if notes:
        print("\n".join(notes) + "\n")
    print("Acceptance figures (—: a system of the ratio was not chosen or not measured):")
    for name, value in figures.items():
        print(f"  {name}: {_num(value, 2)}")
    lines = list(_loadgen_lines(rows))
    if lines:
        print("Load generator cost (this process's CPU time; it shares the cores with the server):")
        print("\n".join(lines))
    return {"acceptance": figures}


def settings(bench: Bench, started: float) -> dict[str, Any]:
    args = bench.args
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
        "cpus": bench.cpus,
        "load_average_at_start": bench.load_at_start,
        "load_average_at_end": os.getloadavg(),
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "corpus": str(args.corpus) if args.corpus else f"generated, seed {args.seed}",
        "corpus_texts": len(bench.texts),
        "repository": str(args.repository.resolve()),
        "ensemble": args.ensemble,
        "infinity_engine": args.infinity_engine,
    }


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: every server started is stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = pin(args.cpus)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    started = time.time()
    args.cache.mkdir(parents=True, exist_ok=True)
    texts = (
        corpus.load(args.corpus)
        if args.corpus
        else corpus.generate(args.corpus_size, args.seed, *args.words)
    )
    source = plain.minilm_source()
    check = corpus.check_texts(texts)
    print(f"pinned to cores {cpus}; load average {os.getloadavg()[0]:.2f}; {len(texts)} texts")
    print("sentence-transformers reference for the correctness check", flush=True)
    bench = Bench(args, cpus, texts, check, plain.reference(source, check), source)
    rounds = []
    for number in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f"\n#### round {number} of {args.rounds}", flush=True)
        rows = []
        for name in args.systems:
            print(f"== {LABELS[name]} (load average {os.getloadavg()[0]:.2f})", flush=True)
            rows.append(measure(bench, name))
        rounds.append((rows, report(bench, rows)))
    document: dict[str, Any] = {"settings": settings(bench, started)}
    if args.rounds > 1:
        document["median"] = over_rounds([figures for _, figures in rounds])
    document |= rounds[-1][1] if args.rounds == 1 else {}
    document["rounds"] = [
        {**figures, "rows": [row.as_json() for row in rows]} for rows, figures in rounds
    ]
    if args.json:
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    return 0


def over_rounds(figures: list[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """Each acceptance figure's median, lowest and highest value over the rounds; printed."""
    print(f"\nAcceptance figures over {len(figures)} rounds: median (lowest-highest)")
    summary: dict[str, dict[str, float] | None] = {}
    for name in figures[0]["acceptance"]:
        values = sorted(f["acceptance"][name] for f in figures if f["acceptance"][name])
        if not values:
            summary[name] = None
            print(f"  {name}: —")
            continue
        median = statistics.median(values)
        summary[name] = {"median": median, "lowest": values[0], "highest": values[-1]}
        print(f"  {name}: {median:.2f} ({values[0]:.2f}-{values[-1]:.2f})")
    return summary


if __name__ == "__main__":
    sys.exit(main())
