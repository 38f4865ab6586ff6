"""One dataset simulated in parts by separate processes (a SLURM job array, several machines).

Part K of N simulates the indices i with ``i % N == K - 1`` (interleaved, so every part
gets the same number of simulations of each split). Parts share the dataset folder but
never its manifest: each keeps its own record, ``parts/part-K-of-N.json``, shaped like
the manifest (one shard entry per finished index, the cell's inputs, the drive
calibration) and written atomically by its one writer, so no file lock is needed on a
shared file system where locking is unreliable. A plain ``generate`` merges the records
into the manifest, verifying every shard's checksum, and simulates only what no record
holds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from . import storage
from .errors import SimulatorError

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
_PART = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Part:
    """Part ``k`` of ``n`` (1 ≤ k ≤ n, as in ``sbatch --array=1-N``)."""

    k: int
    n: int

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise SimulatorError(
                f"--part {self.k}/{self.n}: K/N needs 1 ≤ K ≤ N (with SLURM: --array=1-N and "
                "--part ${SLURM_ARRAY_TASK_ID}/N)"
            )

    @classmethod
    def parse(cls, text: str) -> "Part":
        """``"K/N"`` as given on the command line."""
        match = _PART.fullmatch(text)
        if match is None:
            raise SimulatorError(f"--part {text!r}: expected K/N, e.g. --part 2/8 (part 2 of 8)")
        return cls(int(match[1]), int(match[2]))

    def indices(self, n_simulations: int) -> list[int]:
        """The simulations this part runs."""
        return list(range(self.k - 1, n_simulations, self.n))

    def record_file(self, folder: Path) -> Path:
        return Path(folder) / PARTS_DIR / f"part-{self.k}-of-{self.n}.json"

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


def part_records(folder: Path) -> list[dict]:
    """Every part record in a dataset folder (unreadable ones are skipped)."""
    records = (storage.read_record(path) for path in sorted((Path(folder) / PARTS_DIR).glob("part-*-of-*.json")))
    return [record for record in records if record is not None]


def _drive(record: dict) -> list[float] | None:
    return (record.get("calibration") or {}).get("rate_scale")


def merge_records(target: dict, sources: Iterable[dict], indices: Iterable[int] | None = None) -> list[int]:
    """Fill ``target``'s unrecorded shards (of ``indices``; default all) from other records
    of the same dataset simulated with the same drive; return the indices taken.

    ``target`` adopts the first drive calibration it meets if it has none; a source
    with another drive is skipped with a warning (its shards are other data). Entries
    are taken as recorded; the caller verifies the shard files' checksums."""
    n = len(target["shards"])
    wanted = range(n) if indices is None else indices
    taken: list[int] = []
    for source in sources:
        if source is target or source.get("config_hash") != target["config_hash"] or len(source.get("shards", [])) != n:
            continue
        if not any(source["shards"]):
            continue
        if target.get("calibration") is None and source.get("calibration") is not None:
            target["calibration"] = source["calibration"]
        if _drive(source) != _drive(target):
            log.warning("dataset %s: a record made with drive %s, not %s, is ignored", target["config_hash"],
                        _drive(source), _drive(target))
            continue
        if target.get("n_inputs") is None:
            target["n_inputs"], target["inputs"] = source.get("n_inputs"), source.get("inputs")
        for i in wanted:
            if target["shards"][i] is None and source["shards"][i] is not None:
                target["shards"][i] = source["shards"][i]
                taken.append(i)
    return taken


@dataclass
class PartResult:
    """What ``generate_part`` did, and what the whole dataset still lacks by all records."""

    folder: Path
    part: Part
    indices: list[int]
    generated: list[int]
    missing: list[int]
    merged: bool = False
    """Whether the dataset's manifest is complete already."""

    @property
    def missing_parts(self) -> list[int]:
        """The parts (of this part's N) that hold a missing simulation."""
        return sorted({i % self.part.n + 1 for i in self.missing})

    def summary(self) -> str:
        """One line: what the part did, and what is still missing overall."""
        text = (f"part {self.part}: simulated {len(self.generated)}, "
                f"{len(self.indices) - len(self.generated)} already done, of its {len(self.indices)} simulations; ")
        if self.merged:
            return text + "the dataset is complete"
        if not self.missing:
            return text + "all parts are done: `neurosearch simulate` (or `run`) merges them into the dataset"
        parts = ", ".join(map(str, self.missing_parts))
        return text + f"the dataset still misses {len(self.missing)} simulation(s), in part(s) {parts} of {self.part.n}"
