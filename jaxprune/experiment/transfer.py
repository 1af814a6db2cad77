"""A transfer set: unlabelled texts the teacher labels with its logits, for distillation only.

On a small task the student learns more from many texts labelled by the teacher than
from the labelled set alone (TinyBERT's augmented data, SetFit's unlabelled texts). The
texts come from ``ExperimentConfig.transfer_file`` (one per line, or a CSV column); any
text equal to an eval or test text is dropped (the student would otherwise learn the
teacher's answers on what it is scored on), and so are repeats. The teacher's logits on
them are computed once per teacher and kept in the teacher cache.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jaxprune.data import TEXT_COLUMNS, normalise_text
from jaxprune.data._repair import repair_texts
from jaxprune.errors import JaxpruneError

_TABLE_SUFFIXES = (".csv", ".tsv")


@dataclasses.dataclass(frozen=True)
class TransferSet:
    """The transfer texts kept, and what reading them did (``to_dict`` goes to results.json["data"])."""

    path: str
    texts: list[str]
    read: int  # non-blank texts in the file
    dropped_eval_test: int  # equal to an eval or test text
    duplicates: int  # repeats of an earlier transfer text, or of a training text
    repaired: int  # CP866 mojibake repaired (with ``repair_text``)

    @property
    def used(self) -> int:
        return len(self.texts)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "read": self.read, "dropped": self.dropped_eval_test + self.duplicates,
                "dropped_eval_test": self.dropped_eval_test, "duplicates": self.duplicates,
                "repaired": self.repaired, "used": self.used}

    def message(self) -> str:
        return (f"transfer set: {self.used:,} texts used of {self.read:,} read from {self.path} "
                f"({self.dropped_eval_test:,} equal to an eval or test text dropped, {self.duplicates:,} repeats of "
                f"a transfer or training text dropped)")


def _file_text(path: Path) -> str:
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise JaxpruneError(f"transfer file {path} does not exist; pass a text file (one text per line) or a CSV "
                            f"as `transfer_file`") from None
    except IsADirectoryError:
        raise JaxpruneError(f"transfer file {path} is a folder; pass a text file or a CSV as `transfer_file`") from None
    except OSError as err:
        raise JaxpruneError(f"cannot read transfer file {path} ({err.strerror}); pass a readable "
                            f"`transfer_file`") from None
    if b"\x00" in payload[:65536]:
        raise JaxpruneError(f"transfer file {path} is binary, not text; pass a UTF-8 text file or CSV as "
                            f"`transfer_file`")
    try:
        return payload.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise JaxpruneError(f"transfer file {path} is not UTF-8 text (invalid byte at position {err.start}); "
                            f"re-save it as UTF-8 or pass another `transfer_file`") from None


def _column_texts(path: Path, text: str, column: str | None) -> list[str]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if row]
    except csv.Error as err:
        raise JaxpruneError(f"transfer file {path} is not a readable CSV ({err}); fix it or pass a text file "
                            f"with one text per line") from None
    if not rows:
        return []
    header = [name.strip().lower() for name in rows[0]]
    if column is not None:
        if column.strip().lower() not in header:
            raise JaxpruneError(f"transfer file {path} has no column {column!r} (its columns: {rows[0]}); pass one "
                                f"of them as `transfer_column`")
        index = header.index(column.strip().lower())
    else:
        index = next((header.index(name) for name in TEXT_COLUMNS if name in header), None)
        if index is None:
            raise JaxpruneError(f"transfer file {path} has columns {rows[0]} but none named like a text column; "
                                f"name it with `transfer_column`")
    return [row[index] for row in rows[1:] if index < len(row)]


def read_transfer_texts(path: str | os.PathLike, column: str | None = None) -> list[str]:
    """The non-blank texts of a transfer file: its lines, or (a ``.csv``/``.tsv`` file, or any
    file with ``column``) the cells of its text column. One-line errors for a missing, binary,
    non-UTF-8 or textless file."""
    path = Path(path)
    text = _file_text(path)
    if column is not None or path.suffix.lower() in _TABLE_SUFFIXES:
        texts = _column_texts(path, text, column)
    else:
        texts = text.splitlines()
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise JaxpruneError(f"transfer file {path} has no text; pass a file with one text per line as "
                            f"`transfer_file`")
    return texts


def load_transfer_set(path: str | os.PathLike, column: str | None, held_out: Iterable[str],
                      train: Iterable[str] = (), repair_text: bool = True) -> TransferSet:
    """The transfer texts of ``path`` less those equal (after whitespace normalisation) to a
    ``held_out`` (eval or test) text, and less repeats of one another or of a ``train`` text
    (those already teach with their label)."""
    texts = read_transfer_texts(path, column)
    repaired = 0
    if repair_text:
        texts, repaired = repair_texts(texts)
    held = {normalise_text(t) for t in held_out}
    seen = {normalise_text(t) for t in train}
    kept, dropped, duplicates = [], 0, 0
    for text in texts:
        key = normalise_text(text)
        if key in held:
            dropped += 1
        elif key in seen:
            duplicates += 1
        else:
            seen.add(key)
            kept.append(text)
    if not kept:
        raise JaxpruneError(f"every text of transfer file {path} is an eval, test or training text or a repeat "
                            f"({dropped} held-out, {duplicates} repeats); pass other unlabelled texts as "
                            f"`transfer_file`")
    return TransferSet(str(path), kept, len(texts), dropped, duplicates, repaired)


def cached_logits(cache_file: Path, compute, primary: bool = True) -> tuple[np.ndarray, bool]:
    """``(logits, reused)``: the array in ``cache_file``, or ``compute()`` saved there atomically
    (by the primary process only) for the next run."""
    if cache_file.is_file():
        return np.load(cache_file), True
    logits = np.asarray(compute(), np.float32)
    if primary:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(cache_file.name + ".partial.npy")
        np.save(partial, logits)
        os.replace(partial, cache_file)  # only complete logits are ever reused
    return logits, False
