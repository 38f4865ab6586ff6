"""One simulation as a source file gives it, before neurosearch's discard, and the input
metadata every file of one dataset must share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SimulatorError


class BadSource(SimulatorError):
    """A source file that cannot be imported; the message names the file and what is wrong."""


@dataclass
class Recording:
    """Input events, somatic voltage at 1 ms and output spikes of one simulation, in whole
    ms bins from its start (0 .. T-1)."""

    input_index: np.ndarray  # int32
    input_time: np.ndarray  # int32
    voltage: np.ndarray  # float32 [T], mV
    output_spikes: np.ndarray  # int32
    split: str | None = None  # the split the file itself names (exchange format), if any

    @property
    def duration_ms(self) -> int:
        return int(self.voltage.shape[0])

    def after(self, discard_ms: int) -> dict[str, np.ndarray]:
        """The shard arrays with the first ``discard_ms`` dropped and times shifted to start at 0."""
        keep = self.input_time >= discard_ms
        spikes = self.output_spikes[self.output_spikes >= discard_ms] - discard_ms
        return {
            "input_index": self.input_index[keep].astype(np.int32),
            "input_time": (self.input_time[keep] - discard_ms).astype(np.int32),
            "voltage": self.voltage[discard_ms:].astype(np.float32),
            "output_spikes": spikes.astype(np.int32),
        }


@dataclass
class Inputs:
    """What each input is: kind (0 excitatory, 1 inhibitory), branch id (``group``; the
    deep-unit family gives each branch its own unit), section name, position along the
    section (NaN: unknown) and path distance from the soma (NaN: unknown)."""

    kind: np.ndarray
    group: np.ndarray
    section: list[str] = field(default_factory=list)
    x: np.ndarray | None = None
    distance_um: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.kind.size)

    def as_json(self) -> dict:
        """The manifest's ``inputs`` (the form simulated datasets record)."""
        n = len(self)

        def floats(values: np.ndarray | None, digits: int) -> list[float | None]:
            values = np.full(n, np.nan) if values is None else values
            return [None if v != v else round(float(v), digits) for v in values.tolist()]

        return {
            "kind": [int(k) for k in self.kind.tolist()],
            "group": [int(g) for g in self.group.tolist()],
            "section": list(self.section) or [""] * n,
            "x": floats(self.x, 6),
            "distance_um": floats(self.distance_um, 3),
        }


def binned(ms: np.ndarray, what: str, where: str, duration_ms: int) -> np.ndarray:
    """Times in ms as whole-ms bins (floor: bin t holds [t, t+1)); a clear error for a time
    that is not finite, negative, or at or beyond the simulation's end."""
    ms = np.asarray(ms, dtype=np.float64).ravel()
    if ms.size and not np.all(np.isfinite(ms)):
        raise BadSource(f"{where}: {what} holds a time that is not a number")
    bins = np.floor(ms).astype(np.int64)
    bad = (bins < 0) | (bins >= duration_ms)
    if bad.any():
        raise BadSource(f"{where}: {what} at {ms[bad][0]:g} ms lies outside the simulation (0 to {duration_ms} ms)")
    return bins.astype(np.int32)
