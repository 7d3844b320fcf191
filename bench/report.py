"""Markdown tables printed to stdout and collected into ``bench/results/latest.md``."""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in cells[1:]:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Report:
    """Sections are printed as they are produced and written together at the end."""

    def __init__(self, out_dir: Path | None = None):
        self.out_dir = Path(out_dir) if out_dir else RESULTS_DIR
        self.sections: list[str] = []

    def header(self, argv: Sequence[str]) -> None:
        import os

        cpus = os.cpu_count()
        try:
            import psutil

            memory = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
        except ImportError:
            memory = "?"
        self.add(
            f"# tokenmill benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
            f"`python -m bench {' '.join(argv)}` on {platform.machine()}, {cpus} cores, {memory}, "
            f"Python {sys.version.split()[0]}, {_versions()}"
        )

    def add(self, text: str) -> None:
        print(text + "\n", flush=True)
        self.sections.append(text)

    def write(self, name: str = "latest.md") -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / name
        path.write_text("\n\n".join(self.sections) + "\n", encoding="utf-8")
        return path


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("apache-beam", "datasketch", "tokenizers", "fasttext-numpy2-wheel"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)
