"""How long the command line takes to answer: `--help`, `--version`, a mistake, `studies`
and `report` (SQLite, and PostgreSQL when a server answers), each timed as a whole process
(interpreter start, imports, the answer) — what a user waits for.

    python bench/bench_startup.py --neurosearch before=/path/to/old/neurosearch \\
                                  --neurosearch after=/path/to/new/neurosearch

Every command runs ``--runs`` times (default 7) per executable, the executables taking
turns so that a change in the machine's load hits both alike. Prints a markdown section
(median and min wall seconds per command and executable, the exit codes, the load
average) for bench/RESULTS.md; ``--append`` appends it there.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from results import heading, publish

STUDY = "bench-startup"
CONFIG = f'[study]\nname = "{STUDY}"\nstorage = "sqlite:///optuna.db"\n'


def commands(postgres: str | None, pg_study: str) -> list[list[str]]:
    """The command lines timed, run in a folder whose search.toml names a small study."""
    lines = [
        ["--help"],
        ["--version"],
        ["run", "--config", "/nonexistent.toml"],
        ["run", "--set", "nosuch.key=1"],
        ["run", "--bogus"],
        ["studies"],
        ["report"],
    ]
    if postgres:
        lines += [["studies", "--storage", postgres], ["report", "--storage", postgres, "--study", pg_study]]
    return lines


def make_study(url: str, name: str) -> None:
    """A study with a few finished trials, as `report` and `studies` would find one."""
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    space = {"family": CategoricalDistribution(["tcn"]), "depth": IntDistribution(1, 4)}
    for depth, value in ((1, 0.91), (2, 0.95), (3, 0.97)):
        study.add_trial(optuna.trial.create_trial(params={"family": "tcn", "depth": depth}, distributions=space,
                                                  value=value))


def delete_study(url: str, name: str) -> None:
    import optuna

    optuna.delete_study(study_name=name, storage=url)


def reachable(url: str) -> bool:
    """A server listens where the URL points (the driver is the command's business)."""
    where = urlsplit(url)
    try:
        socket.create_connection((where.hostname or "127.0.0.1", where.port or 5432), timeout=2).close()
        return True
    except OSError:
        return False


def time_once(executable: str, args: list[str], cwd: Path) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([executable, *args], cwd=cwd, capture_output=True)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurosearch", action="append", metavar="[LABEL=]PATH",
                        help="an executable to time (repeatable; default: `neurosearch` on PATH)")
    parser.add_argument("--runs", type=int, default=7, help="runs per command and executable")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL storage to time too (skipped when nothing listens there; '' skips it)")
    parser.add_argument("--append", action="store_true", help="append the section to bench/RESULTS.md")
    args = parser.parse_args()
    targets = [tuple(item.split("=", 1)) if "=" in item else (item, item) for item in args.neurosearch or ["neurosearch"]]
    postgres = args.postgres if args.postgres and reachable(args.postgres) else None
    pg_study = f"{STUDY}-{os.getpid()}"
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        cwd = Path(folder)
        (cwd / "search.toml").write_text(CONFIG)
        make_study(f"sqlite:///{cwd / 'optuna.db'}", STUDY)
        if postgres:
            make_study(postgres, pg_study)
        try:
            lines = commands(postgres, pg_study)
            seconds = {(i, label): [] for i in range(len(lines)) for label, _ in targets}
            codes: dict[tuple[int, str], set[int]] = {key: set() for key in seconds}
            for _ in range(args.runs):
                for i, line in enumerate(lines):
                    for label, executable in targets:
                        wall, code = time_once(executable, line, cwd)
                        seconds[i, label].append(wall)
                        codes[i, label].add(code)
        finally:
            if postgres:
                delete_study(postgres, pg_study)
    load_after = os.getloadavg()

    header = "| command | " + " | ".join(f"{label}: median s | {label}: min s | {label}: exit" for label, _ in targets)
    rows = [header + " |", "| --- |" + " ---: | ---: | ---: |" * len(targets)]
    for i, line in enumerate(lines):
        shown = shlex.join(["neurosearch", *line]).replace(pg_study, "<study>")
        cells = []
        for label, _ in targets:
            runs = seconds[i, label]
            cells += [f"{statistics.median(runs):.2f}", f"{min(runs):.2f}", "/".join(map(str, sorted(codes[i, label])))]
        rows.append(f"| `{shown}` | " + " | ".join(cells) + " |")
    used = " ".join(["python", "bench/bench_startup.py", *sys.argv[1:]])
    text = (
        heading("bench_startup") + "\n"
        f"`{used}` — {args.runs} runs per command and executable, whole processes, in a folder whose "
        f"search.toml names a SQLite study of 3 trials{'; PostgreSQL: ' + postgres if postgres else ''}. "
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after.\n\n"
        + "\n".join(rows) + "\n"
    )
    publish(text, append=args.append)


if __name__ == "__main__":
    main()
