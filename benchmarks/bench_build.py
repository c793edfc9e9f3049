"""Time a cold build and an unchanged rebuild of models.yaml (the ≤ 5 s incremental target),
``--check`` on the built repository and on a fresh clone's (configs only, no manifest).

    .venv/bin/python benchmarks/bench_build.py [--spec models.yaml] [--runs 3]

Builds into a temporary folder, so the committed model_repository/ is not touched.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def fresh_clone(dest: Path) -> Path:
    """models.yaml and model_repository/ as git checks them out, copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "models.yaml", "model_repository"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for rel in listed.stdout.split():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest / "models.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", type=Path, default=ROOT / "models.yaml")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    build_repo = str(Path(sys.executable).parent / "build-repo")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "repo")
        cold = timed([build_repo, str(args.spec), "-o", out, "-q"])
        warm = [timed([build_repo, str(args.spec), "-o", out, "-q"]) for _ in range(args.runs)]
        check = timed([build_repo, str(args.spec), "-o", out, "--check", "-q"])
        clone_spec = fresh_clone(Path(tmp) / "clone")
        fresh = timed([build_repo, str(clone_spec), "--check", "-q"])
    print(f"cold build (export + parity):   {cold:6.2f} s")
    print(
        f"unchanged rebuild, {args.runs} runs:    median {statistics.median(warm):.2f} s, "
        f"max {max(warm):.2f} s (target <= 5 s)"
    )
    print(f"--check:                        {check:6.2f} s")
    print(f"--check on a fresh clone:       {fresh:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
