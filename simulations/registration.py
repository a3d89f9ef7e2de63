"""The simulation engine's node registration, handed to the ServerApp: no partition query.

Flower's simulation engine registers its SuperNodes in ``_register_nodes``
(``flwr/server/superlink/fleet/vce/vce_api.py``), which returns ``{node id: partition
id}``: it is what gives each node its ``partition-id`` node config. The ServerApp has no
way to see that mapping, so it used to ask every node for its partition before the first
round (``strategies.grids``): one message per registered node (issue 20 reported round 1
at 53 s and the driver at 2.68 GB with 10,000 nodes; benchmarks/BENCHMARKS.md, section 2b,
measures 100,000 without the query).

:func:`published_registration` wraps Flower's ``_register_nodes`` so that the mapping it
returns is also published in a :class:`strategies.grids.RegisteredPartitions` (the same
dict, not a copy), which the simulation hands to the ServerApp. Registration itself is
unchanged. The wrap is undone on exit and applies only to the Flower versions it was
written against; with another version nothing is published and the nodes are queried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from logging import WARNING

import flwr
from flwr.common import log
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate import LinkStateFactory

from strategies.grids import RegisteredPartitions

# The versions whose start_vce calls vce_api._register_nodes(num_nodes, state_factory).
PATCHED_FLOWER_VERSIONS = ("1.41.0", "1.42.0")
FLOWER_REGISTER = vce_api._register_nodes  # pylint: disable=protected-access


@contextmanager
def published_registration() -> Iterator[RegisteredPartitions | None]:
    """Publish the engine's node registration inside the block; yields where, or None."""
    if flwr.__version__ not in PATCHED_FLOWER_VERSIONS:
        log(
            WARNING,
            "FedASO: flwr %s is not one of %s; the server will query every node's partition",
            flwr.__version__,
            ", ".join(PATCHED_FLOWER_VERSIONS),
        )
        yield None
        return
    registered = RegisteredPartitions()

    def register_and_publish(num_nodes: int, state_factory: LinkStateFactory) -> dict[int, int]:
        mapping: dict[int, int] = FLOWER_REGISTER(num_nodes, state_factory)
        registered.publish(mapping)
        return mapping

    # setattr: replacing Flower's function is the point here (undone below).
    setattr(vce_api, "_register_nodes", register_and_publish)  # noqa: B010
    try:
        yield registered
    finally:
        setattr(vce_api, "_register_nodes", FLOWER_REGISTER)  # noqa: B010
