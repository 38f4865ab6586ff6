"""What a user is shown when something goes wrong: the one exception type that the CLI
prints as a plain message (no traceback), and database URLs: their passwords masked, and
the SQLite file one names."""

from __future__ import annotations

import re
from pathlib import Path

#: the fix for a postgresql:// URL without its driver: the README's plain install leaves
#: psycopg out, and Optuna's "Please install appropriate one." does not say which
POSTGRES_DRIVER = (' (the PostgreSQL driver is missing: pip install "neurosearch[postgres]",'
                   ' or pip install -e ".[postgres]" from a checkout)')


class UserError(Exception):
    """A problem the user can fix: bad config, unreachable database, bad arguments."""


#: ``scheme://user:`` ... ``@``: the password is everything up to the ``@`` that starts
#: the host (the first ``@`` followed by a word without another ``@``), so a raw ``@``,
#: ``:``, ``\``, ``"`` or space in it is masked too; only ``/`` ends it (``http://h:80/a b@c``
#: holds no password)
_CREDENTIALS = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@'\"]*:)[^/\n]*?@(?=[^@\s]*(?:\s|$))")


def first_reason(exc: BaseException) -> str:
    """The first line of what went wrong underneath (the driver's error, the socket's)."""
    cause = getattr(exc, "orig", None) or getattr(exc, "reason", None) or exc  # SQLAlchemy's, urllib's
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, also when it does not parse."""
    from sqlalchemy.engine import make_url  # here, not at import: the CLI starts without SQLAlchemy

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return mask_secrets(url)


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by *** (error messages,
    params and tags can quote a URL anywhere)."""
    return _CREDENTIALS.sub(r"\1***@", text)


#: ``sqlite[+driver]://[host]/database[?query]``, as SQLAlchemy reads it; parsed here without
#: importing SQLAlchemy (0.2 s), which the commands that answer at once cannot spend
_SQLITE_URL = re.compile(r"sqlite(?:\+\w+)?://[^/?]*(?:/(?P<database>[^?]*))?(?:\?.*)?", re.S)
#: what any database URL starts with
_URL_SCHEME = re.compile(r"[A-Za-z][\w+.-]*://")


def sqlite_file(url: str) -> Path | None:
    """The database file an ``sqlite:///…`` URL names (None: another database, an
    in-memory one, or no URL at all); the same file SQLAlchemy opens (tests/test_config.py)."""
    from urllib.parse import unquote

    match = _SQLITE_URL.fullmatch(url)
    database = unquote(match.group("database") or "") if match else ""
    return Path(database) if database and database != ":memory:" else None


def looks_like_url(url: str) -> bool:
    """``scheme://…``: worth handing to a database driver (garbage is refused by SQLAlchemy's parser)."""
    return _URL_SCHEME.match(url) is not None
