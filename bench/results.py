"""What every bench script ends with: a section heading naming the machine, and the section
printed and appended to bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def heading(bench: str, detail: str = "") -> str:
    """``## <bench> — <date> — <host> (<arch>, <n> cores[, <detail>])``, with a blank line before it;
    ``detail`` names what else the numbers depend on (a GPU, the device)."""
    extra = f", {detail}" if detail else ""
    return (f"\n## {bench} — {dt.date.today()} — {platform.node()} ({platform.machine()}, {os.cpu_count()} cores"
            f"{extra})\n")


def publish(text: str | list[str], append: bool = True) -> None:
    """Print the section; with ``append``, add it to bench/RESULTS.md too. Lines are joined
    and end with a newline; a string is taken as it is (the script wrote it whole)."""
    if not isinstance(text, str):
        text = "\n".join(text) + "\n"
    print(text)
    if append:
        with RESULTS.open("a") as handle:
            handle.write(text)
