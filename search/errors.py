"""What a user is shown when something goes wrong: the one exception type that the CLI
prints as a plain message (no traceback), and database URLs with their passwords masked."""

from __future__ import annotations

from sqlalchemy.engine import make_url


class UserError(Exception):
    """A problem the user can fix: bad config, unreachable database, bad arguments."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url if "@" not in url else "***"
