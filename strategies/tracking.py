"""Experiment tracking: log a finished run to TensorBoard event files or an MLflow file store.

Run-config ``tracking = none | tensorboard | mlflow`` picks the back-end, ``tracking-dir``
where its logs go (default ``out-dir/tracking``). A run logs

- its resolved run-config as parameters (MLflow params; TensorBoard hparams and a text);
- every round's client train, client evaluate, central and traffic metrics as time series
  with the round as step, under ``train/``, ``evaluate/``, ``central/``, ``traffic/``
  (privacy epsilons are train metrics, e.g. ``train/anchor-epsilon``);
- its files as artifacts: the final model or adapter, anchors, ``metrics.json`` (MLflow
  artifacts; for TensorBoard, copies beside the event files under ``artifacts/``).

Runs are grouped by the folder that holds ``tracking-dir``: it names the MLflow experiment
(and is the TensorBoard log root), and a run's name is its ``out-dir`` relative to that
folder (``fedaso/seed-1``). The experiment commands give every run of one experiment the
same ``tracking-dir``, so all its variants and seeds land in one experiment. MLflow needs no
server: its store is the SQLite file ``tracking-dir/mlflow.db`` with artifacts in
``tracking-dir/mlartifacts`` (MLflow 3.17 refuses its older folder store unless
``MLFLOW_ALLOW_FILE_STORE=true``). Both back-ends are optional
extras (``pip install -e ".[tracking]"``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedaso.checks import require

# The Python package each back-end needs, as installed by the `tracking` extra.
BACKEND_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
SECTIONS = ("train", "evaluate", "central", "traffic")


@dataclass(frozen=True)
class Tracking:
    """Where and how one run is tracked."""

    backend: str  # tensorboard | mlflow
    directory: Path  # tracking-dir
    experiment: str  # MLflow experiment name: the folder holding tracking-dir
    run_name: str  # out-dir relative to that folder

    @property
    def mlflow_uri(self) -> str:
        """The MLflow tracking URI: a SQLite file in ``tracking-dir`` (no server)."""
        return f"sqlite:///{(self.directory / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts(self) -> str:
        """Where MLflow stores the experiment's artifact files."""
        return (self.directory / "mlartifacts").resolve().as_uri()

    @property
    def tensorboard_dir(self) -> Path:
        """This run's TensorBoard log folder."""
        return self.directory / "tensorboard" / self.run_name


def check_backend_installed(backend: str) -> None:
    """Raise ``ValueError`` if ``backend``'s package is missing (only the server logs)."""
    if backend == "none":
        return
    require(
        importlib.util.find_spec(BACKEND_PACKAGES[backend]) is not None,
        "tracking",
        backend,
        f"needs the {BACKEND_PACKAGES[backend]} package: pip install -e '.[tracking]'",
    )


def tracking_of(backend: str, tracking_dir: str, out_dir: str) -> Tracking | None:
    """The run's :class:`Tracking` (None when ``backend`` is ``none``)."""
    if backend == "none":
        return None
    directory = Path(tracking_dir or Path(out_dir) / "tracking").resolve()
    root = directory.parent
    out = Path(out_dir).resolve() if out_dir else root
    run_name = out.relative_to(root).as_posix() if out.is_relative_to(root) else out.name
    return Tracking(
        backend, directory, root.name or "fedaso", run_name if run_name != "." else root.name
    )


def param_text(value: Any) -> str:
    """A run-config value as a parameter: strings as they are, others as JSON (``true``)."""
    return value if isinstance(value, str) else json.dumps(value)


def round_series(rounds: Sequence[Mapping[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """``(round, {"central/loss": ..., ...})`` per round record of ``metrics.json``."""
    series = []
    for record in rounds:
        values = {
            f"{section}/{key}": float(value)
            for section in SECTIONS
            for key, value in record.get(section, {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        series.append((int(record["round"]), values))
    return series


def log_run(
    tracking: Tracking,
    config: Mapping[str, Any],
    rounds: Sequence[Mapping[str, Any]],
    artifacts: Iterable[Path],
) -> None:
    """Log one finished run: run-config, per-round metrics, artifact files."""
    files = [path for path in artifacts if path.is_file()]
    if tracking.backend == "mlflow":
        _log_mlflow(tracking, config, round_series(rounds), files)
    else:
        _log_tensorboard(tracking, config, round_series(rounds), files)


def log_files(tracking: Tracking, run_name: str, files: Iterable[Path]) -> None:
    """Log ``files`` (an experiment's summary) as a run of their own named ``run_name``."""
    own = Tracking(tracking.backend, tracking.directory, tracking.experiment, run_name)
    log_run(own, {}, [], files)


def _log_mlflow(
    tracking: Tracking,
    config: Mapping[str, Any],
    series: Sequence[tuple[int, dict[str, float]]],
    files: Sequence[Path],
) -> None:
    import mlflow

    for name in ("mlflow", "alembic"):  # their INFO lines about creating the database
        logging.getLogger(name).setLevel(logging.WARNING)
    client = mlflow.MlflowClient(tracking_uri=tracking.mlflow_uri)
    experiment = client.get_experiment_by_name(tracking.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(tracking.experiment, tracking.mlflow_artifacts)
    )
    run = client.create_run(experiment_id, run_name=tracking.run_name)
    run_id = run.info.run_id
    params = [mlflow.entities.Param(key, param_text(value)) for key, value in config.items()]
    client.log_batch(run_id, params=params)
    metrics = [
        mlflow.entities.Metric(key, value, 0, step)
        for step, values in series
        for key, value in values.items()
        if math.isfinite(value)
    ]
    for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    for path in files:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)


def _log_tensorboard(
    tracking: Tracking,
    config: Mapping[str, Any],
    series: Sequence[tuple[int, dict[str, float]]],
    files: Sequence[Path],
) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from torch.utils.tensorboard import SummaryWriter

    log_dir = tracking.tensorboard_dir
    with SummaryWriter(log_dir=str(log_dir)) as writer:
        if config:
            writer.add_text("run-config", "\n".join(f"    {k} = {v!r}" for k, v in config.items()))
            final = {f"final/{k}": v for k, v in (series[-1][1] if series else {}).items()}
            hparams = {k: v if isinstance(v, int | float | str | bool) else str(v)
                       for k, v in config.items()}  # fmt: skip
            writer.add_hparams(hparams, final, run_name=".")
        for step, values in series:
            for key, value in values.items():
                writer.add_scalar(key, value, step)
    if files:
        target = log_dir / "artifacts"
        target.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, target / path.name)
