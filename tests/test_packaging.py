"""Installing neurosearch must not shadow (or be shadowed by) the PyPI `spaces`,
`simulators` or `mlflow` distributions: the folders live under `neurosearch.*`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import importlib.util, json, mlflow, neurosearch.spaces, neurosearch.simulators, neurosearch.search
def origin(name):
    spec = importlib.util.find_spec(name)
    return None if spec is None else (spec.origin or str(list(spec.submodule_search_locations or [])))
print(json.dumps({"spaces": origin("spaces"), "simulators": origin("simulators"), "search": origin("search"),
                  "mlflow": mlflow.__file__, "ours": neurosearch.spaces.__file__}))
"""


def test_top_level_names_stay_free(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, check=True)
    found = json.loads(result.stdout)
    for name in ("spaces", "simulators", "search"):
        assert found[name] is None or str(REPO) not in found[name], f"`import {name}` resolves into the repo"
    assert str(REPO) not in found["mlflow"], f"mlflow resolves to {found['mlflow']}"
    assert Path(found["ours"]).resolve().parent == REPO / "spaces"


def test_mlflow_folder_is_not_a_package() -> None:
    assert not (REPO / "mlflow" / "__init__.py").exists()
