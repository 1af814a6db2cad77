"""One run per folder: an exclusive OS lock on a hidden file inside it.

Two runs writing into one output folder would interleave checkpoints and
results (and orbax clears half-written checkpoint folders when it starts, so
a second run could delete the first one's save in progress). The lock is an
``flock`` taken through ``filelock``: the operating system drops it when the
holder's process ends in any way, ``kill -9`` included, so a crashed run
never leaves the folder locked.

The lock file stays in the folder after release, empty and harmless.
Removing it on release would race: a process that opened the old file just
before the unlink could lock that orphaned inode while a third one locks a
new file of the same name, and both would believe they hold the folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import filelock

from jaxprune.errors import JaxpruneError

LOCK_NAME = ".jaxprune.lock"


@contextlib.contextmanager
def hold_folder_lock(
    folder: str | os.PathLike, what: str = "output folder", argument: str = "output_dir"
) -> Iterator[Path]:
    """Hold ``folder/.jaxprune.lock`` exclusively for the ``with`` block; yields its path.

    Creates ``folder`` if needed. Never waits: if another process (or another
    ``with`` block in this one) holds the lock, raises a JaxpruneError naming
    ``what`` the folder is and the ``argument`` that chooses another. Released when
    the block ends, normally or by an exception.
    """
    folder = Path(folder).absolute()
    lock_path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise JaxpruneError(
            f"cannot create the {what} {folder} ({error.strerror or error}); pass another `{argument}`"
        ) from None
    lock = filelock.FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise JaxpruneError(
            f"another run is using the {what} {folder} (lock file {lock_path}); wait for it to finish or pass "
            f"another `{argument}`"
        ) from None
    except OSError as error:
        raise JaxpruneError(
            f"cannot lock the {what} {folder}: {error.strerror or error} on {lock_path}; pass another `{argument}`"
        ) from None
    try:
        yield lock_path
    finally:
        lock.release()
