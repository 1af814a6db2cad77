"""Loading labelled text-classification CSVs into ``datasets`` splits, without leakage.

Any CSV (or TSV) with a text column and a label column works: MahaNews's
``{variant}_{Train,Valid,Test}.csv``, the project's offline corpus, or a
user's own files with other column names and string or integer labels. The
loader cleans each file (drops stray copies of the header line, empty texts
and rows without a label, and counts them), collapses exact duplicate texts
(after whitespace normalisation; a text given several labels keeps the most
frequent one and is reported), maps labels to ids, and returns a
:class:`datasets.DatasetDict` with ``train``, ``eval`` and (with a test file)
``test`` splits, each with columns ``text`` (string) and ``label``
(:class:`datasets.ClassLabel`).

Splits never share a text: a lone file is split over its distinct texts
(stratified, seeded), and eval or test texts that also occur in the training
file are reported and, unless ``keep_overlap``, left out of that split.

The files are read with :mod:`csv` rather than ``datasets.load_dataset("csv")``
because a bad file must end in one line saying what is wrong with it (pandas
raises tracebacks about tokenizing and dtypes); ``datasets`` holds the result.
Nothing here prints: what was dropped or split is returned in :class:`DataInfo`
(and logged), and the caller decides what to show.
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import io
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from jaxprune.errors import JaxpruneError

logger = logging.getLogger(__name__)

VARIANTS = ("SHC", "LDC", "LPC")
MAHANEWS_URL = (
    "https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/main/L3Cube-MahaNews/{variant}/{file}"
)
OFFLINE_CORPUS = Path(__file__).resolve().parent / "corpus" / "marathi_headlines.csv"

# Column names recognised when none is given (compared case-insensitively), in order of preference.
TEXT_COLUMNS = ("text", "sentence", "headline", "content", "review", "tweet")
LABEL_COLUMNS = ("label", "labels", "category", "class", "topic", "sentiment", "target")
# What a file's name says it holds, for a folder passed as --data-dir.
_ROLE_PATTERNS = {"train": re.compile(r"train"), "eval": re.compile(r"val|dev"), "test": re.compile(r"test")}
_TABLE_SUFFIXES = (".csv", ".tsv")
_GENERIC_LABEL = re.compile(r"LABEL_\d+")
_INTEGER = re.compile(r"[+-]?\d+(\.0*)?")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the loader read, dropped, collapsed and split; ``messages`` are lines for the user.

    Attributes:
      source: the folder, file or download cache the data came from.
      files: names of the files read, ``{role: name}`` with roles train/eval/test.
      label_names: label strings in id order (``label_names[i]`` has id ``i``).
      dropped_header_rows: rows whose text and label repeat the header line.
      dropped_empty_rows: rows with an empty (or whitespace-only) text.
      dropped_unlabelled_rows: rows with a text but an empty label.
      duplicate_rows: rows collapsed into an earlier row with the same text (per file).
      label_conflicts: distinct texts that came with more than one label (the most frequent kept).
      overlap: ``{"eval"|"test": number of its distinct texts also in the training file}``.
      overlap_removed: how many of those were left out of the split (all of them unless
        ``keep_overlap``).
      rare_labels: ``{label: training examples}`` for labels with fewer than 2.
      split: how train and eval were made: ``"files"`` or a description of the split.
      split_sizes: ``{split name: number of examples}``.
      messages: one human-readable line per notable event.
    """

    source: str
    files: dict[str, str]
    label_names: tuple[str, ...]
    dropped_header_rows: int
    dropped_empty_rows: int
    dropped_unlabelled_rows: int
    duplicate_rows: int
    label_conflicts: int
    overlap: dict[str, int]
    overlap_removed: dict[str, int]
    rare_labels: dict[str, int]
    split: str
    split_sizes: dict[str, int]
    messages: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _RawFile:
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


