"""Writes that survive a crash: a file is either its old content or its new one, never half.

Every file that FedASO writes and later trusts (a client's state, the ledger of a site's
privacy budget, a run's final model, anchors and metrics, summaries) goes through
:func:`write_atomically`: the bytes go to a temporary file in the target's folder, are
flushed and fsynced, the temporary file is renamed over the target (``os.replace``, atomic
on POSIX), and the folder entry is fsynced so that the rename itself survives a power cut.
A writer that fails leaves the old file as it was and removes its temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(stream)`` so that a crash never leaves it half written.

    Parameters
    ----------
    path : str | Path
        The file to create or replace. Its folder is created if needed.
    write : Callable[[BinaryIO], None]
        Writes the whole new content to the binary stream it is given.

    Returns
    -------
    Path
        ``path``, now holding the new content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    sync_directory(target.parent)
    return target


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_atomically`)."""
    data = text.encode()

    def write(stream: BinaryIO) -> None:
        stream.write(data)

    return write_atomically(path, write)


def sync_directory(directory: str | Path) -> None:
    """Flush the folder entry of a rename to disk (POSIX; a no-op where unsupported)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
