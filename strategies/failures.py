"""Stop a run that cannot train, with the clients' error, instead of finishing it untrained.

A federation whose every training reply fails (say, every client rejects its data
settings) would otherwise "complete" with an untrained model and exit 0. After each
round's training exchange, :class:`FailureWatch` ends the run with :class:`RunFailedError`

- when every reply of the round is an error, or
- when at least half the replies failed in each of the run's rounds,
  ``REPEATED_ERROR_ROUNDS`` rounds in a row from its first, and one same error was among
  them every time: a setting that fails every time, not a passing fault.

A minority of failing replies never stops a run, however often one client repeats its
error (one client in ten failing every round is that client's problem, not the run's):
they, and nodes that timed out, are left to the round's metrics (``num-failures``,
``num-timeouts``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from flwr.app import Message

REPEATED_ERROR_ROUNDS = 3


class RunFailedError(RuntimeError):
    """The run cannot train; the message names the round and the clients' error."""


def error_text(reply: Message) -> str:
    """The readable part of a failed reply's reason (Flower wraps it in type and quotes)."""
    reason = reply.error.reason or ""
    match = re.search(r"Message: (.*?)(?:\\n|\n|'>$|$)", reason, flags=re.DOTALL)
    text = match.group(1) if match else reason
    return " ".join(text.split())


@dataclass
class FailureWatch:
    """Watches the training replies of each round (see the module docstring)."""

    common: set[str] | None = None  # errors seen in every round so far
    rounds: int = 0
    seen: list[str] = field(default_factory=list)

    def check(self, server_round: int, replies: Sequence[Message]) -> None:
        """Raise :class:`RunFailedError` if this round's replies show the run cannot train."""
        errors = [error_text(reply) for reply in replies if reply.has_error()]
        if replies and len(errors) == len(replies):
            raise RunFailedError(
                f"round {server_round}: all {len(replies)} training replies failed; "
                f"first error: {errors[0]}"
            )
        self.rounds += 1
        failing = 2 * len(errors) >= len(replies)  # at least half the replies failed
        seen = set(errors) if failing else set()
        self.common = seen if self.common is None else self.common & seen
        if self.common and self.rounds >= REPEATED_ERROR_ROUNDS:
            raise RunFailedError(
                f"the same client error came back in each of the {self.rounds} rounds up to "
                f"round {server_round}: {sorted(self.common)[0]}"
            )
