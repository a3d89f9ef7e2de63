"""What a client is told with each message: its keys of the run-config and the protocol's.

A client parses its message's ConfigRecord once, with :meth:`ClientConfig.from_message`:
every client key must be there (no silent fall-back to a client-side default), no
server-only key may be, and every value is checked by its section as on the server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedaso.config.fields import coerce
from fedaso.config.run import RunConfig, client_keys, server_only_keys
from fedaso.wire import RUN_KEY, SERVER_ROUND


@dataclass(frozen=True)
class ClientConfig:
    """What a client is told with a message: its run-config view and the protocol keys.

    ``run`` holds the client keys as sent; its server-only keys keep their defaults and
    no client code reads them. ``extra`` holds the keys Flower's own strategies and wrappers
    add (e.g. FedProx's ``proximal-mu``, the client-side clipping norm).
    """

    run: RunConfig
    server_round: int
    run_key: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_message(cls, flat: Mapping[str, Any]) -> ClientConfig:
        """Parse a message's ConfigRecord; every client key must be there.

        Raises
        ------
        ValueError
            Naming the missing keys, a server-only key that should not have been sent, or
            a bad value.
        """
        required = cls.required_keys()
        missing = sorted(required - set(flat))
        if missing:
            raise ValueError(f"the message's config lacks required key(s) {', '.join(missing)}")
        leaked = sorted(server_only_keys() & set(flat))
        if leaked:
            raise ValueError(f"the message's config carries server-only key(s) {leaked}")
        keys = client_keys()
        return cls(
            run=RunConfig.from_flat({k: v for k, v in flat.items() if k in keys}),
            server_round=coerce(SERVER_ROUND, flat[SERVER_ROUND], int),
            run_key=coerce(RUN_KEY, flat[RUN_KEY], str),
            extra={k: v for k, v in flat.items() if k not in required},
        )

    @staticmethod
    def required_keys() -> frozenset[str]:
        """The client keys of the run-config and the protocol's own."""
        return client_keys() | {SERVER_ROUND, RUN_KEY}

    def to_message(self) -> dict[str, Any]:
        """The flat ConfigRecord content a server sends (inverse of :meth:`from_message`)."""
        protocol = {SERVER_ROUND: self.server_round, RUN_KEY: self.run_key}
        return dict(self.extra) | self.run.client_view() | protocol
