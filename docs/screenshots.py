"""Screenshots of a finished study in the MLflow UI, for the README.

Runs the real ``neurosearch ui`` on a study's tracking store, drives headless Chromium
to the experiment page (study run expanded to show its trial runs) and to the study
run's depth-frontier artifact, and saves

    docs/mlflow-study.png      the experiment page: the study run and its child runs
    docs/mlflow-frontier.png   the study run's depth_frontier.png artifact

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``)
and ``pip install selenium`` (both in the ``test`` extra / CI). After ``neurosearch run``:

    python docs/screenshots.py                      # the study of ./search.toml
    python docs/screenshots.py -c other.toml --set 'study.name="l5pc-ampa"'   # any other
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from neurosearch.search.config import load_config

HERE = Path(__file__).resolve().parent
#: columns shown next to the run names (MLflow's own column keys)
COLUMNS = ["attributes.`Duration`", "tags.`family`", "tags.`depth`", "tags.`state`", "tags.`n_params`",
           "metrics.`test_spike_auc`"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ui(config: Path, sets: list[str], port: int) -> tuple[subprocess.Popen, str]:
    """``neurosearch ui`` in the background; (process, the URL it prints)."""
    command = [sys.executable, "-m", "neurosearch.search.cli", "ui", "--config", str(config), "--port", str(port)]
    for item in sets:
        command += ["--set", item]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    for line in process.stdout:  # the URL line comes once the server answers
        seen.append(line)
        found = re.search(r"(https?://\S+)\s*$", line)
        if found and "MLflow UI on" in line:
            return process, found.group(1)
    process.wait()
    raise SystemExit("neurosearch ui did not start:\n" + "".join(seen))


def stop_ui(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)  # `neurosearch ui` stops its MLflow server on SIGTERM
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def browser(width: int, height: int) -> webdriver.Chrome:
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--hide-scrollbars", f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if binary:
        options.binary_location = binary
    driver = shutil.which("chromedriver")
    chrome = webdriver.Chrome(options=options, service=Service(driver) if driver else None)
    inner = chrome.execute_script("return [window.innerWidth, window.innerHeight]")
    chrome.set_window_size(2 * width - inner[0], 2 * height - inner[1])  # the page, not the window, at WIDTHxHEIGHT
    return chrome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", type=Path, default=Path("search.toml"))
    parser.add_argument("--set", "-s", dest="sets", action="append", default=[],
                        help="config override, as for neurosearch")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the PNGs (default: docs/)")
    parser.add_argument("--port", type=int, default=0, help="port for the UI (default: a free one)")
    parser.add_argument("--size", default="1440x960", help="browser window, WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    config = load_config(args.config, args.sets)
    client = MlflowClient(tracking_uri=config.tracking.uri)
    experiment = client.get_experiment_by_name(config.experiment_name)
    if experiment is None:
        raise SystemExit(f"no MLflow experiment {config.experiment_name!r} in {config.tracking.uri}: "
                         "run the study first")
    runs = client.search_runs([experiment.experiment_id], "tags.`neurosearch.kind` = 'study'")
    if not runs:
        raise SystemExit(f"experiment {config.experiment_name!r} has no study run")
    study_run = runs[0]
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{study_run.info.run_id}'", max_results=1000)

    process, url = start_ui(args.config, args.sets, args.port or free_port())
    driver = browser(width, height)
    try:
        base = url.split("/#")[0]
        driver.get(base + "/")
        # what a returning user would have: the assistant panel closed, the study run expanded, useful columns
        state = {"runsExpanded": {study_run.info.run_id: True}, "selectedColumns": COLUMNS,
                 "orderByKey": "attributes.start_time", "orderByAsc": False}
        driver.execute_script(
            "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
            "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
            "localStorage.setItem(arguments[0], arguments[1]);",
            f'MLflowLocalStorage-1.1-ExperimentPage-["{experiment.experiment_id}"]-ReactComponentState',
            json.dumps(state),
        )
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        study_link = wait.until(EC.presence_of_element_located(
            (By.XPATH, f"//a[normalize-space(.)='{study_run.info.run_name}']")))
        if children and not driver.find_elements(By.XPATH, f"//a[normalize-space(.)='{children[0].info.run_name}']"):
            row = study_link.find_element(By.XPATH, "./ancestor::*[@role='row'][1]")
            driver.execute_script("arguments[0].click()", row.find_element(By.CSS_SELECTOR, "button"))
        for child in children[:3]:
            wait.until(EC.presence_of_element_located((By.XPATH, f"//a[normalize-space(.)='{child.info.run_name}']")))
        time.sleep(2)  # let the table settle (column widths, fonts)
        args.out.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out / "mlflow-study.png"))

        driver.get(f"{base}/#/experiments/{experiment.experiment_id}/runs/{study_run.info.run_id}"
                   "/artifacts/depth_frontier.png?workflowType=machine_learning")
        image = wait.until(EC.presence_of_element_located((By.XPATH, "//img[@alt='depth_frontier.png']")))
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image))
        time.sleep(1)
        driver.save_screenshot(str(args.out / "mlflow-frontier.png"))
    finally:
        driver.quit()
        stop_ui(process)
    print(f"wrote {args.out / 'mlflow-study.png'} and {args.out / 'mlflow-frontier.png'}")


if __name__ == "__main__":
    main()
