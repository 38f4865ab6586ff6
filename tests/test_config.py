"""search.toml validation: the shipped file is valid; mistakes name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from neurosearch.search.config import load_config
from neurosearch.search.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "search.toml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid_and_resolves_paths() -> None:
    config = load_config(REPO / "search.toml")
    assert config.study.storage == f"sqlite:///{REPO / 'work' / 'optuna.db'}"
    assert config.study.work_dir == REPO / "work"
    assert config.tracking.uri == f"sqlite:///{REPO / 'mlflow' / 'mlflow.db'}"
    assert config.target.metric == "spike_auc" and config.target.threshold == 0.99
    assert config.space("tcn").depths
    # the default study compares every searchable family, with halving per depth and settled depths
    assert config.study.families == ["tcn", "mlp", "deep_unit"]
    assert config.training.pruning == "depth-halving" and config.study.stop_settled_depths


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"training\.epoch: unknown key"):
        load_config(write(tmp_path, "[training]\nepoch = 3\n"))


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"training\.epochs: .*integer.*'three'"):
        load_config(write(tmp_path, '[training]\nepochs = "three"\n'))


def test_unknown_family_and_metric(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"study\.families.*unknown family 'transformer'; known: .*tcn"):
        load_config(write(tmp_path, '[study]\nfamilies = ["transformer"]\n'))
    with pytest.raises(UserError, match=r"target\.metric.*unknown metric 'f1'"):
        load_config(write(tmp_path, '[target]\nmetric = "f1"\n'))


def test_space_section_is_validated_by_its_family(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"spaces\.tcn\.colour: unknown key"):
        load_config(write(tmp_path, '[spaces.tcn]\ncolour = "red"\n'))
    with pytest.raises(UserError, match=r"spaces\.rnn: unknown key"):
        load_config(write(tmp_path, "[spaces.rnn]\ndepths = [1]\n"))


def test_overrides_take_toml_literals(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "[training]\nepochs = 3\n"),
        ["training.epochs=5", "study.name=other", 'target.threshold=0.9', "study.families=['tcn']"],
    )
    assert config.training.epochs == 5 and config.study.name == "other" and config.target.threshold == 0.9
    with pytest.raises(UserError, match="section.key=value"):
        load_config(None, ["training.epochs"])


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(write(tmp_path, "[training\n"))
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, "[training]\nepochs = -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "neurosearch.search.cli", "run", "--config", str(bad)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "training.epochs" in output and "greater than or equal to 1" in output
    assert "Traceback" not in output


def test_cli_help_explains_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "neurosearch.search.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("run", "simulate", "report", "studies"):
        assert command in result.stdout


def test_sqlite_file_in_a_folder_that_cannot_exist_is_one_clear_error(tmp_path) -> None:
    from neurosearch.search.preflight import check_tracking

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = load_config(None, [f'tracking.uri="sqlite:///{blocker}/sub/mlflow.db"'])
    with pytest.raises(UserError, match=f"the tracking store's folder {blocker}/sub is not writable"):
        check_tracking(config.tracking.uri, str(tmp_path / "artifacts"))


def test_loading_a_config_creates_no_folder(tmp_path: Path) -> None:
    """Issue 21: `simulate` left an empty mlflow/ folder beside the config; the stores'
    folders are made by the commands that write to them."""
    (tmp_path / "search.toml").write_text('[tracking]\nuri = "sqlite:///mlflow/mlflow.db"\n')
    config = load_config(tmp_path / "search.toml")
    assert config.tracking.uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.toml"]


@pytest.mark.parametrize("metric, threshold", [("spike_auc", -1), ("spike_auc", 1.5), ("voltage_rmse", 0)])
def test_threshold_outside_the_metrics_range_is_refused(tmp_path: Path, metric: str, threshold: float) -> None:
    """Issue 10: `threshold = -1` used to report "shallowest passing depth 1"."""
    with pytest.raises(UserError, match="threshold"):
        load_config(None, [f'target.metric="{metric}"', f"target.threshold={threshold}"])