def _find_column(header: list[str], wanted: str | None, candidates: Sequence[str], kind: str, flag: str,
                 path: Path) -> int:
    lowered = [name.strip().lower() for name in header]
    if wanted is not None:
        if wanted.strip().lower() in lowered:
            return lowered.index(wanted.strip().lower())
        raise JaxpruneError(f"{path} has no column {wanted!r} (its columns: {header}); pass one of them to {flag}")
    found = next((lowered.index(name) for name in candidates if name in lowered), None)
    if found is None:
        raise JaxpruneError(
            f"{path} has columns {header} but no {kind} column named like {'/'.join(candidates[:3])}; "
            f"name it with {flag}"
        )
    return found


def read_table(path: str | os.PathLike, text_column: str | None = None, label_column: str | None = None) -> _RawFile:
    """Read one CSV (or ``.tsv``) file into distinct texts and labels, dropping what is not an example.

    Dropped and counted: stray copies of the header line, empty texts, texts without a
    label. Duplicate texts (after whitespace normalisation) are collapsed into their
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
                            f"with --text-column and --label-column")
    text_col = _find_column(header, text_column, TEXT_COLUMNS, "text", "--text-column", path)
    label_col = _find_column(header, label_column, LABEL_COLUMNS, "label", "--label-column", path)
    if text_col == label_col:
        raise JaxpruneError(f"{path}: the text and label columns are both {header[text_col]!r}; "
                            f"pass different --text-column and --label-column")
    header_text, header_label = header[text_col].lower(), header[label_col].lower()
    header_rows = empty_rows = unlabelled_rows = 0
    by_key: dict[str, list] = {}  # key -> [text, Counter of labels, first-seen order of labels]
    for row in rows[1:]:
        text = row[text_col].strip() if text_col < len(row) else ""
        label = row[label_col].strip() if label_col < len(row) else ""
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
    return _RawFile(path, texts, labels, keys, header_rows, empty_rows, unlabelled_rows,
                    rows_kept - len(texts), conflicts)


def _integer(label: str) -> int | None:
    """The value of an integer label (``1``, ``+1``, ``1.0``), exactly; None for any other label, and for
    one of more digits than ``int()`` reads (4300), which stays a string."""
    if not _INTEGER.fullmatch(label):
        return None
    try:
        return int(label.partition(".")[0])  # not float(): 20 digits would round, 400 overflow
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits())
        return None


def _canonical_labels(files: Sequence[_RawFile]) -> list[_RawFile]:
    """Integer labels written alike (``1``, ``+1``, ``1.0`` -> ``"1"``) when every label is an integer."""
    values = [[_integer(label) for label in raw.labels] for raw in files]
    if any(value is None for file_values in values for value in file_values):
        return list(files)
    return [dataclasses.replace(raw, labels=[str(value) for value in file_values])
            for raw, file_values in zip(files, values)]


def _label_names(train: _RawFile, label_names: Sequence[str] | None) -> tuple[str, ...]:
    """The model's label names when it has real ones, else the training data's, sorted
    (numerically when they are integers)."""
    if label_names and not all(_GENERIC_LABEL.fullmatch(n) for n in label_names):
        return tuple(label_names)
    found = {label: _integer(label) for label in train.labels}
    if all(value is not None for value in found.values()):  # "1" and "1.0" stay apart when eval has "x"
        return tuple(sorted(found, key=lambda label: (found[label], label)))
    return tuple(sorted(found))


def _label_ids(raw: _RawFile, label_names: tuple[str, ...], from_model: bool) -> np.ndarray:
    """Label ids (N,) int64 of ``raw`` under ``label_names``; an unknown label is an error."""
    label_to_id = {name: i for i, name in enumerate(label_names)}
    unknown = sorted({label for label in raw.labels if label not in label_to_id})
    if unknown:
        whose = "the model's labels" if from_model else "the labels of the training data"
        shown = ", ".join(repr(label) for label in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise JaxpruneError(
            f"{raw.path} has label {shown} outside {whose} {list(label_names)[:20]}; fix the file"
            + (" or use a model trained on these labels" if from_model else " or add such examples to training")
        )
    return np.array([label_to_id[label] for label in raw.labels], dtype=np.int64)


def stratified_split(
    labels: np.ndarray, eval_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a seeded, per-class split into train and eval parts.

    Each class contributes ``round(count * eval_fraction)`` rows to eval, but
    always keeps at least one row in train. The same ``(labels, eval_fraction,
    seed)`` always gives the same split.

    Args:
      labels: (N,) integer class ids.
      eval_fraction: share of each class that goes to eval, in (0, 1).
      seed: seed of the shuffle inside each class.

    Returns:
      ``(train_rows, eval_rows)``, sorted int64 arrays that partition ``range(N)``.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise JaxpruneError(f"eval fraction {eval_fraction} is not between 0 and 1; pass e.g. 0.2")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train_rows, eval_rows = [], []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_eval = min(int(round(len(rows) * eval_fraction)), len(rows) - 1)
        eval_rows.append(rows[:n_eval])
        train_rows.append(rows[n_eval:])
    train = np.sort(np.concatenate(train_rows)).astype(np.int64)
    evals = np.sort(np.concatenate(eval_rows)).astype(np.int64)
    if len(evals) == 0:
        raise JaxpruneError(
            f"{len(labels)} examples are too few to split off an eval part; pass more data"
        )
    return train, evals


def _to_dataset(texts: Sequence[str], label_ids: np.ndarray, label_names: tuple[str, ...]):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(label_names))}
    )
    return datasets.Dataset.from_dict(
        {"text": list(texts), "label": label_ids.tolist()}, features=features
    )


def _subset(raw: _RawFile, rows: np.ndarray) -> _RawFile:
    pick = [int(r) for r in rows]
    return dataclasses.replace(raw, texts=[raw.texts[i] for i in pick], labels=[raw.labels[i] for i in pick],
                               keys=[raw.keys[i] for i in pick])


def _cleaning_message(raw: _RawFile) -> str | None:
    parts = []
    if raw.header_rows:
        parts.append(f"dropped {raw.header_rows} stray header rows")
    if raw.empty_rows:
        parts.append(f"dropped {raw.empty_rows} empty texts")
    if raw.unlabelled_rows:
        parts.append(f"dropped {raw.unlabelled_rows} rows without a label")
    if raw.duplicate_rows:
        conflicts = f" ({raw.conflicts} with conflicting labels: the most frequent kept)" if raw.conflicts else ""
        parts.append(f"collapsed {raw.duplicate_rows} duplicate rows into their texts{conflicts}")
    if not parts:
        return None
    return f"{raw.path.name}: {', '.join(parts)}; kept {len(raw.texts)} distinct texts"


def build_splits(
    train: _RawFile,
    eval_file: _RawFile | None = None,
    test: _RawFile | None = None,
    label_names: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    keep_overlap: bool = False,
    source: str | None = None,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Train, eval (split off ``train`` when there is no eval file) and test splits that share no text."""
    read = [raw for raw in (train, eval_file, test) if raw is not None]
    messages = [m for m in map(_cleaning_message, read) if m]
    train, *rest = _canonical_labels(read)
    eval_file = rest.pop(0) if eval_file is not None else None
    test = rest.pop(0) if test is not None else None
    from_model = bool(label_names) and not all(_GENERIC_LABEL.fullmatch(n) for n in label_names)
    names = _label_names(train, label_names)
    train_ids = _label_ids(train, names, from_model)
    counts = collections.Counter(train.labels)
    rare = {label: counts[label] for label in sorted(counts) if counts[label] < 2}
    file_keys = set(train.keys)  # the whole training file, its split-off eval part included

    if eval_file is None:
        if rare:
            shown = ", ".join(f"{label!r} ({n})" for label, n in list(rare.items())[:5])
            raise JaxpruneError(
                f"{train.path} has labels with fewer than 2 examples ({shown}), so no stratified split can give "
                f"them to both train and eval; add examples, remove those rows, or pass an --eval-file"
            )
        train_rows, eval_rows = stratified_split(train_ids, eval_fraction, seed)
        eval_file, train = _subset(train, eval_rows), _subset(train, train_rows)
        train_ids, eval_ids = train_ids[train_rows], train_ids[eval_rows]
        split = (f"{train.path.name} split over its {len(train_rows) + len(eval_rows)} distinct texts into "
                 f"{len(train_rows)} train and {len(eval_rows)} eval ({1 - eval_fraction:.0%}/{eval_fraction:.0%}, "
                 f"stratified by label, seed {seed})")
        messages.append(split)
    else:
        split = "files"
        if rare:
            shown = ", ".join(f"{label!r} ({n})" for label, n in list(rare.items())[:5])
            messages.append(f"{train.path.name}: labels with fewer than 2 training examples: {shown}; "
                            f"expect poor scores on them")
        eval_ids = None

    overlap: dict[str, int] = {}
    overlap_removed: dict[str, int] = {}
    # Test texts are looked for in the whole training file: one in the eval part split off it would
    # otherwise be in both eval and test.
    train_keys = {"eval": set(train.keys), "test": file_keys}
    held_out = {"eval": eval_file, "test": test}
    for name, raw in held_out.items():
        if raw is None:
            continue
        shared = [i for i, key in enumerate(raw.keys) if key in train_keys[name]]
        overlap[name] = len(shared)
        overlap_removed[name] = 0
        if not shared:
            continue
        if keep_overlap:
            messages.append(f"{raw.path.name}: {len(shared)} of its {len(raw.texts)} texts also occur in training; "
                            f"kept in its metrics (--keep-overlap)")
            continue
        if len(shared) == len(raw.texts):
            raise JaxpruneError(f"every text of {raw.path} also occurs in the training data; pass held-out data "
                                f"(or --keep-overlap to score it anyway)")
        keep = np.setdiff1d(np.arange(len(raw.texts)), shared)
        held_out[name] = _subset(raw, keep)
        if name == "eval" and eval_ids is not None:
            eval_ids = eval_ids[keep]
        overlap_removed[name] = len(shared)
        messages.append(f"{raw.path.name}: left out {len(shared)} of its {len(raw.texts)} texts that also occur "
                        f"in training (--keep-overlap keeps them)")
    eval_file, test = held_out["eval"], held_out["test"]
    if eval_ids is None:
        eval_ids = _label_ids(eval_file, names, from_model)

    splits = {"train": _to_dataset(train.texts, train_ids, names), "eval": _to_dataset(eval_file.texts, eval_ids, names)}
    if test is not None:
        splits["test"] = _to_dataset(test.texts, _label_ids(test, names, from_model), names)
    for message in messages:
        logger.info(message)
    roles = {"train": train.path.name}
    if eval_file.path != train.path:
        roles["eval"] = eval_file.path.name
    if test is not None:
        roles["test"] = test.path.name
    info = DataInfo(
        source=source or str(train.path),
        files=roles,
        label_names=names,
        dropped_header_rows=sum(raw.header_rows for raw in read),
        dropped_empty_rows=sum(raw.empty_rows for raw in read),
        dropped_unlabelled_rows=sum(raw.unlabelled_rows for raw in read),
        duplicate_rows=sum(raw.duplicate_rows for raw in read),
        label_conflicts=sum(raw.conflicts for raw in read),
        overlap=overlap,
        overlap_removed=overlap_removed,
        rare_labels=rare,
        split=split,
        split_sizes={name: len(dataset) for name, dataset in splits.items()},
        messages=tuple(messages),
    )
    return datasets.DatasetDict(splits), info


