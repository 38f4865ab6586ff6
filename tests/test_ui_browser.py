"""`neurosearch ui` in a real browser: a tiny real study, the real command, headless Chromium.

The MLflow 3 UI is a React app, so everything is waited for (WebDriverWait), never slept
on. Needs Chromium and chromedriver (Debian: `apt-get install chromium chromium-driver`)
and the `selenium` package: skipped without them, failed on CI (env var CI set).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mlflow import MlflowClient

URL_LINE = re.compile(r"MLflow UI on (\S+): (http://127\.0\.0\.1:(\d+)/\S*)\s*$")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "neurosearch.search.cli", *args]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def chrome():
    """Headless Chromium through chromedriver."""
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver; pip install selenium)"
        if os.environ.get("CI"):
            pytest.fail(f"on CI the browser test must run: {why}")
        pytest.skip(why)
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,900"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_toml) -> Path:
    """A tiny real study (NEURON, training, MLflow) in its own folder: two trials, depths 1 and 2."""
    root = tmp_path_factory.mktemp("ui")
    (root / "search.toml").write_text(tiny_toml(name="tiny-ui", epochs=1, steps_per_epoch=2))
    result = subprocess.run(cli("run", "--no-progress"), cwd=root, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture(scope="module")
def ui(store: Path, line_reader):
    """`neurosearch ui --port <free>` as a subprocess; (URL it printed, tracking URI it named, output)."""
    port = free_port()
    process = subprocess.Popen(cli("ui", "--port", str(port)), cwd=store, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    reader = line_reader(process)
    output = reader.output
    try:
        found = reader.until(URL_LINE)
        assert found, f"neurosearch ui printed no URL:\n{''.join(output)}"
        assert int(found.group(3)) == port
        servers = psutil.Process(process.pid).children(recursive=True)  # mlflow server and its web server
        assert servers, "neurosearch ui started no MLflow server"
        yield found.group(2), found.group(1), output
    finally:
        servers = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        reader.drain()
        gone, alive = psutil.wait_procs(servers, timeout=30)
        for stray in alive:  # never leave a server behind, even when the test fails
            stray.kill()
    assert process.returncode == 0, "".join(output)
    assert "stopping the MLflow UI" in "".join(output)
    assert not alive, f"processes left running after Ctrl-C: {[p.pid for p in alive]}"


def png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", data[16:20])[0]


def test_experiment_page_shows_the_study_run_and_its_trial_runs(chrome, store: Path, ui) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, tracking_uri, _ = ui
    assert tracking_uri == f"sqlite:///{store}/tracking/mlflow.db"
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("tiny-ui")
    assert f"/#/experiments/{experiment.experiment_id}" in url  # the printed URL opens the study's experiment
    study_run = client.search_runs([experiment.experiment_id], "tags.`neurosearch.kind` = 'study'")[0]
    trial_names = sorted(r.info.run_name for r in client.search_runs(
        [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{study_run.info.run_id}'"))
    assert trial_names == ["trial 0", "trial 1"]

    def link(name: str):
        return (By.XPATH, f"//a[normalize-space(.)='{name}']")

    wait = WebDriverWait(chrome, 90)
    chrome.get(url)
    study_link = wait.until(EC.visibility_of_element_located(link("study tiny-ui")))
    assert study_link.get_attribute("href").split("?")[0].endswith(
        f"/#/experiments/{experiment.experiment_id}/runs/{study_run.info.run_id}")
    # the trials are the study run's children: folded under it until it is expanded
    assert not chrome.find_elements(*link("trial 0"))
    row = study_link.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
    chrome.execute_script("arguments[0].click()", row.find_element(By.CSS_SELECTOR, "button"))
    for name in trial_names:
        child = wait.until(EC.visibility_of_element_located(link(name)))
        assert "/runs/" in child.get_attribute("href")

    # the study run's depth frontier, served by the UI's server from the run's artifacts
    chrome.get(f"{url.split('/#')[0]}/#/experiments/{experiment.experiment_id}/runs/{study_run.info.run_id}"
               "/artifacts/depth_frontier.png")
    image = wait.until(EC.presence_of_element_located((By.XPATH, "//img[@alt='depth_frontier.png']")))
    shown = wait.until(lambda driver: driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", image))
    logged = Path(client.download_artifacts(study_run.info.run_id, "depth_frontier.png", str(store)))
    assert shown == png_width(logged.read_bytes())


def test_ui_refuses_a_port_in_use(tmp_path: Path, tiny_toml) -> None:
    (tmp_path / "search.toml").write_text(tiny_toml(name="tiny-ui"))  # no study needed: the port is checked first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(cli("ui", "--port", str(port)), cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stdout and "Traceback" not in result.stderr


def test_ui_store_mistakes_are_one_line(tmp_path: Path) -> None:
    """A store the server cannot open, or a database it cannot reach: one line, no traceback
    (and no password), and no server left behind."""
    from neurosearch.search.errors import UserError
    from neurosearch.search.tracking.ui import start

    garbage = tmp_path / "garbage.db"
    garbage.write_text("not an SQLite database\n" * 20)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(UserError) as caught:
        start(f"sqlite:///{garbage}", str(tmp_path / "artifacts"), port=free_port(), wait_s=120)
    message = str(caught.value)
    assert "exited with code" in message and "file is not a database" in message and "\n" not in message, message
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before

    with pytest.raises(UserError) as caught:  # nothing listens on port 1
        start("postgresql://someone:secret@127.0.0.1:1/mlflow", str(tmp_path / "artifacts"), port=free_port())
    message = str(caught.value)
    assert message.startswith("cannot reach the tracking store postgresql://someone:***@127.0.0.1:1/mlflow: ")
    assert "secret" not in message and "\n" not in message, message
