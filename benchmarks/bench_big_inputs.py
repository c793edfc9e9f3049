"""Do big inputs stall other clients? (not run by CI)

Serves model_repository/ (build it first: `make repo`) and runs a loop of normal requests
(one short text each) alone, then again while two other clients keep sending big inputs:
one a ~200 KB text (under minilm's 256 KiB max_text_bytes: answered from the head the
tokenizer needs), one a 10 MiB text (refused with HTTP 400 before tokenizing). Prints the
normal loop's p50/p99 in both phases and the big requests' latencies.

    python benchmarks/bench_big_inputs.py --seconds 20
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from builder.serve import LocalServer  # noqa: E402
from clients import InvalidInputError, TritonClient  # noqa: E402

WORDS = "the quick brown fox jumps over the lazy dog and keeps running ".split()
BIG = " ".join(WORDS[i % len(WORDS)] for i in range(40_000))  # about 200 KB
HUGE = "word " * (2 * 1024 * 1024)  # 10 MiB


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    return f"{len(ms):5} requests  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"


def normal_loop(url: str, seconds: float) -> list[float]:
    latencies = []
    with TritonClient(url) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            client.infer("minilm", {"TEXT": [["a short text about triton"]]})
            latencies.append(time.monotonic() - started)
    return latencies


def big_sender(
    url: str, text: str, stop: threading.Event, out: list[float], refused: list[int]
) -> None:
    with TritonClient(url, timeout=60.0) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                client.infer("minilm", {"TEXT": [[text]]})
            except InvalidInputError:
                refused.append(1)
            out.append(time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    args = parser.parse_args()
    with LocalServer(args.repository) as server:
        normal_loop(server.http_url, 2.0)  # warm up
        alone = normal_loop(server.http_url, args.seconds)
        stop = threading.Event()
        big: list[float] = []
        huge: list[float] = []
        refused_big: list[int] = []
        refused_huge: list[int] = []
        senders = [
            threading.Thread(
                target=big_sender, args=(server.http_url, BIG, stop, big, refused_big)
            ),
            threading.Thread(
                target=big_sender, args=(server.http_url, HUGE, stop, huge, refused_huge)
            ),
        ]
        for sender in senders:
            sender.start()
        loaded = normal_loop(server.http_url, args.seconds)
        stop.set()
        for sender in senders:
            sender.join()
    print(f"normal requests alone:                 {percentiles(alone)}")
    print(f"normal requests beside the big ones:   {percentiles(loaded)}")
    answered = f"{len(BIG.encode()):>9}-byte text (answered):"
    print(f"{answered:39}{percentiles(big)}  refused {len(refused_big)}")
    refusal = f"{len(HUGE.encode()):>9}-byte text (refused, 400):"
    print(f"{refusal:39}{percentiles(huge)}  refused {len(refused_huge)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
