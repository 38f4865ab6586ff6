"""One worker at a time sets a study up.

Workers started together (a SLURM array, four terminals) all find a fresh study, and
its set-up is several writes that Optuna does not make atomic: create or join the
study, create the MLflow study run and store its id, record the study's attributes,
enqueue the plan's slots. Two workers interleaving them enqueue the plan twice (every
slot trained twice) or make two MLflow study runs. The set-up is short (seconds), so
it is simply serialised, with the lock the database itself offers:

* PostgreSQL: a session advisory lock (released by the server if the worker dies);
* SQLite: a file lock beside the database file (released by the kernel likewise);
* any other backend: no lock (only SQLite and PostgreSQL are supported for sharing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from neurosearch.simulators.locking import exclusive_lock

from ..errors import UserError, first_reason, mask_url, sqlite_file

#: a worker that holds the lock longer than this is stuck (set-up takes seconds)
WAIT_S = 600


def lock_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, the same on every machine."""
    digest = hashlib.sha256(f"neurosearch study set-up: {name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def study_lock(url: str, name: str, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the set-up lock of study ``name`` in the storage at ``url`` for the block."""
    database = sqlite_file(url)
    if database is not None:
        with exclusive_lock(Path(f"{database}.setup.lock")):
            yield
        return
    try:
        backend = make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        backend = None
    if backend != "postgresql":
        yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"SET lock_timeout = {int(wait_s * 1000)}"))
            try:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
            except sqlalchemy.exc.OperationalError as exc:
                raise UserError(
                    f"study {name!r} on {mask_url(url)}: another worker has been setting it up for over "
                    f"{wait_s:.0f} s ({first_reason(exc)}); is a worker stuck?"
                ) from None
            connection.commit()  # the lock belongs to the session, not to a transaction
            try:
                yield
            finally:
                try:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
                    connection.commit()
                except sqlalchemy.exc.DBAPIError:
                    pass  # the connection is gone, and the server dropped its locks with it
    finally:
        engine.dispose()
