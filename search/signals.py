"""SIGTERM handled exactly like Ctrl-C.

A batch scheduler (Slurm, Kubernetes, systemd) stops a job with SIGTERM; Python's
default for it is to die on the spot, leaving a trial RUNNING until its heartbeat goes
stale and NEURON workers orphaned. The CLI installs ``raise_on_sigterm`` once, so that
SIGTERM raises ``Terminated`` (a ``KeyboardInterrupt``) and every Ctrl-C path (shards
kept, the running trial handed back, pool workers stopped) serves both signals.
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


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention, 128 + the signal: 130 for SIGINT (Ctrl-C), 143 for SIGTERM."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


def describe(interrupt: KeyboardInterrupt) -> str:
    """What stopped us, for a trial's fail reason: "Ctrl-C" or "SIGTERM"."""
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
