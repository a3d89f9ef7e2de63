"""fedaso.durable: a write either lands whole or leaves the old file as it was."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

from fedaso.durable import sync_directory, write_atomically, write_text_atomically


def test_write_replaces_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "metrics.json"
    write_text_atomically(target, "old")
    write_text_atomically(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_failed_writer_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "anchors.npy"
    write_atomically(target, lambda stream: np.save(stream, np.ones(3)))

    def crash_half_way(stream: BinaryIO) -> None:
        stream.write(b"\x93NUMPY half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, crash_half_way)
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["anchors.npy"]


def test_sync_directory_ignores_a_missing_folder(tmp_path: Path) -> None:
    sync_directory(tmp_path / "missing")  # a no-op, not an error
