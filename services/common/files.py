"""Files that appear whole or not at all: write beside the target, then rename over it.

Snapshots (LATEST), the voice model files, the test-audio cache and Tools' prefix cache are all read by
other processes while they may be being written; a reader must never see half a file, and a failed write
(disk full, a corrupt download) must leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def replacing(path: Path, *, fsync: bool = False) -> Iterator[BinaryIO]:
    """A file to write that becomes `path` in one rename when the block ends without an error; on an error
    it is removed and `path` is left as it was. `fsync`: on disk before the rename (survives a crash)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to `path` whole (see `replacing`)."""
    with replacing(path, fsync=fsync) as out:
        out.write(data)
