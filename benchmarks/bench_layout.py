"""What each change of the performance work contributes, measured one after another.

    .venv/bin/python benchmarks/bench_layout.py [--seconds 20] [--concurrency 1,16]

Serves, in turn, eight variants of the `minilm` repository with the same tritonserver, corpus
and load generator as ``bench_side_by_side.py`` (one text per request, closed loop):

1. ``start``: the layout before this work (tokenizer -> ONNX -> Python pooling, three hops),
   built by the commit before it (``OLD_COMMIT``, in a throwaway git worktree), with ONNX
   Runtime's default threads (every instance a thread per core);
2. ``+threads``: the same, with one intra-op thread per instance (``threads`` fitted);
3. ``+head``: pooling and normalisation in the graph (two hops), the tokenizer without its
   dynamic batcher and without buckets;
4. ``+tokenizer batching``: the tokenizer's dynamic batcher on, each batch padded to its
   longest text; the ONNX member waits up to 1 ms for more requests (preferred batch sizes
   8 and 16), and its instances keep their own threads (``lend_idle_threads: false``);
5. ``instead: buckets``: 4 with padding to multiples of 16 tokens;
6. ``+no queue delay``: 4 with the ONNX member's ``max_queue_delay_us: 0``;
7. ``+idle threads lent``: 6 with an instance that runs alone borrowing its idle sibling's
   thread (the local stand-in's ``lend_idle_threads``; what ``models.yaml`` builds);
8. ``+fused graph``: 7 with ``export.optimize: true``.

Variants 3-7 are the built repository with its configs edited (in a copy); 8 is a build of
models.yaml with export.optimize. Prints one table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_side_by_side as sbs  # noqa: E402
from benchmarks.side_by_side import corpus, plain, served  # noqa: E402

OLD_COMMIT = "da6cdb7"  # the last commit with the three-hop layout


def _copy(src: Path, dst: Path) -> Path:
    """A copy whose weights are hard links and whose configs and code are real copies."""

    def copy(a: str, b: str) -> None:
        if a.endswith((".data", ".onnx", "tokenizer.json")):
            os.link(a, b)
        else:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=copy)
    return dst


def _edit(config: Path, pattern: str, replacement: str) -> None:
    text = config.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text, flags=re.S)
    if count != 1:
        raise SystemExit(f"{config}: expected one match of {pattern!r}, found {count}")
    config.write_text(new, encoding="utf-8")


def _unbatched_tokenizer(repo: Path, bucket: int | None) -> None:
    """bucket None: the tokenizer's dynamic batcher removed (and bucket 1); else only the
    bucket changed."""
    config = repo / "minilm_tokenizer" / "config.pbtxt"
    if bucket is None:
        _edit(config, r"dynamic_batching \{[^}]*\}\n", "")
        bucket = 1
    _edit(config, r'(key: "bucket"\s*value: \{ string_value: ")\d+(" \})', rf"\g<1>{bucket}\2")


def _fixed_threads(repo: Path) -> None:
    """The ONNX member's instances keep their own threads (no lending)."""
    config = repo / "minilm_onnx" / "config.pbtxt"
    _edit(config, r"\Z", 'parameters {\n  key: "lend_idle_threads"\n'
          '  value: { string_value: "false" }\n}\n')  # fmt: skip


def _queue_delay(repo: Path) -> None:
    """The ONNX member's batcher as models.yaml had it before: 1 ms, preferred 8 and 16."""
    config = repo / "minilm_onnx" / "config.pbtxt"
    _edit(config, r"dynamic_batching \{[^}]*\}\n", "dynamic_batching {\n  preferred_batch_size:"
          " [ 8, 16 ]\n  max_queue_delay_microseconds: 1000\n}\n")  # fmt: skip


def _old_layout(cache: Path) -> Path:
    """models.yaml built by OLD_COMMIT's code (cached)."""
    repo = cache / f"layout-{OLD_COMMIT}" / "repo"
    if (repo / "minilm_postprocess" / "config.pbtxt").is_file():
        return repo
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), OLD_COMMIT],
            check=True,
            capture_output=True,
        )
        try:
            print(f"building the three-hop layout with {OLD_COMMIT}'s code", flush=True)
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from builder.cli import build_repo_main; "
                    "sys.exit(build_repo_main(sys.argv[1:]))",
                    str(tree / "models.yaml"),
                    "-o",
                    str(repo),
                ],
                cwd=tree,
                env={**os.environ, "PYTHONPATH": str(tree)},
                check=True,
            )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )
    return repo


