"""Replies collected as soon as they arrive: a grid that polls every 0.1 s, not every 3 s.

Flower 1.42's ``HttpGrid.send_and_receive`` (the Deployment Engine's grid) pulls replies,
then sleeps 3 s whenever some are missing, so every exchange of a deployed round waits on
average 1.5 s, and up to 3 s, after its last reply has reached the SuperLink.
:class:`PromptGrid` pushes the same messages and pulls the same replies through the wrapped
grid, every ``POLL_SECONDS``; the round's time-out is kept. A pull is one small request to
the SuperLink (the replies' ids).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message

from strategies.grids import GridProxy

POLL_SECONDS = 0.1  # as often as Flower's in-memory grid (simulation) pulls


class PromptGrid(GridProxy):
    """``send_and_receive`` through the wrapped grid's push and pull, polling every 0.1 s."""

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``; pull their replies until all came or ``timeout`` s passed."""
        waiting = set(self.inner.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            pulled = list(self.inner.pull_messages(waiting))
            replies.extend(pulled)
            waiting.difference_update(reply.metadata.reply_to_message_id for reply in pulled)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(POLL_SECONDS)
        return replies