def _check_file(path: str | os.PathLike, flag: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise JaxpruneError(f"{flag} {path} is a folder; pass a CSV file (or the folder as --data-dir)")
    if not path.is_file():
        raise JaxpruneError(f"{flag} {path} does not exist; pass the path of a CSV file with a text and a label column")
    return path


def load_files(
    train_file: str | os.PathLike,
    eval_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    keep_overlap: bool = False,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Load a training CSV, and optionally eval and test CSVs, into splits that share no text.

    Without ``eval_file`` the training file's distinct texts are split
    ``1 - eval_fraction`` / ``eval_fraction``, stratified by label and seeded.
    Eval and test texts that occur in the training file are left out of their
    split (and counted in ``info.overlap``) unless ``keep_overlap``.

    Args:
      train_file, eval_file, test_file: CSV (or ``.tsv``) files, UTF-8 or UTF-16 with a BOM.
      text_column, label_column: column names (any case); ``None`` looks for the usual
        names (``text``/``sentence``/..., ``label``/``labels``/...).
      label_names: the model's ``id2label`` in id order when it is already a classifier;
        placeholder names (``LABEL_0``...) or None mean "the training data's sorted labels"
        (numeric order for integer labels such as -1/0/1).

    Returns:
      ``(splits, info)``: a DatasetDict with ``train``, ``eval`` (and ``test``), columns
      ``text`` and ``label`` (ClassLabel of the label names).
    """
    paths = {"--train-file": train_file, "--eval-file": eval_file, "--test-file": test_file}
    raw = {flag: read_table(_check_file(path, flag), text_column, label_column)
           for flag, path in paths.items() if path is not None}
    folders = {str(Path(path).resolve().parent) for path in paths.values() if path is not None}
    source = folders.pop() if len(folders) == 1 else str(Path(train_file).resolve())
    return build_splits(raw["--train-file"], raw.get("--eval-file"), raw.get("--test-file"), label_names,
                        eval_fraction, seed, keep_overlap, source=source)


def find_split_files(folder: str | os.PathLike, variant: str | None = None) -> dict[str, Path]:
    """``{"train"|"eval"|"test": path}`` of the CSV/TSV files in ``folder``, by name.

    A name containing ``train`` is training data, ``val`` (``valid``, ``validation``)
    or ``dev`` eval data, ``test`` test data (case-insensitive). When several files
    fit one role, those whose name contains ``variant`` (e.g. MahaNews's ``SHC``) are
    preferred; if that leaves more than one, it is an error.
    """
    folder = Path(folder)
    if folder.is_file():
        raise JaxpruneError(f"--data-dir {folder} is a file; pass it as --train-file {folder} (or pass its folder)")
    if not folder.is_dir():
        raise JaxpruneError(f"--data-dir {folder} does not exist; pass a folder of *train*/*valid*/*test* CSV files")
    candidates: dict[str, list[Path]] = {role: [] for role in _ROLE_PATTERNS}
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and path.suffix.lower() in _TABLE_SUFFIXES):
            continue
        roles = [role for role, pattern in _ROLE_PATTERNS.items() if pattern.search(path.stem.lower())]
        if len(roles) == 1:
            candidates[roles[0]].append(path)
    found: dict[str, Path] = {}
    for role, paths in candidates.items():
        if len(paths) > 1 and variant:
            paths = [p for p in paths if variant.lower() in p.stem.lower()] or paths
        if len(paths) > 1:
            raise JaxpruneError(f"{folder} has several {role} files ({', '.join(p.name for p in paths)}); pass "
                                f"--variant, or the files themselves as --train-file/--eval-file/--test-file")
        if paths:
            found[role] = paths[0]
    if not found:
        raise JaxpruneError(f"{folder} has no CSV file named like *train*, *valid* or *test*; pass --train-file "
                            f"(and --eval-file), or a folder with such files as --data-dir")
    return found


def load_folder(
    folder: str | os.PathLike,
    variant: str | None = None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    keep_overlap: bool = False,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Load a folder of ``*train*``, ``*val*``/``*valid*`` and ``*test*`` files (see :func:`find_split_files`).

    Train is ``train``, valid is ``eval`` and test is ``test``. Without a valid file
    ``eval`` is split off train; without a train file, valid (else test) is the one
    file that is split into ``train`` and ``eval``.
    """
    found = find_split_files(folder, variant)
    options = dict(text_column=text_column, label_column=label_column)
    raw = {role: read_table(path, **options) for role, path in found.items()}
    train = raw.pop("train", None) or raw.pop("eval", None) or raw.pop("test")
    return build_splits(train, raw.get("eval"), raw.get("test"), label_names, eval_fraction, seed,
                        keep_overlap, source=str(folder))


def _check_variant(variant: str) -> str:
    if variant.upper() not in VARIANTS:
        raise JaxpruneError(
            f"unknown MahaNews variant {variant!r}; pass one of {', '.join(VARIANTS)}"
        )
    return variant.upper()


def download_mahanews(variant: str = "SHC", cache_dir: str | os.PathLike | None = None) -> Path:
    """Downloads the variant's Train/Valid/Test CSVs from GitHub; returns the local folder.

    Files already in ``cache_dir`` (default ``~/.cache/jaxprune/mahanews/{variant}``)
    are reused. Any network failure becomes a one-line :class:`JaxpruneError`.
    """
    variant = _check_variant(variant)
    folder = Path(cache_dir or Path.home() / ".cache" / "jaxprune" / "mahanews" / variant)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("Train", "Valid", "Test"):
        name = f"{variant}_{split}.csv"
        target = folder / name
        if target.is_file():
            continue
        url = MAHANEWS_URL.format(variant=variant, file=name)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as err:
            reason = " ".join(str(getattr(err, "reason", err)).split())
            raise JaxpruneError(
                f"could not download the MahaNews {variant} dataset from {url} ({reason}); "
                "pass --data-dir with a local folder of MahaNews CSV files"
            ) from None
        partial = target.with_suffix(".csv.part")
        partial.write_bytes(payload)
        partial.replace(target)  # atomic: a cut-off download never looks complete
    return folder


def load_mahanews(
    data_dir: str | os.PathLike | None = None,
    variant: str = "SHC",
    label_names: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    **options: Any,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """MahaNews from a local folder, or downloaded when ``data_dir`` is None (see :func:`load_folder`).

    Its ``{variant}_{Train,Valid,Test}.csv`` files become ``train``, ``eval`` and
    ``test``; a folder with only ``{variant}_Valid.csv`` (as ``../shared`` has) is
    split over its distinct texts. ``options`` go to :func:`load_folder`.
    """
    variant = _check_variant(variant)
    folder = download_mahanews(variant) if data_dir is None else data_dir
    return load_folder(folder, variant, label_names=label_names, eval_fraction=eval_fraction, seed=seed, **options)


def load_offline_corpus(
    label_names: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    path: str | os.PathLike | None = None,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Loads the project's own Marathi headline corpus (or any ``text,label`` CSV at ``path``),
    split into ``train`` and ``eval`` over its distinct texts. See ``jaxprune/corpus/README.md``."""
    csv_path = Path(path) if path is not None else OFFLINE_CORPUS
    if not csv_path.is_file():
        raise JaxpruneError(
            f"corpus file {csv_path} does not exist; pass the path of a text,label CSV"
        )
    return build_splits(read_table(csv_path), label_names=label_names, eval_fraction=eval_fraction, seed=seed)


def load_csv(
    path: str | os.PathLike,
    label_names: Sequence[str] | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> tuple[datasets.Dataset, DataInfo]:
    """Loads one CSV whole, without splitting: the distinct texts of a file to evaluate on.

    The file is cleaned like the training data (see :func:`read_table`). Labels map
    to ids by ``label_names`` (the model's ``id2label``); a label outside them is an
    error. Placeholder names (``LABEL_0``...) or None mean "the file's sorted labels".

    Returns:
      ``(dataset, info)``: columns ``text`` and ``label`` (ClassLabel), and
      ``info.split_sizes == {"all": len(dataset)}``.
    """
    raw = read_table(_check_file(path, "--data-file"), text_column, label_column)
    (raw,) = _canonical_labels([raw])
    from_model = bool(label_names) and not all(_GENERIC_LABEL.fullmatch(n) for n in label_names)
    names = _label_names(raw, label_names)
    dataset = _to_dataset(raw.texts, _label_ids(raw, names, from_model), names)
    message = _cleaning_message(raw)
    info = DataInfo(
        source=str(raw.path), files={"all": raw.path.name}, label_names=names,
        dropped_header_rows=raw.header_rows, dropped_empty_rows=raw.empty_rows,
        dropped_unlabelled_rows=raw.unlabelled_rows, duplicate_rows=raw.duplicate_rows,
        label_conflicts=raw.conflicts, overlap={}, overlap_removed={}, rare_labels={}, split="none",
        split_sizes={"all": len(dataset)}, messages=(message,) if message else (),
    )
    return dataset, info
