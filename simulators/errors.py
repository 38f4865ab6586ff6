"""The simulator's one user-facing exception.

Everything a user can get wrong on the ground-truth side (a mechanism that does not
compile, a builder file that is missing or returns the wrong thing, a dataset folder
that is incomplete or corrupt) surfaces as a ``SimulatorError`` whose message is meant
to be printed as-is, without a traceback.
"""


class SimulatorError(Exception):
    """A simulator problem the user can fix; the message says what and where."""


class CalibrationError(SimulatorError):
    """The drive could not be calibrated; ``record`` holds the measured rate-vs-drive curve,
    which the caller keeps beside the calibrations so the user can read it."""

    def __init__(self, message: str, record: dict) -> None:
        super().__init__(message)
        self.record = record
