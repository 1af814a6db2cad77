"""Output folders: created and checked before the work, written atomically, and cleaned up
after a run that failed before it made anything worth keeping."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.errors import JaxpruneError
from jaxprune.experiment.runlock import LOCK_NAME


def prepare_output_dir(folder: str, what: str = "output folder", argument: str = "output_dir") -> Path:
    """Create ``folder`` and check it is writable; the error names ``what`` it is and the ``argument`` that sets it."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise JaxpruneError(f"cannot write to {what} {folder} ({err.strerror}); pass a writable `{argument}`") from None
    return path


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as JSON atomically: a reader (or a resumed run) never sees a half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise JaxpruneError(f"cannot write {path} ({err.strerror}); choose a writable location") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


_BOOKKEEPING = (LOCK_NAME, ".write-test")


def _useful(entry: Path) -> bool:
    """Whether a rerun would use ``entry``: anything but bookkeeping and a checkpoints folder with no checkpoint."""
    if entry.name in _BOOKKEEPING:
        return False
    if entry.name in ("checkpoints", "checkpoints-finetune") and entry.is_dir():
        return any(child.name.isdigit() for child in entry.iterdir())
    return True


def remove_unless_useful(folder: Path, created: list[Path]) -> None:
    """After a failed run: remove ``folder`` unless it holds something useful, then the empty parents it
    was created with (``created``, deepest first)."""
    if folder.is_dir() and not any(_useful(entry) for entry in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
    for path in created:
        try:
            path.rmdir()
        except OSError:  # not empty (or already gone): keep what is there
            if path.exists():
                break
