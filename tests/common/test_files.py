"""services/common/files.py: a file appears whole or not at all."""

from __future__ import annotations

import pytest

from services.common.files import replacing, write_atomic


def test_write_atomic_replaces_the_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "deep" / "LATEST"
    write_atomic(target, b"first")
    write_atomic(target, b"second, longer", fsync=True)
    assert target.read_bytes() == b"second, longer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["LATEST"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError, match="corrupt"), replacing(target) as out:
        out.write(b"half of a")
        assert len(list(tmp_path.iterdir())) == 2  # the temp file sits beside the target meanwhile
        raise RuntimeError("corrupt download")
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]
