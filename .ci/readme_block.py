"""Print the README's quickstart block (the ```bash block after the marker line), for .ci/run
to run exactly as written. Standard library only: it runs before any environment exists."""

import sys
from pathlib import Path

MARKER = "<!-- .ci/run runs the next block as written -->"


def block(readme: str) -> str:
    lines = readme.split("\n")
    if lines.count(MARKER) != 1:
        raise SystemExit(f"README.md: needs the line {MARKER!r} once, right before the quickstart block")
    start = lines.index(MARKER) + 1
    if lines[start] != "```bash" or "```" not in lines[start + 1:]:
        raise SystemExit(f"README.md: the line after {MARKER!r} must open a ```bash block")
    return "\n".join(lines[start + 1: lines.index("```", start + 1)]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(block(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md").read_text()))
