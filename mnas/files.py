"""Files written whole or not at all: a reader (a parent process, a resumed run) never sees half a file.

Every writer of a result, a checkpoint, a model file or a cache part goes through ``atomic_path``:
it writes to a temporary name beside the target and renames it over the target only once the
writer returned (a rename within a folder is atomic on POSIX). A writer that fails leaves the
old file, or none, and no temporary behind. (``devices`` may not import ``mnas``: its worker
keeps its own three lines.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed over ``path`` on success.
    ``suffix`` ends the temporary name where a writer insists on one (``np.save`` adds .npy)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.partial{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write text or bytes to ``path`` whole."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
    return Path(path)
