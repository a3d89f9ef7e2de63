"""The tracking keys: checked values, and where a run's logs go and what they are named.

The logs themselves are read back with MLflow's and TensorBoard's readers in
``tests/integration/test_experiment_commands.py`` (compare: MLflow; forgetting: TensorBoard).
"""

from pathlib import Path

import pytest

from fedaso.config import RunConfig
from strategies.tracking import check_backend_installed, tracking_of


def test_bad_tracking_values_name_the_key():
    with pytest.raises(ValueError, match=r"tracking='wandb' is invalid: must be one of none"):
        RunConfig.of(tracking="wandb")
    with pytest.raises(ValueError, match=r"tracking-dir='' is invalid: must be set when"):
        RunConfig.of(tracking="mlflow")
    RunConfig.of(tracking="mlflow", out_dir="/tmp/x")  # tracks into out-dir/tracking
    check_backend_installed("mlflow")
    check_backend_installed("tensorboard")


def test_runs_of_one_experiment_share_it_and_are_named_by_their_folder(tmp_path):
    shared = str(tmp_path / "cmp" / "tracking")
    run = tracking_of("mlflow", shared, str(tmp_path / "cmp" / "fedaso" / "seed-1"))
    assert (run.experiment, run.run_name) == ("cmp", "fedaso/seed-1")
    alone = tracking_of("tensorboard", "", str(tmp_path / "single"))
    assert alone.directory == (tmp_path / "single" / "tracking").resolve()
    assert (alone.experiment, alone.run_name) == ("single", "single")
    assert alone.tensorboard_dir == Path(alone.directory) / "tensorboard" / "single"
    assert tracking_of("none", "", str(tmp_path)) is None
