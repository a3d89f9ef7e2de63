"""Per-process caches of what a client would otherwise read again for every message.

A long-lived client process (a simulation's actor) receives many messages, often of
different runs. What does not change between them, a pretrained model's weights and its
tokenizer, is read once and kept here; everything that trains, and every optimizer, Opacus
or ASO state, is built fresh per message by its owner from the message's arrays.

A cache entry is keyed by the *identity* of the files it was read from, not by their path
alone: a model directory rewritten in place between two runs (a new ``save_pretrained``
into the same folder) changes its files' sizes or modification times, so it is read again
rather than served stale. :func:`cached` memoizes a loader by that identity, and
:func:`clear_caches` empties every such cache (benchmarks measure the cold path with it;
tests compare a warm process with a cold one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Entries per cache: a process rarely alternates between more models than this, and each
# entry of a model cache holds a whole model's weights.
CACHE_SIZE = 2

_CLEARERS: list[Callable[[], None]] = []


@dataclass(frozen=True)
class SourceIdentity:
    """What a model or tokenizer read from ``source`` depends on.

    For a local directory: every file in it, by name, size and modification time (ns).
    For a hub name: the name alone (the hub's own cache is keyed by revision).
    """

    source: str
    files: tuple[tuple[str, int, int], ...] = ()  # (name, size in bytes, mtime_ns)


def source_identity(source: str) -> SourceIdentity:
    """The identity of ``source`` now (a directory's files are listed, not read)."""
    folder = Path(source)
    if not folder.is_dir():
        return SourceIdentity(source)
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            files.append((path.name, stat.st_size, stat.st_mtime_ns))
    return SourceIdentity(source, tuple(files))


def cached(load: Callable[[str], T], *, size: int = CACHE_SIZE) -> Callable[[str], T]:
    """Memoize ``load(source)`` by :func:`source_identity`, keeping ``size`` entries.

    The returned function stats the source's files on every call (microseconds) and calls
    ``load`` again when they changed. Entries are shared: callers must not modify them.
    """

    @functools.lru_cache(maxsize=size)
    def load_identity(identity: SourceIdentity) -> T:
        return load(identity.source)

    _CLEARERS.append(load_identity.cache_clear)

    @functools.wraps(load)
    def load_cached(source: str) -> T:
        return load_identity(source_identity(source))

    return load_cached


def clear_caches() -> None:
    """Empty every cache made by :func:`cached` in this process."""
    for clear in _CLEARERS:
        clear()
