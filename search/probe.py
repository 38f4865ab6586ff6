"""Is a store there at all? One short connection before anything waits on it.

MLflow (and ``mlflow server``) retry an unreachable database for minutes before they
say so; a wrong host, port or name should be one line within seconds. Used by the
preflight of ``run`` and by ``neurosearch ui``.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import sqlalchemy
from sqlalchemy.engine import make_url

#: seconds a probe waits for a store that does not answer (a wrong host, a firewall)
PROBE_TIMEOUT_S = 5


def database(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Connect once with a short timeout and read the table list (as MLflow does before it
    retries for a minute and a half); raises the driver's error."""
    parsed = make_url(url)
    timeout_drivers = ("postgresql", "mysql")  # libpq's and MySQL's connect_timeout
    connect_args = {"connect_timeout": timeout_s} if parsed.get_backend_name() in timeout_drivers else {}
    engine = sqlalchemy.create_engine(parsed, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def server(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Any HTTP answer means the tracking server is there; MLflow's own client then
    handles authentication and retries a blip. Raises ``URLError`` (an ``OSError``)."""
    try:
        urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:  # an answer, if not the one hoped for
        pass
