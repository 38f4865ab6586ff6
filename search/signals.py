"""SIGTERM handled exactly like Ctrl-C.

A batch scheduler (Slurm, Kubernetes, systemd) stops a job with SIGTERM; Python's
default for it is to die on the spot, leaving a trial RUNNING until its heartbeat goes
stale and NEURON workers orphaned. The CLI installs ``raise_on_sigterm`` once, so that
SIGTERM raises ``Terminated`` (a ``KeyboardInterrupt``) and every Ctrl-C path (shards
kept, the running trial handed back, pool workers stopped) serves both signals.

Before that, while the command line starts (its imports take a while on a slow machine),
``hold_during_start_up`` keeps either signal, and ``raise_on_sigterm`` raises it as soon
as the handlers are in place: a signal during start-up ends the command with the same
line and exit code as one later.
"""

from __future__ import annotations

import signal
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread was, like Ctrl-C's ``KeyboardInterrupt``."""

    signum = signal.SIGTERM

    def __str__(self) -> str:
        return "SIGTERM"


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


_held: list[int] = []


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def hold_during_start_up() -> None:
    """Keep a SIGINT or SIGTERM that arrives before ``raise_on_sigterm`` (Python's own
    default would be a traceback from inside an import, or dying silently)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _hold)


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` and SIGINT ``KeyboardInterrupt`` in the
    main thread; a signal held during start-up is raised here, at once."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if _held:
        first = _held[0]
        _held.clear()
        raise Terminated() if first == signal.SIGTERM else KeyboardInterrupt()


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention, 128 + the signal: 130 for SIGINT (Ctrl-C), 143 for SIGTERM."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


def describe(interrupt: KeyboardInterrupt) -> str:
    """What stopped us, for a trial's fail reason: "Ctrl-C" or "SIGTERM"."""
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
