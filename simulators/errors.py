"""The simulator's one user-facing exception.

Everything a user can get wrong on the ground-truth side (a mechanism that does not
compile, a builder file that is missing or returns the wrong thing, a dataset folder
that is incomplete or corrupt) surfaces as a ``SimulatorError`` whose message is meant
to be printed as-is, without a traceback.
"""


class SimulatorError(Exception):
    """A simulator problem the user can fix; the message says what and where."""
