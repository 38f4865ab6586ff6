"""The one exception type that the CLI prints as a plain message (no traceback)."""


class UserError(Exception):
    """A problem the user can fix: bad config, unreachable database, bad arguments."""
