"""What a user is shown when something goes wrong: the one exception type that the CLI
prints as a plain message (no traceback), and database URLs: their passwords masked, and
the SQLite file one names."""

from __future__ import annotations

import re
from pathlib import Path


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


def sqlite_file(url: str) -> Path | None:
    """The database file an ``sqlite:///…`` URL names (None: another database, an
    in-memory one, or no URL at all)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)
