"""How long a wrong tracking store takes to be reported: the preflight check against
MLflow's own first open of the same store (what `run` did before the check existed).

    python bench/bench_fail_fast.py                      # nothing listens on 127.0.0.1:1
    python bench/bench_fail_fast.py --uri postgresql://user@host/mlflow

Prints the two times and appends them to bench/RESULTS.md with the machine.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

from results import heading, publish

from neurosearch.search.errors import mask_url
from neurosearch.search.preflight import check_tracking
from neurosearch.search.tracking.tracker import Tracker


def seconds_to_fail(call) -> tuple[float, str]:
    """Wall seconds until ``call`` raises, and what it raised."""
    start = time.perf_counter()
    try:
        call()
    except Exception as exc:  # the point: it must fail; how long it takes is the measurement
        return time.perf_counter() - start, type(exc).__name__
    raise SystemExit("the store answered: give a --uri nothing listens on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="postgresql://postgres@127.0.0.1:1/mlflow")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    artifacts = tempfile.mkdtemp(prefix="fail-fast-")
    checked = seconds_to_fail(lambda: check_tracking(args.uri, artifacts))
    opened = seconds_to_fail(lambda: Tracker(args.uri, artifacts, "fail-fast"))
    text = (
        heading("bench_fail_fast") + "\n"
        f"`python bench/bench_fail_fast.py --uri {mask_url(args.uri)}`\n\n"
        "| what reports the unreachable tracking store | seconds | raised |\n| --- | ---: | --- |\n"
        f"| preflight `check_tracking` (before any simulation) | {checked[0]:.2f} | {checked[1]} |\n"
        f"| MLflow's own first open (`Tracker`) | {opened[0]:.1f} | {opened[1]} |\n"
    )
    publish(text)


if __name__ == "__main__":
    main()
