"""What the server's reply checks cost per round, against the aggregation they guard.

    python -m benchmarks.reply_checks [--num-replies 10,100,1000] [--repeats 5]

For N honest training replies (real ``flwr.app.Message``s) of the tiny reference model
(width 32, one layer, 16 anchors: the tests' size) and of the default one (width 64, two
layers, 32 anchors), times, interleaved in one run:

- *checks*: ``FedASO.screen``, everything the server does to a round's replies before it
  averages them: decoding the arrays, checking records, names, shapes, dtypes, finite
  values and metrics, clipping the claims, binding partitions, the norm bounds (under the
  run-config's default bounds);
- *decoding*: ``record_to_arrays`` of every reply alone, the part of the checks that any
  aggregation needs (Flower's FedAvg decodes too), which Flower's ``Array.numpy`` (one
  ``np.load`` per array) dominates;
- *aggregation*: the averaging itself, ``fedaso.aso.aggregation.capped_average`` over the
  models and the capped merge of the anchor reports.

It prints medians, and per repetition the ratios checks / aggregation and (checks less
decoding) / aggregation. Each model and N is measured in a fresh process: after a round of
1,000 replies the same process screened the next, small round 20 times slower (567 ms
instead of 20 to 28 ms for the default model's N = 10), which is the process's state, not
the checks.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import sys
import time
from collections.abc import Callable

import numpy as np
from flwr.app import Message

from benchmarks.common import interleaved, machine_header, ratios, require_positive, spread
from fedaso.aso.aggregation import AnchorReport, PartitionAnchorStore, capped_average
from fedaso.config import RunConfig
from fedaso.models.arrays import model_to_arrays
from fedaso.wire import join_payload, split_payload
from flower_wire.records import record_to_arrays
from simulations.console import HelpFormatter
from strategies.factory import build_strategy
from strategies.fedaso import FedASO, Screening
from tests.flower_helpers import metrics, train_reply

MODELS = {
    "tiny": RunConfig.of(model_width=32, model_heads=2, model_layers=1, num_anchors=16),
    "default": RunConfig(),
}


def round_replies(run: RunConfig, count: int) -> tuple[dict[str, np.ndarray], list[Message]]:
    """The global payload and ``count`` honest replies: small, different updates of it."""
    rng = np.random.default_rng(0)
    model = model_to_arrays(run.build_model())
    anchors = rng.normal(size=(run.aso.num_anchors, run.model.model_width)).astype(np.float32)
    global_payload = join_payload(model, anchors)
    replies = []
    for partition in range(count):
        moved = {
            name: (array + 0.01 * rng.standard_normal(array.shape)).astype(array.dtype)
            for name, array in global_payload.items()
        }
        claims = metrics(float(rng.uniform(0.1, 0.9))) | {"partition-id": partition}
        replies.append(train_reply(10_000 + partition, moved, claims))
    return global_payload, replies


def fresh_strategy(run: RunConfig, global_payload: dict[str, np.ndarray], count: int) -> FedASO:
    """The run's FedASO as ``configure_train`` would leave it for ``count`` connected nodes."""
    strategy = build_strategy(run)
    if not isinstance(strategy, FedASO):
        raise TypeError(f"expected FedASO, got {type(strategy).__name__}")
    strategy.global_arrays = global_payload
    strategy.partitions.observe(range(10_000, 10_000 + count))
    return strategy


def aggregate(run: RunConfig, global_payload: dict[str, np.ndarray], screening: Screening) -> None:
    """The averaging FedASO does with checked updates: models, then anchor reports."""
    model, anchors = split_payload(global_payload)
    cap = run.reliability.max_client_share
    capped_average(
        [split_payload(u.arrays)[0] for u in screening.updates],
        [u.weight for u in screening.updates],
        max_share=cap,
        previous=model,
    )
    store = PartitionAnchorStore(run.federation.anchor_staleness_decay)
    for update in screening.updates:
        reported = split_payload(update.arrays)[1]
        if reported is not None:
            store.record(update.partition, AnchorReport(reported, update.weight, 1))
    store.merge(1, max_share=cap, previous=anchors)


def timed(call: Callable[[], object]) -> float:
    """Seconds one call of ``call`` takes, with the garbage collector paused (as ``timeit``).

    A collection over the round's many live messages would otherwise land in whichever call
    happens to trigger it.
    """
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started
    finally:
        gc.enable()


def decode(reply: Message) -> dict[str, np.ndarray]:
    """A reply's arrays, decoded as the checks decode them."""
    return record_to_arrays(next(iter(reply.content.array_records.values())))


def checks_seconds(
    run: RunConfig, global_payload: dict[str, np.ndarray], replies: list[Message]
) -> float:
    """Seconds a fresh strategy takes to screen ``replies`` (its construction not counted)."""
    strategy = fresh_strategy(run, global_payload, len(replies))
    return timed(lambda: strategy.screen(replies))


def measure(run: RunConfig, size: int, repeats: int) -> tuple[int, dict[str, list[float]]]:
    """The model's number of values, and seconds of checks and aggregation per repetition."""
    global_payload, replies = round_replies(run, size)
    screened = fresh_strategy(run, global_payload, size).screen(replies)
    if len(screened.updates) != size:
        raise RuntimeError(f"{size - len(screened.updates)} honest replies did not pass")
    times = interleaved(
        {
            "checks": lambda: checks_seconds(run, global_payload, replies),
            "decoding": lambda: timed(lambda: [decode(reply) for reply in replies]),
            "aggregation": lambda: timed(lambda: aggregate(run, global_payload, screened)),
        },
        repeats=repeats,
    )
    return sum(array.size for array in global_payload.values()), times


def main(argv: list[str] | None = None) -> int:
    """Print, per model and N, the checks' and the aggregation's time and their ratio."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reply_checks",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--num-replies", default="10,100,1000", help="comma-separated N")
    parser.add_argument("--models", default="tiny,default", help=f"of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions")
    args = parser.parse_args(argv)
    require_positive(parser, args, ["repeats"])
    sizes = [int(n) for n in args.num_replies.split(",")]
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown or any(n < 1 for n in sizes):
        parser.error(f"--models={args.models!r} / --num-replies={args.num_replies!r} is invalid")
    print(machine_header())
    print("one round of N replies: checks (FedASO.screen) vs aggregation, in ms; ratios")
    spawn = multiprocessing.get_context("spawn")
    for name in names:
        for size in sizes:
            with spawn.Pool(1) as pool:  # a fresh process per measurement (docstring)
                values, times = pool.apply(measure, (MODELS[name], size, args.repeats))
            proper = [c - d for c, d in zip(times["checks"], times["decoding"], strict=True)]
            print(
                f"{name} ({values} values), N={size}: "
                f"checks {spread(times['checks'], scale=1e3)}, "
                f"of which decoding {spread(times['decoding'], scale=1e3)}; "
                f"aggregation {spread(times['aggregation'], scale=1e3)}; "
                f"checks / aggregation {spread(ratios(times['checks'], times['aggregation']))}, "
                f"less decoding {spread(ratios(proper, times['aggregation']))}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
