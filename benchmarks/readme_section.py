"""One benchmark's section of a study's README, between `<!-- name -->` markers: replaced in place when present,
appended otherwise, so several benchmarks (and hand-written notes) share one README. Imported by the benchmark
scripts that sit beside it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compress.artifacts import atomic_write_text  # noqa: E402


def write_section(readme: Path, name: str, section: str, title: str) -> None:
    """Write `section` as README's `name` section, atomically; `title` heads a README that does not exist yet."""
    text = readme.read_text() if readme.is_file() else f"# {title}\n"
    marker = f"<!-- {name} -->"
    parts = text.split(marker)
    body = f"{marker}\n{section.strip()}\n{marker}"
    text = parts[0] + body + parts[2] if len(parts) == 3 else text.rstrip() + "\n\n" + body + "\n"
    atomic_write_text(readme, text)
