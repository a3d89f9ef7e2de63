"""Secret seeds for the samples that privacy amplification relies on.

Amplification by subsampling holds only against someone who does not know the sample.
DP-SGD's Poisson batches (record level, amplified against the server) and the clients a
trusted server samples under central DP (client level, amplified against whoever sees the
outputs) must therefore not follow the run seed, the round and the partition, which the
server and anyone reading the run-config know. Their seeds come from :mod:`secrets`.

``FEDASO_SEEDED_SAMPLING=1``, set in the environment of the process that samples (a site,
the server, or a simulation, which runs both), makes those samples follow the public seed
again so that a test can repeat a run exactly. It voids the amplification: against the
server for DP-SGD, against anyone who knows the run seed for client sampling. It is an
environment variable, not a run-config key, so that the server cannot switch it on at a
site. Noise is never seeded (``fedaso.privacy.fresh_rng``).
"""

from __future__ import annotations

import os
import secrets

SEEDED_SAMPLING_ENV = "FEDASO_SEEDED_SAMPLING"


def seeded_sampling() -> bool:
    """True when ``FEDASO_SEEDED_SAMPLING=1``: samples follow the public seed (tests only)."""
    value = os.environ.get(SEEDED_SAMPLING_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{SEEDED_SAMPLING_ENV}={value!r} must be 0 or 1")
    return value == "1"


def sampling_seed(public_seed: int) -> int:
    """The seed of a sample whose secrecy a privacy figure relies on.

    A fresh 63-bit secret, or ``public_seed`` itself under ``FEDASO_SEEDED_SAMPLING=1``.
    """
    return public_seed if seeded_sampling() else secrets.randbits(63)
