"""The round loop of the ServerApp: Flower's ``Strategy.start``, resumable and time-bounded.

``Strategy.start`` runs every round in one call, so a restarted server could only start
over. :func:`run_rounds` drives the same rounds with the strategy's own methods
(``configure_train``, ``aggregate_train``, ``configure_evaluate``, ``aggregate_evaluate``)
and the same central ``evaluate_fn``, in the same order, and adds what a deployment needs:
- it starts after the last round of a checkpoint (``Checkpoints.restore``) and writes one
  after every round (``Checkpoints.save``);
- every round waits at most ``timeout`` seconds for replies (run-config ``round-timeout``);
  nodes that did not answer in time are counted in the round's ``num-timeouts``;
- a strategy whose aggregation rejects the whole round (Flower's ``FedAvg`` raises
  ``InconsistentMessageReplies`` on one odd reply) keeps the previous global state for that
  round instead of ending the run; FedASO never needs this, it checks replies one by one;
- a run whose rounds cannot train stops with the clients' error (``strategies.failures``);
- with a ``sampling_seed``, each round's client sample is drawn right after seeding
  Python's ``random`` from (seed, round), which Flower's ``sample_nodes`` draws from: other
  threads of the process (Ray's, the engine's) draw from it too, so a seed set once at the
  start of the run did not fix the sample of round 1 on, and a resumed run samples as the
  uninterrupted one would.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from logging import ERROR, INFO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import Result, Strategy

from strategies.failures import FailureWatch
from strategies.server_state import Checkpoints

EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


@dataclass(frozen=True)
class RoundPlan:
    """What every round needs besides the arrays: where, how long, with which configs."""

    grid: Grid
    timeout: float
    train_config: ConfigRecord
    evaluate_config: ConfigRecord
    evaluate_fn: EvaluateFn | None = None
    sampling_seed: int | None = None  # seeds each round's client sample; None leaves it be


def run_rounds(
    strategy: Strategy,
    plan: RoundPlan,
    *,
    initial_arrays: ArrayRecord,
    num_rounds: int,
    checkpoints: Checkpoints,
) -> Result:
    """Run rounds ``k + 1 .. num_rounds`` (``k`` = the resumed round, else 0); return the result.

    ``checkpoints`` restores the strategy's and the generators' state when resuming and
    writes a checkpoint after every round.
    """
    log(INFO, "Starting %s strategy (FedASO round driver):", type(strategy).__name__)
    strategy.summary()
    started = time.time()
    checkpoints.register_strategy(strategy)
    result = Result(arrays=initial_arrays)
    restored = checkpoints.restore(result)
    if restored is None:
        arrays, done = initial_arrays, 0
        if plan.evaluate_fn is not None:
            record(result.evaluate_metrics_serverapp, 0, plan.evaluate_fn(0, arrays))
    else:
        done, arrays = restored
    watch = FailureWatch()  # ends a run that cannot train (strategies/failures.py)
    for server_round in range(done + 1, num_rounds + 1):
        log(INFO, "")
        log(INFO, "[ROUND %s/%s]", server_round, num_rounds)
        arrays = play_round(strategy, plan, server_round, arrays, result, watch)
        checkpoints.save(server_round, arrays, result)
    log(INFO, "Strategy execution finished in %.2fs", time.time() - started)
    return result


def play_round(
    strategy: Strategy,
    plan: RoundPlan,
    server_round: int,
    arrays: ArrayRecord,
    result: Result,
    watch: FailureWatch | None = None,
) -> ArrayRecord:
    """Train, evaluate and centrally evaluate one round; return the new global arrays.

    ``watch`` raises ``RunFailedError`` when the round's training replies show the run cannot
    train (``strategies.failures``).
    """
    with round_sampling(plan.sampling_seed, server_round):
        sent = strategy.configure_train(server_round, arrays, plan.train_config, plan.grid)
    replies, timeouts = exchange(plan, sent)
    if watch is not None:
        watch.check(server_round, replies)
    try:
        new_arrays, train_metrics = strategy.aggregate_train(server_round, replies)
    except InconsistentMessageReplies as error:
        log(ERROR, "Round %s keeps the previous global model: %s", server_round, error)
        new_arrays, train_metrics = None, MetricRecord({"num-inconsistent-rounds": 1})
    if new_arrays is not None:
        arrays = new_arrays
        result.arrays = new_arrays
    train_metrics = MetricRecord(dict(train_metrics or {}) | {"num-timeouts": timeouts})
    record(result.train_metrics_clientapp, server_round, train_metrics)

    with round_sampling(plan.sampling_seed, server_round):
        sent = strategy.configure_evaluate(server_round, arrays, plan.evaluate_config, plan.grid)
    replies, timeouts = exchange(plan, sent)
    if replies or timeouts:
        try:
            evaluate_metrics = strategy.aggregate_evaluate(server_round, replies)
        except InconsistentMessageReplies as error:
            log(ERROR, "Round %s: federated evaluation dropped: %s", server_round, error)
            evaluate_metrics = None
        evaluate_metrics = MetricRecord(dict(evaluate_metrics or {}) | {"num-timeouts": timeouts})
        record(result.evaluate_metrics_clientapp, server_round, evaluate_metrics)

    if plan.evaluate_fn is not None:
        record(
            result.evaluate_metrics_serverapp, server_round, plan.evaluate_fn(server_round, arrays)
        )
    return arrays


@contextmanager
def round_sampling(seed: int | None, server_round: int) -> Iterator[None]:
    """Seed Python's ``random`` from ``(seed, server_round)`` just before a round samples.

    Flower samples nodes with the module-level ``random``; seeding it immediately before
    the strategy's ``configure_*`` call leaves other threads no time to draw in between.
    """
    if seed is not None:
        random.seed(seed * 1_000_003 + server_round)
    yield


def exchange(plan: RoundPlan, sent: Iterable[Message]) -> tuple[list[Message], int]:
    """Send messages, wait at most ``plan.timeout``; return the replies and how many are missing."""
    messages = list(sent)
    if not messages:
        return [], 0
    replies = list(plan.grid.send_and_receive(messages, timeout=plan.timeout))
    missing = len(messages) - len(replies)
    if missing:
        log(ERROR, "%d of %d nodes did not reply within %ss", missing, len(messages), plan.timeout)
    return replies, missing


def record(
    history: dict[int, MetricRecord], server_round: int, metrics: MetricRecord | None
) -> None:
    """Log ``metrics`` and keep them under ``server_round`` (None is skipped)."""
    if metrics is None:
        return
    log(INFO, "\t└──> round %s: %s", server_round, metrics)
    history[server_round] = metrics
