"""Update-level DP: Flower's own DP wrappers around any strategy, with Opacus accounting.

- ``build_update_dp``: Flower's ``DifferentialPrivacyServerSideFixedClipping`` or
  ``...ClientSideFixedClipping`` around any strategy, FedASO included, unchanged.
- ``UpdateDPAccounting``: a thin outer strategy that keeps the wrapper's
  ``num_sampled_clients`` equal to the number actually sampled each round and adds
  ``update-epsilon`` (Opacus' RDP accountant) to every round's metrics. Its accountant is
  part of the server's checkpoint (``state_dict``), and it exposes the wrapper as
  ``.strategy``, so the checkpoint also reaches FedASO's anchor store and accountants
  inside the wrapper (``strategies.server_state.strategy_components``). It hands the
  wrapper only the replies FedASO's checks admit (``FedASO.admit``): the wrapper clips
  every reply, and skips the whole round for one error reply, before the strategy it wraps
  sees any.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from logging import INFO, WARNING
from typing import Any

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
)
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)
from flwr.serverapp.strategy.dp_fixed_clipping import DifferentialPrivacyFixedClippingBase

from fedaso.config import RunConfig
from fedaso.privacy import PrivacyAccount
from strategies.fedaso import FedASO


def expected_sample_size(run: RunConfig, num_nodes: int) -> int:
    """How many nodes Flower's FedAvg samples per round out of ``num_nodes`` (its formula)."""
    return max(int(num_nodes * run.federation.fraction_train), run.federation.min_train_nodes)


def update_dp_calibrated(run: RunConfig) -> bool:
    """Whether the wrappers' noise ``sigma C / n`` matches the aggregate's sensitivity ``C / n``.

    It does when every sampled reply weighs the same (``aggregation-weight = uniform``) and
    no stale anchor report is reused (``anchor-staleness-decay = 0``): the aggregate is then
    the plain mean of this round's clipped replies, as DP-FedAvg assumes. Relevance or
    example weights let one client move the mean by more than ``C / n``.
    """
    return (
        run.federation.strategy == "fedaso"
        and run.federation.aggregation_weight == "uniform"
        and run.federation.anchor_staleness_decay == 0
    )


def build_update_dp(strategy: Strategy, run: RunConfig, num_sampled: int) -> Strategy:
    """Wrap ``strategy`` in the Flower DP wrapper named by ``update-dp`` (or return it)."""
    if run.privacy.update_dp == "none":
        return strategy
    wrapper = (
        DifferentialPrivacyServerSideFixedClipping
        if run.privacy.update_dp == "server-fixed"
        else DifferentialPrivacyClientSideFixedClipping
    )
    wrapped = wrapper(
        strategy,
        noise_multiplier=run.privacy.update_noise_multiplier,
        clipping_norm=run.privacy.update_clip,
        num_sampled_clients=num_sampled,
    )
    return UpdateDPAccounting(wrapped, run)


class UpdateDPAccounting(Strategy):
    """Delegates to a Flower DP wrapper; keeps its sample count right and reports epsilon.

    Parameters
    ----------
    wrapped : DifferentialPrivacyFixedClippingBase
        Flower's server- or client-side fixed-clipping wrapper.
    run : RunConfig
        The run-config (noise multiplier, delta, and whether the calibration holds).
    """

    def __init__(self, wrapped: DifferentialPrivacyFixedClippingBase, run: RunConfig) -> None:
        self.wrapped = wrapped
        # Named like Flower's wrappers' own ``.strategy``, so that the checkpoint's walk
        # through the wrappers (``strategy_components``) reaches the strategy inside.
        self.strategy = wrapped
        self.noise_multiplier = run.privacy.update_noise_multiplier
        self.delta = run.privacy.anchor_delta
        self.calibrated = update_dp_calibrated(run)
        self.account = PrivacyAccount()
        self.sample_rate = 1.0
        if not self.calibrated:
            log(
                WARNING,
                "update-dp: aggregation weights are not uniform or stale anchors are reused; "
                "the wrapper's noise is not calibrated to the aggregate, so update-epsilon "
                "is reported as inf (see docs/PRIVACY.md)",
            )

    def summary(self) -> None:
        """Log the wrapper's and the inner strategy's summaries."""
        log(INFO, "\t├──> update-dp accounting (Opacus RDP), calibrated: %s", self.calibrated)
        self.wrapped.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample through the wrapper; set its ``num_sampled_clients`` to the real count."""
        messages = list(self.wrapped.configure_train(server_round, arrays, config, grid))
        if messages and len(messages) != self.wrapped.num_sampled_clients:
            log(INFO, "update-dp: %d clients sampled; noise std follows", len(messages))
            self.wrapped.num_sampled_clients = len(messages)
        connected = len(list(grid.get_node_ids()))
        self.sample_rate = min(1.0, len(messages) / connected) if connected else 1.0
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Check the replies, aggregate the usable ones through the wrapper, report epsilon."""
        inner = self.wrapped.strategy
        if isinstance(inner, FedASO):  # checked before the wrapper clips (or drops) any
            replies = inner.admit(server_round, replies)
        arrays, metrics = self.wrapped.aggregate_train(server_round, replies)
        if arrays is None:
            return arrays, metrics
        self.account.record(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        epsilon = self.account.epsilon(self.delta) if self.calibrated else math.inf
        extra = {
            "update-epsilon": epsilon,
            "update-delta": self.delta,
            "update-noise-std": self.noise_multiplier
            * self.wrapped.clipping_norm
            / self.wrapped.num_sampled_clients,
        }
        return arrays, MetricRecord(dict(metrics or {}) | extra)

    def state_dict(self) -> dict[str, Any]:
        """The accountant's history, for a checkpoint: a resumed run keeps counting."""
        return {"update-accountant": [list(release) for release in self.account.accountant.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the accountant saved by :meth:`state_dict`."""
        self.account.accountant.history = [
            (float(noise), float(rate), int(steps))
            for noise, rate, steps in state["update-accountant"]
        ]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Federated evaluation as the wrapped strategy configures it."""
        return self.wrapped.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Federated evaluation as the wrapped strategy aggregates it."""
        return self.wrapped.aggregate_evaluate(server_round, replies)
