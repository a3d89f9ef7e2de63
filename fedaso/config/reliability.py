"""The reliability section: time-outs, bounds on what one reply may do, checkpoints, faults.

See docs/RELIABILITY.md. ``fault-plan`` and ``fault-delay`` are testing aids that make
chosen partitions misbehave on purpose; never set them in a real run.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedaso.aso.robust import ReplyBounds
from fedaso.checks import is_finite_number, require
from fedaso.config.fields import Section, setting
from fedaso.fault_plan import parse_fault_plan


@dataclass(frozen=True, kw_only=True)
class ReliabilityConfig(Section):
    """The run-config's reliability keys (all read by the server alone)."""

    round_timeout: float = setting(
        3600.0,
        "seconds the server waits for a round's replies; late nodes count as num-timeouts",
        server_only=True,
    )
    max_update_norm_ratio: float = setting(
        10.0,
        (
            "drop a reply whose update (or anchor change) norm exceeds this x the round's median;"
            " 0 = off"
        ),
        server_only=True,
    )
    max_update_norm: float = setting(
        1000.0,
        (
            "drop a reply whose model update's L2 norm exceeds this, however few replies (anchor "
            "changes: 10x the anchors' norm); 0 = off"
        ),
        server_only=True,
    )
    max_client_share: float = setting(
        0.5,
        (
            "no reply holds more than this share of a round's model or anchors "
            "(docs/RELIABILITY.md); 1 = no cap"
        ),
        server_only=True,
    )
    max_reported_count: int = setting(
        10**9,
        "a reply's num-examples and num-tokens count as at most this many (at most 2^53)",
        server_only=True,
    )
    checkpoint_dir: str = setting(
        "", "checkpoint every round here; empty = out-dir/checkpoint (if out-dir)", server_only=True
    )
    resume: str = setting(
        "",
        (
            "continue the run saved in this checkpoint directory (same settings; more rounds "
            "allowed)"
        ),
        server_only=True,
    )
    fault_plan: str = setting(
        "",
        (
            "TESTING AID: PARTITION:KIND,... makes partitions misbehave (fedaso/fault_plan.py); "
            "never in a real run"
        ),
        server_only=True,
    )
    fault_delay: float = setting(
        0.0, "TESTING AID: a delay fault replies this long after the time-out", server_only=True
    )

    def check(self) -> None:
        require(
            is_finite_number(self.round_timeout) and self.round_timeout > 0,
            "round-timeout",
            self.round_timeout,
            "must be a finite number of seconds > 0",
        )
        self.reply_bounds()  # ReplyBounds checks its four keys
        require(
            is_finite_number(self.fault_delay) and self.fault_delay >= 0,
            "fault-delay",
            self.fault_delay,
            "must be a finite number of seconds >= 0",
        )
        parse_fault_plan(self.fault_plan)

    def reply_bounds(self) -> ReplyBounds:
        """What the server allows one training reply (``fedaso.robust``)."""
        return ReplyBounds(
            max_update_norm_ratio=self.max_update_norm_ratio,
            max_update_norm=self.max_update_norm,
            max_client_share=self.max_client_share,
            max_reported_count=self.max_reported_count,
        )