def _optimized(work: Path) -> Path:
    from builder.pipeline import build_repository
    from builder.spec import load_spec

    spec = load_spec(ROOT / "models.yaml")
    models = tuple(
        m.model_copy(update={"export": m.export.model_copy(update={"optimize": True})})
        for m in spec.models
    )
    fused = spec.model_copy(update={"models": models})
    fused._path = spec.path  # sources resolve against the real spec's folder
    return build_repository(
        fused, work / "fused", progress=lambda m: print(m, flush=True)
    ).repository


def variants(base: Path, cache: Path, work: Path) -> list[tuple[str, Path]]:
    old = _old_layout(cache)
    start = _copy(old, work / "start")
    _edit(
        start / "minilm_onnx" / "config.pbtxt",
        r'parameters \{\s*key: "inter_op_thread_count".*?intra_op_thread_count"[^}]*\}\s*\}\n',
        "",
    )
    threads = _copy(old, work / "threads")
    _fixed_threads(threads)  # the stand-in would otherwise lend (variant 7)
    no_delay = _copy(base, work / "no_delay")
    _fixed_threads(no_delay)
    batched = _copy(no_delay, work / "batched")
    _queue_delay(batched)
    head = _copy(batched, work / "head")
    _unbatched_tokenizer(head, bucket=None)
    buckets = _copy(batched, work / "buckets")
    _unbatched_tokenizer(buckets, bucket=16)
    return [
        ("start: 3 hops, ONNX Runtime default threads", start),
        ("+threads: 1 intra-op thread per instance", threads),
        ("+head: pooling in the graph, 2 hops (tokenizer unbatched)", head),
        ("+tokenizer batching, pad to the longest", batched),
        ("instead: buckets of 16 tokens", buckets),
        ("+no queue delay on the ONNX member", no_delay),
        ("+idle threads lent to an instance alone (models.yaml)", base),
        ("+fused graph (export.optimize)", _optimized(work)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--cache", type=Path, default=plain.default_cache())
    parser.add_argument(
        "--only", default="", help="comma-separated variant numbers to serve (default: all)"
    )
    args = parser.parse_args()
    only = {int(n) for n in args.only.split(",") if n.strip()}
    bench_args = sbs.parse_args(
        [
            "--systems", "ours",
            "--seconds", str(args.seconds),
            "--warmup", str(args.warmup),
            "--concurrency", args.concurrency,
            "--cache", str(args.cache),
        ]
    )  # fmt: skip
    texts = corpus.generate(bench_args.corpus_size, bench_args.seed)
    source = plain.minilm_source()
    check = corpus.check_texts(texts)
    bench = sbs.Bench(bench_args, sorted(os.sched_getaffinity(0)), texts, check,
                      plain.reference(source, check), source)  # fmt: skip
    levels = bench_args.concurrency
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        chosen = variants(args.repository.resolve(), args.cache, Path(scratch))
        for number, (label, repo) in enumerate(chosen, 1):
            if only and number not in only:
                continue
            print(f"== {label} (load average {os.getloadavg()[0]:.2f})", flush=True)
            row = sbs.Row("ours")
            sbs.measure_served(bench, row, lambda repo=repo: served.serve_ours(repo, "minilm"))
            rows.append((label, row))
    header = "| variant | " + " | ".join(
        f"c={c} texts/s | c={c} p50 ms | c={c} p99 ms" for c in levels
    )
    print("\n" + header + " | min cosine |")
    print("|" + " --- |" * (1 + 3 * len(levels) + 1))
    for label, row in rows:
        cells = []
        for c in levels:
            r = row.levels[c]
            cells += [
                f"{r.texts_per_s:.1f}",
                f"{r.percentile_ms(50):.1f}",
                f"{r.percentile_ms(99):.1f}",
            ]
        print(f"| {label} | " + " | ".join(cells) + f" | {row.min_cosine:.6f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
