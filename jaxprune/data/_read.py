"""Reading one labelled CSV: decoding, columns, cleaning, duplicate texts, integer labels."""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import io
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxprune.data._repair import repair_texts
from jaxprune.errors import JaxpruneError

# Column names recognised when none is given (compared case-insensitively), in order of preference.
TEXT_COLUMNS = ("text", "sentence", "headline", "content", "review", "tweet")
LABEL_COLUMNS = ("label", "labels", "category", "class", "topic", "sentiment", "target")
_INTEGER = re.compile(r"[+-]?\d+(\.0*)?")


@dataclasses.dataclass(frozen=True)
class RawFile:
    """One cleaned file: distinct texts with their labels, and what cleaning removed."""

    path: Path
    texts: list[str]
    labels: list[str]
    keys: list[str]  # whitespace-normalised texts, what duplicates are found by
    header_rows: int
    empty_rows: int
    unlabelled_rows: int
    duplicate_rows: int
    conflicts: int
    repaired: int = 0  # texts repaired from CP866 mojibake (:mod:`._repair`)


def normalise_text(text: str) -> str:
    """The text with every run of whitespace made one space: what counts as the same text."""
    return " ".join(text.split())


def _decode(path: Path) -> str:
    """The file's text: UTF-8 (with or without BOM), or UTF-16 with a BOM."""
    try:
        payload = path.read_bytes()
    except IsADirectoryError:
        raise JaxpruneError(f"{path} is a folder, not a data file; pass a CSV file") from None
    except OSError as err:
        raise JaxpruneError(f"cannot read {path} ({err.strerror}); pass a readable CSV file") from None
    if payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return payload.decode(encoding)
    except UnicodeDecodeError as err:
        raise JaxpruneError(
            f"{path} is not {encoding.upper().replace('-SIG', '')} text (invalid byte at position "
            f"{err.start}); re-save it as UTF-8"
        ) from None


def _find_column(header: list[str], wanted: str | None, candidates: Sequence[str], kind: str, argument: str,
                 path: Path) -> int:
    lowered = [name.strip().lower() for name in header]
    if wanted is not None:
        if wanted.strip().lower() in lowered:
            return lowered.index(wanted.strip().lower())
        raise JaxpruneError(f"{path} has no column {wanted!r} (its columns: {header}); pass one of them to "
                            f"`{argument}`")
    found = next((lowered.index(name) for name in candidates if name in lowered), None)
    if found is None:
        raise JaxpruneError(
            f"{path} has columns {header} but no {kind} column named like {'/'.join(candidates[:3])}; "
            f"name it with `{argument}`"
        )
    return found


def read_table(path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None,
               repair_text: bool = True) -> RawFile:
    """Read one CSV (or ``.tsv``) file into distinct texts and labels, dropping what is not an example.

    Dropped and counted: stray copies of the header line, empty texts, texts without a
    label. With ``repair_text``, texts that are UTF-8 mis-decoded as CP866 are repaired into the
    file's dominant script first (:func:`jaxprune.data._repair.repair_texts`) and counted.
    Duplicate texts (after whitespace normalisation) are collapsed into their
    first occurrence; when a text comes with several labels the most frequent wins
    (ties: the first seen) and it is counted as a conflict.
    """
    path = Path(path)
    text = _decode(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    old_limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)  # a long document is a valid field, not a broken file
    try:
        # Lines end at \n, \r or \r\n only, as in a file opened with newline="": str.splitlines would
        # also end them at \x0b, \x1c-\x1e, \x85 and \u2028/\u2029, which csv writes unquoted in a cell.
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = [row for row in reader]
    except csv.Error as err:
        raise JaxpruneError(f"{path} is not a readable CSV file ({err}); fix or re-export it") from None
    finally:
        csv.field_size_limit(old_limit)
    rows = [row for row in rows if any(cell.strip() for cell in row)]  # blank lines
    if not rows:
        raise JaxpruneError(f"{path} is empty; it needs a header line naming a text and a label column")
    header = [name.strip() for name in rows[0]]
    lowered = {name.lower() for name in header}
    if text_column is None and label_column is None and not (lowered & set(TEXT_COLUMNS) or lowered & set(LABEL_COLUMNS)):
        raise JaxpruneError(f"{path} has columns {header} but none named like a text or a label column; name them "
                            f"with `text_column` and `label_column`")
    text_col = _find_column(header, text_column, TEXT_COLUMNS, "text", "text_column", path)
    label_col = _find_column(header, label_column, LABEL_COLUMNS, "label", "label_column", path)
    if text_col == label_col:
        raise JaxpruneError(f"{path}: the text and label columns are both {header[text_col]!r}; "
                            f"pass different `text_column` and `label_column`")
    header_text, header_label = header[text_col].lower(), header[label_col].lower()
    header_rows = empty_rows = unlabelled_rows = 0
    cells = [(row[text_col].strip() if text_col < len(row) else "", row[label_col].strip() if label_col < len(row) else "")
             for row in rows[1:]]
    repaired = 0
    if repair_text:
        fixed, repaired = repair_texts([text for text, _ in cells])
        cells = [(text, label) for text, (_, label) in zip(fixed, cells)]
    by_key: dict[str, list] = {}  # key -> [text, Counter of labels, first-seen order of labels]
    for text, label in cells:
        if text.lower() == header_text and label.lower() == header_label:
            header_rows += 1
        elif not text:
            empty_rows += 1
        elif not label:
            unlabelled_rows += 1
        else:
            key = normalise_text(text)
            entry = by_key.setdefault(key, [text, collections.Counter()])
            entry[1][label] += 1
    if not by_key:
        raise JaxpruneError(
            f"{path} has no examples after dropping {header_rows} header rows, {empty_rows} empty texts and "
            f"{unlabelled_rows} rows without a label; pass a file with data rows"
        )
    texts, labels, keys = [], [], []
    rows_kept = conflicts = 0
    for key, (first_text, counts) in by_key.items():
        texts.append(first_text)
        keys.append(key)
        labels.append(counts.most_common(1)[0][0])  # Counter keeps first-seen order among ties
        conflicts += len(counts) > 1
        rows_kept += sum(counts.values())
    return RawFile(path, texts, labels, keys, header_rows, empty_rows, unlabelled_rows,
                   rows_kept - len(texts), conflicts, repaired)


def integer_value(label: str) -> int | None:
    """The value of an integer label (``1``, ``+1``, ``1.0``), exactly; None for any other label, and for
    one of more digits than ``int()`` reads (4300), which stays a string."""
    if not _INTEGER.fullmatch(label):
        return None
    try:
        return int(label.partition(".")[0])  # not float(): 20 digits would round, 400 overflow
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits())
        return None


def canonical_labels(files: Sequence[RawFile]) -> list[RawFile]:
    """Integer labels written alike (``1``, ``+1``, ``1.0`` -> ``"1"``) when every label is an integer."""
    values = [[integer_value(label) for label in raw.labels] for raw in files]
    if any(value is None for file_values in values for value in file_values):
        return list(files)
    return [dataclasses.replace(raw, labels=[str(value) for value in file_values])
            for raw, file_values in zip(files, values)]


