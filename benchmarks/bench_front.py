"""The API front's cost: `/v1/embeddings` through `triton-pack api` against the same Triton
called directly over HTTP, and against infinity-emb's `/embeddings`, on the same cores, with
the same corpus and closed-loop load generator as bench_side_by_side (not run by CI; the
README quotes it).

    .venv/bin/python benchmarks/bench_front.py                       # c=1 and 16, 15 s a level
    .venv/bin/python benchmarks/bench_front.py --seconds 5 --no-infinity --json front.json

Systems: `direct` (Triton's KServe v2 JSON route of the `minilm` ensemble), `front` (the
OpenAI route of `triton-pack api`, which calls the same Triton over gRPC), `infinity`
(infinity-emb 0.0.78, its venv and model cache shared with bench_side_by_side; skipped with
the reason if it cannot be set up). `direct` and `front` share one tritonserver and are
measured in turns (direct, front, direct, front) so that drift on a shared machine shows; the
table takes each system's better run. One text per request, as in bench_side_by_side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_side_by_side import pin  # noqa: E402
from benchmarks.side_by_side import NotMeasured, corpus, infinity, loadgen, plain  # noqa: E402
from benchmarks.side_by_side.served import _local_server  # noqa: E402
from tests.front_process import running_front  # noqa: E402


def front_target(url: str, model: str) -> loadgen.Target:
    def body(texts: list[str]) -> bytes:
        return json.dumps({"model": model, "input": texts}).encode()

    def vectors(payload: bytes) -> list[list[float]]:
        items = sorted(json.loads(payload)["data"], key=lambda item: item["index"])
        return [item["embedding"] for item in items]

    return loadgen.Target(f"{url}/v1/embeddings", body, vectors)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def triton_cpu_seconds() -> float:
    """tritonserver and its Python stubs (the only ones running: this benchmark's)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                name = comm.read().strip()
            if name.startswith(("tritonserver", "triton_python")):
                total += cpu_seconds(int(pid))
        except OSError:
            continue
    return total


def line(name: str, result: loadgen.LevelResult) -> str:
    return (
        f"  {name:<9} c={result.concurrency:<3} {result.texts_per_s:8.1f} texts/s  "
        f"p50 {result.percentile_ms(50):6.1f} ms  p99 {result.percentile_ms(99):6.1f} ms  "
        f"failures {result.failures}"
    )


def best(results: list[loadgen.LevelResult]) -> loadgen.LevelResult:
    return max(results, key=lambda r: r.texts_per_s)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "models.yaml")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--levels", default="1,16")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2, help="turns of direct/front per level")
    parser.add_argument("--cpus", type=lambda v: [int(c) for c in v.split(",")], default=None)
    parser.add_argument("--no-infinity", action="store_true")
    parser.add_argument(
        "--also-http", action="store_true", help="also a front talking HTTP to Triton"
    )
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/triton-pack-bench")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


Results = dict[str, dict[int, list[loadgen.LevelResult]]]


def measure_pair(args: argparse.Namespace, texts: list[str], levels: list[int]) -> Results:
    """direct and front (and front-http with --also-http) in turns, on one tritonserver."""
    results: Results = {"direct": {}, "front": {}}
    repository = args.repository.resolve()
    with _local_server(repository) as server:
        targets = {"direct": loadgen.triton_target(server.http_url, "minilm")}
        pids: dict[str, int] = {}
        fronts = [("front", server.grpc_url, ["--repository", str(repository)])]
        if args.also_http:
            results["front-http"] = {}
            http = server.http_url.removeprefix("http://")
            fronts.append(
                ("front-http", http, ["--repository", str(repository), "--triton-protocol", "http"])
            )
        with contextlib.ExitStack() as stack:
            for name, address, extra in fronts:
                log = args.cache / f"{name}-bench.log"
                front = stack.enter_context(running_front(address, args.spec, log, extra))
                pids[name] = front.process.pid
                targets[name] = front_target(front.url, "minilm")
            direct = np.array(loadgen.embed(targets["direct"], texts[:4]), dtype=np.float32)
            for name, target in list(targets.items())[1:]:
                vectors = np.array(loadgen.embed(target, texts[:4]), dtype=np.float32)
                print(
                    f"{name}: float32 vectors equal to direct's: {np.array_equal(vectors, direct)}"
                )
            for level in levels:
                for _ in range(args.rounds):
                    for name, target in targets.items():
                        front_pid = pids.get(name)
                        front0 = cpu_seconds(front_pid) if front_pid else 0.0
                        triton0 = triton_cpu_seconds()
                        result = loadgen.run_level(target, texts, level, args.warmup, args.seconds)
                        sent = max(1, result.requests_sent)
                        front_ms = (cpu_seconds(front_pid) - front0) if front_pid else 0.0
                        triton_ms = triton_cpu_seconds() - triton0
                        results[name].setdefault(level, []).append(result)
                        print(
                            line(name, result)
                            + f"  CPU per request: front {1000 * front_ms / sent:.2f} ms, "
                            f"Triton {1000 * triton_ms / sent:.2f} ms",
                            flush=True,
                        )
    return results


def measure_infinity(
    args: argparse.Namespace, texts: list[str], levels: list[int], results: Results
) -> None:
    source = plain.minilm_source()
    setup = infinity.InfinitySetup(
        venv=args.cache / "infinity-venv",
        source=source,
        key=plain.source_key(source),
        cache=args.cache,
        engine="optimum",
    )
    try:
        with infinity.serve_infinity(setup) as served:
            for level in levels:
                result = loadgen.run_level(served.target, texts, level, args.warmup, args.seconds)
                results.setdefault("infinity", {})[level] = [result]
                print(line("infinity", result), flush=True)
    except NotMeasured as exc:
        print(f"  infinity: not measured ({exc})")


def report(results: Results, levels: list[int]) -> dict[str, dict[int, dict[str, object]]]:
    print("\n| system | " + " | ".join(f"c={lv} texts/s (p50 ms)" for lv in levels) + " |")
    print("| --- |" + " ---: |" * len(levels))
    table: dict[str, dict[int, dict[str, object]]] = {}
    for name, by_level in results.items():
        cells = []
        for level in levels:
            chosen = best(by_level[level])
            table.setdefault(name, {})[level] = chosen.as_json()
            cells.append(f"{chosen.texts_per_s:.1f} ({chosen.percentile_ms(50):.1f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    top, low = max(levels), min(levels)
    front_top = best(results["front"][top]).texts_per_s
    ratio = front_top / best(results["direct"][top]).texts_per_s
    overhead = best(results["front"][low]).percentile_ms(50) - best(
        results["direct"][low]
    ).percentile_ms(50)
    print(
        f"\nfront / direct at c={top}: {ratio:.2f} (target >= 0.85); "
        f"front's added p50 at c={low}: {overhead:.1f} ms"
    )
    if "infinity" in results:
        versus = front_top / best(results["infinity"][top]).texts_per_s
        print(f"front / infinity at c={top}: {versus:.2f}")
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus = pin(args.cpus)
    levels = [int(level) for level in args.levels.split(",")]
    texts = corpus.generate(2000, 0)
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"pinned to cores {cpus}; load average {os.getloadavg()[0]:.2f}; {len(texts)} texts")
    results = measure_pair(args, texts, levels)
    if not args.no_infinity:
        measure_infinity(args, texts, levels, results)
    table = report(results, levels)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
