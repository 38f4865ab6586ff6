"""System metrics (CPU, memory, disk, network; GPU utilisation and memory on NVIDIA/AMD
GPUs) on a run, through MLflow's own monitor where MLflow supports it.

MLflow samples in a thread and logs ``system/...`` metrics against an explicit run id
and tracking URI (no fluent run). It needs ``psutil``, and ``nvidia-ml-py`` for NVIDIA
GPUs; where they are missing the run simply has no system metrics. Unlike MLflow's
``finish``, ``stop`` also logs the last, partial sampling interval, so a trial shorter
than one interval still gets one point.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: seconds between samples (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it)
SAMPLING_INTERVAL_S = 10.0
_warned = False


class SystemMetrics:
    """Start sampling at construction, ``stop()`` when the run ends. Never raises."""

    def __init__(self, tracking_uri: str, run_id: str, interval_s: float = SAMPLING_INTERVAL_S) -> None:
        self.monitor = None
        if os.environ.get("NEUROSEARCH_SYSTEM_METRICS", "1").lower() in ("0", "false", "off"):
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self.monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, tracking_uri=tracking_uri)
            self.monitor.start()
        except Exception as exc:  # psutil missing, no GPU library, ...: no system metrics, the run goes on
            global _warned
            if not _warned:
                log.warning("system metrics not logged: %s", exc)
                _warned = True
            self.monitor = None

    def stop(self) -> None:
        monitor, self.monitor = self.monitor, None
        if monitor is None:
            return
        try:
            monitor.finish()
            monitor.collect_metrics()
            monitor.publish_metrics(monitor.aggregate_metrics())
            monitor.mlflow_logger.flush()
        except Exception as exc:
            log.warning("system metrics: last sample not logged: %s", exc)
