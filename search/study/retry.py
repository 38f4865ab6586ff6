"""The one way neurosearch calls a store that may be briefly away.

Both stores (Optuna's RDB storage and MLflow's tracking store) are databases that can
restart, be unreachable for a moment, or be created by several workers at once. A
``Retry`` says which errors are worth waiting out, for how long, and what happens
when the call still fails: raise (the caller decides) or warn and return None (the
call was optional, e.g. logging to MLflow, and must never cost a trial).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from sqlalchemy.exc import IntegrityError, ProgrammingError

from neurosearch.simulators.locking import exclusive_lock

from ..errors import sqlite_file

log = logging.getLogger(__name__)
T = TypeVar("T")


def doubling(first_s: float, most_s: float) -> Callable[[int], float]:
    """Waits of first_s, 2·first_s, ... capped at most_s (n: retries so far)."""
    return lambda n: min(first_s * 2**n, most_s)


def jittered(low_s: float, high_s: float) -> Callable[[int], float]:
    """A random wait in [low_s, high_s], so racing workers do not retry in step."""
    return lambda n: random.uniform(low_s, high_s)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class Retry:
    """When to call again, for how long, and what to do when the call keeps failing.

    ``when``: the errors worth waiting out (any other error propagates at once).
    ``seconds`` / ``attempts``: give up once either is used up (None: no limit).
    ``wait``: seconds to sleep before retry n (n = 0, 1, ...).
    ``give_up``: "raise" the last error, or "warn" and return None.
    ``what``: what the call does, for the log lines.
    """

    when: Callable[[BaseException], bool]
    seconds: float | None = None
    attempts: int | None = None
    wait: Callable[[int], float] = doubling(0.5, 5.0)
    give_up: Literal["raise", "warn"] = "raise"
    what: str = "call"
    warn_on_retry: bool = False

    def lasting(self, seconds: float) -> "Retry":
        """This policy with another deadline (e.g. the config's ``reconnect_s``)."""
        return replace(self, seconds=seconds)

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``function(*args, **kwargs)``, retried by this policy."""
        deadline = None if self.seconds is None else time.monotonic() + self.seconds
        tries = 0
        while True:
            try:
                return function(*args, **kwargs)
            except Exception as exc:  # KeyboardInterrupt is never retried or swallowed
                if not self.when(exc):
                    raise
                tries += 1
                out_of_time = deadline is not None and time.monotonic() > deadline
                if out_of_time or (self.attempts is not None and tries >= self.attempts):
                    if self.give_up == "raise":
                        raise
                    log.warning("%s failed, going on without it: %s", self.what, _first_line(exc))
                    return None
                if self.warn_on_retry and tries == 1:  # once per call: the wait may take minutes
                    log.warning("%s failed (%s); retrying for up to %.0f s", self.what,
                                _first_line(exc.__cause__ or exc), self.seconds or 0)
                time.sleep(self.wait(tries - 1))

    def __call__(self, function: Callable[..., T]) -> Callable[..., T | None]:
        """Use the policy as a decorator."""

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> T | None:
            return self.call(function, *args, **kwargs)

        return call


def _schema_race(exc: BaseException) -> bool:
    return isinstance(exc, (IntegrityError, ProgrammingError))


#: First use of a shared SQL store: Optuna's storage and MLflow's tracking store create
#: their tables (and run their migrations) on first use; workers started together on a
#: fresh database race to do it, and the losers see "duplicate key"/"already exists"
#: although the schema is now fine. Such a set-up is simply tried again.
FIRST_USE = Retry(when=_schema_race, attempts=8, wait=jittered(0.5, 2.0), what="creating the store's schema")


@contextlib.contextmanager
def sqlite_first_use(url: str) -> Iterator[None]:
    """Hold a file lock next to an SQLite database while a store opens it (a no-op for
    any other database).

    Retrying is not enough for SQLite: its DDL is not transactional with the rest of a
    set-up, so a loser of the race sees "table ... already exists" (an OperationalError,
    indistinguishable from a real failure), and MLflow runs its Alembic migrations one
    ALTER at a time, so a retry can meet a schema another process is half-way through
    migrating. One process at a time creates it; the others then find it finished. The
    lock costs one flock per open after that."""
    database = sqlite_file(url)
    if database is None or not database.parent.is_dir():  # nothing to lock, or the open will fail with its own message
        yield
        return
    with exclusive_lock(Path(f"{database}.lock")):
        yield


#: Something optional (plots, artifacts, the model registry): any error is logged and
#: the caller goes on; nothing is retried.
NEVER_FAILS = Retry(when=lambda exc: True, attempts=1, give_up="warn", what="an optional step")


def never_fails(what: str) -> Retry:
    """``NEVER_FAILS`` naming ``what`` in its warning."""
    return replace(NEVER_FAILS, what=what)
