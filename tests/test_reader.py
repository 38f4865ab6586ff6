"""`report` and `studies` read Optuna's tables directly (search/study/reader.py): what they
read must be what Optuna's own storage reads, on real SQLite and PostgreSQL databases,
for every state a trial can be in; and a storage they cannot read goes through Optuna."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy.engine import make_url

from neurosearch.search.errors import UserError, sqlite_file
from neurosearch.search.study.reader import READS, list_studies, read_study

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"family": CategoricalDistribution(["tcn", "mlp"]), "depth": IntDistribution(1, 4),
         "lr": FloatDistribution(1e-4, 1e-1, log=True)}


def _fill(url: str) -> None:
    """Two studies; the first holds a trial in every state, values at the edges (inf, NaN
    steps), user and system attributes of several JSON types."""
    study = optuna.create_study(study_name="cells", storage=url, direction="maximize")
    study.set_user_attr("confirmation:tcn:1", {"passes": False, "test": {"spike_auc": [0.98, 0.97, 0.99]}})
    study.set_user_attr("families", ["tcn", "mlp"])
    params = {"family": "mlp", "depth": 2, "lr": 3e-3}
    study.add_trial(create_trial(params=params, distributions=SPACE, value=0.93,
                                 intermediate_values={0: 0.5, 1: float("inf"), 2: 0.93},
                                 user_attrs={"n_params": 1234, "spec": {"widths": [8, 8]}},
                                 system_attrs={"fixed_params": {"family": "mlp", "depth": 2}}))
    study.add_trial(create_trial(params={**params, "depth": 3}, distributions=SPACE, state=TrialState.PRUNED,
                                 intermediate_values={0: float("nan")}))
    study.add_trial(create_trial(params={**params, "depth": 1}, distributions=SPACE, state=TrialState.FAIL,
                                 user_attrs={"fail_reason": "out of memory"}))
    study.add_trial(create_trial(params={**params, "depth": 4}, distributions=SPACE, value=float("-inf")))
    study.enqueue_trial({"family": "tcn", "depth": 1})  # WAITING
    running = study.ask()  # takes the enqueued trial: RUNNING
    running.report(0.7, 0)
    study.enqueue_trial({"family": "tcn", "depth": 2})
    other = optuna.create_study(study_name="twin", storage=url, direction="minimize")
    other.add_trial(create_trial(params=params, distributions=SPACE, value=2.5))
    other.add_trial(create_trial(params=params, distributions=SPACE, value=1.5))


def _same_trial(ours: optuna.trial.FrozenTrial, theirs: optuna.trial.FrozenTrial) -> None:
    nan_free = {k: (None if v != v else v) for k, v in theirs.intermediate_values.items()}
    assert {k: (None if v != v else v) for k, v in ours.intermediate_values.items()} == nan_free
    for name in ("number", "state", "values", "params", "distributions", "user_attrs", "system_attrs",
                 "datetime_start", "datetime_complete", "_trial_id"):
        assert getattr(ours, name) == getattr(theirs, name), name


def _check(url: str) -> None:
    _fill(url)
    theirs = optuna.load_study(study_name="cells", storage=url)
    ours = read_study(url, "cells")
    assert ours.study_name == "cells" and ours.directions == theirs.directions
    assert ours.user_attrs == theirs.user_attrs
    assert len(ours.trials) == len(theirs.trials) == 6
    for a, b in zip(ours.get_trials(), theirs.get_trials(deepcopy=False)):
        _same_trial(a, b)
    assert [t.number for t in ours.get_trials(states=(TrialState.COMPLETE,))] == [0, 3]
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(url)}
    listed = {s.name: s for s in list_studies(url)}
    assert set(listed) == set(summaries) == {"cells", "twin"}
    for name, summary in summaries.items():
        assert listed[name].n_trials == summary.n_trials
        assert listed[name].best == summary.best_trial.value
        assert listed[name].started == summary.datetime_start
    with pytest.raises(UserError, match="no study named 'nope'"):
        read_study(url, "nope")


def test_reads_what_optunas_storage_reads_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path}/optuna.db")


@pytest.mark.postgres
def test_reads_what_optunas_storage_reads_on_postgresql(postgres) -> None:
    _check(postgres.database("ns_reader"))


def test_the_installed_optuna_writes_a_schema_the_reader_reads(tmp_path: Path) -> None:
    # a newer Optuna with a new schema would still be read (through its own storage), only
    # slower: this says so, so that READS is brought up to date
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(storage=url)
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision in READS


def test_an_unknown_schema_revision_is_read_through_optuna(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    _fill(url)
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'v99'")
    with pytest.raises(UserError, match="cannot"):  # Optuna's storage refuses a revision it does not know
        read_study(url, "cells")


def test_a_missing_sqlite_file_is_an_error_and_stays_missing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        list_studies(f"sqlite:///{tmp_path}/nope.db")
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize("url", [
    "sqlite:///optuna.db", "sqlite:////tmp/x.db", "sqlite://", "sqlite:///:memory:", "sqlite:///a\\tb.db",
    "sqlite+pysqlite:///x.db?timeout=5", "sqlite:///file with space.db", "sqlite:///%41.db", "sqlite:///a@b:c.db",
    "sqlite://host/x.db", "postgresql://u:p@h/db", "mysql+pymysql://u@h/sqlite.db",
])
def test_the_sqlite_file_is_the_one_sqlalchemy_opens(url: str) -> None:
    parsed = make_url(url)
    expected = parsed.database if parsed.get_backend_name() == "sqlite" else None
    expected = None if expected in (None, "", ":memory:") else Path(expected)
    assert sqlite_file(url) == expected


def test_values_at_the_edges_survive(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    _fill(url)
    trials = read_study(url, "cells").trials
    assert trials[0].intermediate_values[1] == math.inf and math.isnan(trials[1].intermediate_values[0])
    assert trials[3].value == -math.inf
