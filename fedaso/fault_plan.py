"""Fault plans: a testing aid that makes chosen partitions misbehave on purpose.

Run-config ``fault-plan`` names, per partition, one way its training replies go wrong, e.g.
``"1:raise,2:nan,3:delay"``. ``clients.fault_injection`` applies the plan to real replies of real
ClientApps, so that tests (and a cautious site operator) can watch FedASO drop bad replies,
count failures and time-outs, and carry on with the others, and bound replies that lie
(``LYING_KINDS``). An empty plan (the default)
changes nothing. This module only parses and validates plans; it never imports Flower.
"""

from __future__ import annotations

from collections.abc import Mapping

FAULT_KINDS: Mapping[str, str] = {
    "raise": "the ClientApp raises before training",
    "delay": "the ClientApp replies fault-delay seconds after the round's time-out",
    "nan": "a NaN in the first model array",
    "inf": "an Inf in the first model array",
    "shape": "the first model array has one element too many",
    "float16": "the model arrays are sent as float16",
    "int": "the model arrays are sent as int64",
    "norm": "the model update is multiplied by 10^4",
    "garbage": "an array whose bytes do not match its declared shape",
    "no-metrics": "the reply has no MetricRecord",
    "anchors-shape": "the anchor set lacks its last row",
    "weight": "a negative mean-relevance (aggregation weight)",
    # Well-formed lies (issue 17): the reply trains honestly but claims what it should not.
    "relevance": "claims a mean-relevance of 10^6 and 10^308 examples and tokens",
    "list-metric": "sends high-relevance-fraction as a list where one number belongs",
    "steal-partition": "claims partition-id 0, another site's",
    "fresh-partition": "claims a new partition-id every round (10^6 + the round)",
}
# The lies above: each is well-formed, so the server bounds or refuses what it claims
# (docs/RELIABILITY.md) rather than failing to read it.
LYING_KINDS = frozenset({"relevance", "list-metric", "steal-partition", "fresh-partition"})


def parse_fault_plan(plan: str) -> dict[int, str]:
    """Return ``{partition-id: fault kind}`` from ``"P:KIND,P:KIND"``; ``""`` gives ``{}``.

    Raises
    ------
    ValueError
        Naming ``fault-plan``, the bad entry and what is allowed.
    """
    faults: dict[int, str] = {}
    for entry in (part.strip() for part in plan.split(",")):
        if not entry:
            continue
        partition, sep, kind = (text.strip() for text in entry.partition(":"))
        if not sep or not partition.isdigit() or kind not in FAULT_KINDS:
            raise ValueError(
                f"fault-plan={plan!r} is invalid: entry {entry!r} must be PARTITION:KIND with "
                f"PARTITION an integer >= 0 and KIND one of {', '.join(FAULT_KINDS)}"
            )
        if int(partition) in faults:
            raise ValueError(
                f"fault-plan={plan!r} is invalid: partition {partition} is listed twice"
            )
        faults[int(partition)] = kind
    return faults
