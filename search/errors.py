"""What a user is shown when something goes wrong: the one exception type that the CLI
prints as a plain message (no traceback), and URLs with their passwords masked."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url


class UserError(Exception):
    """A problem the user can fix: bad config, unreachable database, bad arguments."""


#: ``scheme://user:`` ... ``@``: the password is everything up to the last ``@`` before
#: the host, so a raw ``@``, ``:``, ``\`` or ``"`` in it is masked too
_CREDENTIALS = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@'\"]*:)\S*@")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, also when it does not parse."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return mask_secrets(url)


def mask_secrets(text: str) -> str:
    """``text`` with the password of every URL in it replaced by *** (error messages,
    params and tags can quote a URL anywhere)."""
    return _CREDENTIALS.sub(r"\1***@", text)
