"""Read tracking logs back with each library's own reader (MLflow's client, TensorBoard's
EventAccumulator), for the tests."""

from __future__ import annotations

from pathlib import Path

import mlflow
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def mlflow_runs(tracking_dir: Path, experiment: str) -> dict[str, mlflow.entities.Run]:
    """``{run name: run}`` of ``experiment`` in the SQLite store of ``tracking_dir``."""
    mlflow.set_tracking_uri(f"sqlite:///{(tracking_dir / 'mlflow.db').resolve()}")
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return {run.info.run_name: run for run in runs}


def mlflow_series(run: mlflow.entities.Run, key: str) -> dict[int, float]:
    """``{step: value}`` of metric ``key`` of ``run``."""
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, key)
    return {metric.step: metric.value for metric in history}


def mlflow_artifacts(run: mlflow.entities.Run) -> set[str]:
    """Names of ``run``'s artifact files."""
    return {item.path for item in mlflow.MlflowClient().list_artifacts(run.info.run_id)}


def tensorboard_series(log_dir: Path, tag: str) -> dict[int, float]:
    """``{step: value}`` of scalar ``tag`` in the event files of ``log_dir``."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {event.step: event.value for event in events.Scalars(tag)}
