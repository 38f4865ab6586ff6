"""What several test modules share: the tiny real study they run through the CLI."""

from __future__ import annotations

from typing import Callable

import pytest

TINY_STUDY = """
[study]
name = "{name}"
storage = "sqlite:///state/optuna.db"
work_dir = "state"
trials_per_depth = 1
skip_deeper_once_passing = false   # both depths train, whatever depth 1 reaches
heartbeat_s = 2
grace_s = 6

[tracking]
uri = "sqlite:///tracking/mlflow.db"
artifacts = "tracking/artifacts"

[target]
threshold = 0.5

[training]
epochs = {epochs}
steps_per_epoch = {steps_per_epoch}
batch_size = 4
window_ms = 300
burn_in_ms = 60

[simulator]
model = "l5pc"
n_simulations = 6
duration_ms = 1300
discard_ms = 300
seed = 2          # with this seed the valid and the test simulation both hold output spikes
processes = 2

[simulator.stimulus]
rate_scale = [1.2, 2.2]    # given, not calibrated: keeps the tiny study short

[spaces.tcn]
depths = [1, 2]
"""


@pytest.fixture(scope="session")
def tiny_toml() -> Callable[..., str]:
    """search.toml text of a tiny study (6 × 1 s of the bundled cell, TCN depths 1–2, SQLite, local MLflow)."""

    def make(name: str = "tiny", epochs: int = 2, steps_per_epoch: int = 4) -> str:
        return TINY_STUDY.format(name=name, epochs=epochs, steps_per_epoch=steps_per_epoch)

    return make
