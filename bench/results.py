"""What every bench script ends with: a section heading naming the machine, and the section
printed and appended to bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def heading(bench: str) -> str:
    """``## <bench> — <date> — <host> (<arch>, <n> cores)``, with a blank line before it."""
    return f"\n## {bench} — {dt.date.today()} — {platform.node()} ({platform.machine()}, {os.cpu_count()} cores)\n"


def publish(lines: list[str], append: bool) -> None:
    """Print the section; with ``append``, add it to bench/RESULTS.md too."""
    text = "\n".join(lines) + "\n"
    print(text)
    if append:
        with RESULTS.open("a") as handle:
            handle.write(text)
