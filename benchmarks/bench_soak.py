"""Soak: real perf_analyzer load on the `minilm` ensemble for N minutes (not run by CI).

Serves model_repository/ (build it first: `make repo`) with the local tritonserver, then runs
the `perf_analyzer` that the tritonclient 2.51 wheel ships, once per minute of the soak (three
windows of 20 s each, concurrency 8, one text per request from a corpus of 200 texts), and
prints per minute: throughput, p50 and p99 latency, failures; and the resident memory of the
server and of every Python stub at the start and the end. perf_analyzer stops at the first
failed request, so a minute that completes had none.

    python benchmarks/bench_soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.profile import Load, input_data, measure, perf_analyzer  # noqa: E402
from builder.serve import LocalServer  # noqa: E402


def corpus(path: Path) -> None:
    words = "the server streams tokens to a client while models load and batch requests".split()
    texts = [" ".join(words[(i + k) % len(words)] for k in range(6 + i % 35)) for i in range(200)]
    path.write_text(json.dumps(input_data(texts)), encoding="utf-8")


def rss_mb(repository: Path) -> dict[str, float]:
    """Resident memory of the server and its stubs (processes naming the repository)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        text = b" ".join(cmdline).decode(errors="replace")
        if str(repository) not in text:
            continue
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        if b"stub" in cmdline[0]:
            name = "stub " + Path(cmdline[1].decode()).parent.parent.name
        else:
            name = "tritonserver"
        found[f"{name} ({entry.name})"] = rss / 1024
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    corpus(work / "data.json")
    repository = args.repository.resolve()
    with perf_analyzer() as pa, LocalServer(repository) as server:
        load = Load(server.http_url.removeprefix("http://"), "http", "minilm", work / "data.json")
        start = rss_mb(repository)
        header = "minute  texts/s   p50 ms   p99 ms  failures"
        print(f"{header}  (perf_analyzer, concurrency {args.concurrency})")
        for index in range(args.minutes):
            # three windows of 20 s; perf_analyzer fails at the first failed request
            point = measure(pa, load, args.concurrency, 60.0)
            print(
                f"{index + 1:6}  {point.throughput:7.1f}  {point.p50_ms:7.1f}  "
                f"{point.p99_ms:7.1f}  0",
                flush=True,
            )
        end = rss_mb(repository)
    print("\nresident memory, MB: start -> end")
    for name in sorted(start):
        print(f"  {name:42} {start[name]:8.1f} -> {end.get(name, float('nan')):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
