"""The simulation engine's node registration, published to the ServerApp (real Flower state)."""

import flwr
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.superlink.federation import NoOpFederationManager

from simulations.registration import (
    FLOWER_REGISTER,
    PATCHED_FLOWER_VERSIONS,
    published_registration,
)


def test_the_engines_own_mapping_is_published_and_the_swap_undone():
    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    with published_registration() as registered:
        if flwr.__version__ not in PATCHED_FLOWER_VERSIONS:
            assert registered is None
            return
        assert registered.wait(timeout=0.01) == {}  # nothing registered yet
        mapping = vce_api._register_nodes(num_nodes=5, state_factory=factory)
        assert registered.wait(timeout=0.01) is mapping
    assert sorted(mapping.values()) == list(range(5))
    assert set(mapping) == {node.node_id for node in factory.state().get_node_info()}
    assert vce_api._register_nodes is FLOWER_REGISTER
