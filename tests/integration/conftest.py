"""One Ray cluster for the whole integration session.

Flower's simulation engine starts a local Ray instance for each federation and shuts it down
afterwards, several seconds of each small test. The federations that do not test that
start-up join this session's cluster instead (``simulate(..., ray_address=...)`` or the
commands' ``--ray-address``), as a user with a Ray cluster does; ``tests/integration/
test_simulation.py`` keeps the engine's own start-up under test.
"""

from collections.abc import Iterator

import pytest

from simulations.ray_head import RayHead, ray_head


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayHead]:
    """A Ray head with 2 CPUs for the session (``simulations.ray_head``), stopped by its pid."""
    with ray_head(2) as head:
        yield head
