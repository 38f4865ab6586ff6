"""A study read straight from Optuna's tables, for the commands that only read (``report``,
``studies``).

Opening Optuna's own ``RDBStorage`` checks the schema with Alembic and builds its ORM:
half a second before the first row, on every call of a command that should answer at
once (bench/RESULTS.md, bench_startup). Reading needs neither: a handful of SELECTs on
the tables Optuna keeps, through SQLAlchemy Core, give the same ``FrozenTrial`` objects.
Only the schema revisions in ``READS`` are read this way; any other (an older database,
a newer Optuna) goes through Optuna's storage, which knows how to read or refuse it.
Never writes: a missing SQLite file is an error here, not a new empty database.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import POSTGRES_DRIVER, UserError, first_reason, mask_url, sqlite_file

if TYPE_CHECKING:
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState

#: Optuna schema revisions (its Alembic ``version_num``) whose tables this module reads;
#: tests/test_study.py checks that the installed Optuna writes one of them
READS = ("v3.2.0.a",)

#: Optuna stores non-finite values as a type beside a NULL value
_SPECIAL = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


@dataclass
class StoredStudy:
    """What ``report`` reads of an ``optuna.Study``: its name, attributes and trials."""

    study_name: str
    directions: list[StudyDirection]
    user_attrs: dict[str, Any]
    trials: list[FrozenTrial] = field(default_factory=list)

    def get_trials(self, deepcopy: bool = False, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        """The trials, as ``optuna.Study.get_trials`` gives them (never copied: read-only)."""
        return self.trials if states is None else [t for t in self.trials if t.state in tuple(states)]


@dataclass(frozen=True)
class StudyListing:
    """One line of ``studies``."""

    name: str
    n_trials: int
    best: float | None
    started: datetime | None


class _Tables:
    """Read-only SELECTs on one connection, with ``:name`` parameters whatever the driver."""

    def __init__(self, connection: Any, named: str) -> None:
        self.connection, self.named = connection, named

    def rows(self, query: str, **params: Any) -> list[tuple]:
        if self.named == "pyformat":
            query = re.sub(r":(\w+)", r"%(\1)s", query)
        cursor = self.connection.cursor()
        try:
            cursor.execute(query, params)
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def value(self, query: str, **params: Any) -> Any:
        found = self.rows(query, **params)
        return found[0][0] if found else None


def _open(url: str) -> tuple[Any, str, tuple[type[BaseException], ...]] | None:
    """A DB-API connection to an SQLite file (read-only) or a PostgreSQL database (psycopg,
    the driver SQLAlchemy maps ``postgresql://`` to), its parameter style and its error
    class; None for any other URL, which Optuna's storage opens instead."""
    database = sqlite_file(url)
    if database is not None:
        import sqlite3

        if not database.is_file():
            raise UserError(f"cannot open the study storage {mask_url(url)}: the file {database} does not exist")
        try:
            connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
        except sqlite3.Error as exc:
            raise UserError(f"cannot open the study storage {mask_url(url)}: {first_reason(exc)}") from None
        return connection, "named", (sqlite3.Error,)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgresql+psycopg"):
        return None
    try:
        import psycopg
    except ImportError:
        raise UserError(f"cannot open the study storage {mask_url(url)}: no module named 'psycopg'{POSTGRES_DRIVER}") \
            from None
    try:
        connection = psycopg.connect(f"postgresql://{rest}", connect_timeout=10, autocommit=True)
    except psycopg.ProgrammingError:  # a URL libpq cannot parse; its message may quote the password
        return None  # Optuna's storage (SQLAlchemy's parser) says what is wrong, the password masked
    except psycopg.Error as exc:
        raise UserError(f"cannot open the study storage {mask_url(url)}: {first_reason(exc)}") from None
    return connection, "pyformat", (psycopg.Error,)


@contextmanager
def _connected(url: str) -> Iterator[_Tables | None]:
    """The storage's tables, when this module can read them (None: read through Optuna);
    one line (``UserError``) for a storage that cannot be opened or read, naming the URL
    with its password masked."""
    opened = _open(url)
    if opened is None:
        yield None
        return
    connection, named, errors = opened
    try:
        tables = _Tables(connection, named)
        yield tables if _readable(tables) else None
    except errors as exc:
        raise UserError(f"cannot read the study storage {mask_url(url)}: {first_reason(exc)}") from None
    finally:
        connection.close()


def _readable(tables: _Tables) -> bool:
    """The storage holds Optuna's tables at a revision this module reads."""
    try:
        return tables.value("SELECT version_num FROM alembic_version") in READS
    except Exception:  # no such table (not an Optuna storage, or one from before Alembic): Optuna decides
        tables.connection.rollback()
        return False


def list_studies(url: str) -> list[StudyListing]:
    """Every study in the storage: its trial count, best value and start."""
    with _connected(url) as db:
        if db is None:
            return _listings_through_optuna(url)
        counts = {row[0]: row[1:] for row in db.rows(
            "SELECT study_id, COUNT(trial_id), MIN(datetime_start) FROM trials GROUP BY study_id")}
        direction = dict(db.rows("SELECT study_id, direction FROM study_directions WHERE objective = 0"))
        best: dict[int, list[float]] = defaultdict(list)
        for study_id, value, kind in db.rows(
                "SELECT t.study_id, v.value, v.value_type FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id "
                "WHERE t.state = 'COMPLETE' AND v.objective = 0"):
            best[study_id].append(_value(value, kind))
        listings = []
        for study_id, name in db.rows("SELECT study_id, study_name FROM studies ORDER BY study_id"):
            n, started = counts.get(study_id, (0, None))
            values = best.get(study_id)
            top = (max if direction.get(study_id) == "MAXIMIZE" else min)(values) if values else None
            listings.append(StudyListing(name, int(n), top, _when(started)))
        return listings


def read_study(url: str, name: str) -> StoredStudy:
    """The study ``name``, all its trials and attributes (``UserError`` if there is none)."""
    from optuna.distributions import json_to_distribution
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState

    with _connected(url) as db:
        if db is None:
            return _through_optuna(url, name)
        study_id = db.value("SELECT study_id FROM studies WHERE study_name = :name", name=name)
        if study_id is None:
            raise UserError(f"no study named {name!r} in {mask_url(url)}")

        def attrs(table: str) -> dict[str, Any]:
            return {key: json.loads(value) for key, value in db.rows(
                f"SELECT key, value_json FROM {table} WHERE study_id = :study", study=study_id)}

        def per_trial(columns: str, table: str) -> dict[int, list[tuple]]:
            rows: dict[int, list[tuple]] = defaultdict(list)
            for row in db.rows(f"SELECT x.trial_id, {columns} FROM {table} x JOIN trials t ON x.trial_id = t.trial_id "
                               "WHERE t.study_id = :study", study=study_id):
                rows[row[0]].append(row[1:])
            return rows

        params = per_trial("x.param_name, x.param_value, x.distribution_json", "trial_params")
        values = per_trial("x.objective, x.value, x.value_type", "trial_values")
        steps = per_trial("x.step, x.intermediate_value, x.intermediate_value_type", "trial_intermediate_values")
        user = per_trial("x.key, x.value_json", "trial_user_attributes")
        system = per_trial("x.key, x.value_json", "trial_system_attributes")
        directions = [StudyDirection[d] for (d,) in db.rows(
            "SELECT direction FROM study_directions WHERE study_id = :study ORDER BY objective", study=study_id)]
        study = StoredStudy(name, directions, attrs("study_user_attributes"))
        for trial_id, number, state, start, end in db.rows(
                "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                "WHERE study_id = :study ORDER BY number", study=study_id):
            distributions = {p: json_to_distribution(d) for p, _, d in params.get(trial_id, ())}
            study.trials.append(FrozenTrial(
                number=number,
                state=TrialState[state],
                value=None,
                values=[_value(v, kind) for _, v, kind in sorted(values.get(trial_id, ()))] or None,
                datetime_start=_when(start),
                datetime_complete=_when(end),
                params={p: distributions[p].to_external_repr(v) for p, v, _ in params.get(trial_id, ())},
                distributions=distributions,
                user_attrs={k: json.loads(v) for k, v in user.get(trial_id, ())},
                system_attrs={k: json.loads(v) for k, v in system.get(trial_id, ())},
                intermediate_values={step: _value(v, kind) for step, v, kind in steps.get(trial_id, ())},
                trial_id=trial_id,
            ))
        return study


def _value(value: float | None, kind: str) -> float:
    return float(value) if kind == "FINITE" else _SPECIAL[kind]


def _when(stamp: datetime | str | None) -> datetime | None:
    """A timestamp as the driver gives it (SQLite: text) as a datetime."""
    return stamp if stamp is None or isinstance(stamp, datetime) else datetime.fromisoformat(stamp)


def _through_optuna(url: str, name: str) -> Any:
    from .workspace import load_study

    return load_study(url, name)


def _listings_through_optuna(url: str) -> list[StudyListing]:
    from .workspace import study_summaries

    return [StudyListing(s.study_name, s.n_trials, s.best_trial.value if s.best_trial else None, s.datetime_start)
            for s in study_summaries(url)]
