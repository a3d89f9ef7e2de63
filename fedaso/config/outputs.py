"""The outputs section: where the server writes metrics, the model and tracking logs."""

from __future__ import annotations

from dataclasses import dataclass

from fedaso.checks import require
from fedaso.config.fields import Section, setting

TRACKING_BACKENDS = ("none", "tensorboard", "mlflow")


@dataclass(frozen=True, kw_only=True)
class OutputsConfig(Section):
    """The run-config's output keys (all read by the server alone)."""

    out_dir: str = setting(
        "",
        "where the server writes metrics.json, model.pt and anchors.npy; empty = nowhere",
        server_only=True,
    )
    extra_eval_dataset: str = setting(
        "", "also evaluate centrally on this dataset each round (same task)", server_only=True
    )
    tracking: str = setting(
        "none",
        "log the run-config, per-round metrics and files to a tracking back-end",
        choices=TRACKING_BACKENDS,
        server_only=True,
    )
    tracking_dir: str = setting(
        "", "where tracking logs go; empty = out-dir/tracking", server_only=True
    )

    def check(self) -> None:
        # Whether the back-end is installed is the server's check alone: clients rebuild the
        # run-config too, and a site need not install the tracking extras.
        require(
            self.tracking == "none" or bool(self.tracking_dir or self.out_dir),
            "tracking-dir",
            self.tracking_dir,
            f"must be set when tracking={self.tracking!r} and out-dir is empty",
        )
