"""Loading MahaNews-style topic CSVs into labelled ``datasets`` splits.

A MahaNews folder holds ``{variant}_{Train,Valid,Test}.csv`` files (variant
``SHC``, ``LDC`` or ``LPC``; names matched case-insensitively), each with a
text column (``Text`` or ``text``) and a label column (``Label`` or
``labels``). The loader cleans them (drops stray copies of the header line and
empty texts, and counts both), maps label strings to ids in the model's
``id2label`` order, and returns a :class:`datasets.DatasetDict` with ``train``
and ``eval`` (and ``test`` when a Test file was used apart) splits, each with
columns ``text`` (string) and ``label`` (:class:`datasets.ClassLabel`).

Nothing here prints: what was dropped or split is returned in :class:`DataInfo`
(and logged), and the caller decides what to show.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np

from jaxprune.errors import JaxpruneError

logger = logging.getLogger(__name__)

VARIANTS = ("SHC", "LDC", "LPC")
MAHANEWS_URL = (
    "https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/main/L3Cube-MahaNews/{variant}/{file}"
)
OFFLINE_CORPUS = Path(__file__).resolve().parent / "corpus" / "marathi_headlines.csv"

_TEXT_COLUMNS = ("text",)
_LABEL_COLUMNS = ("label", "labels")
_SPLIT_NAMES = ("train", "valid", "test")
_GENERIC_LABEL = re.compile(r"LABEL_\d+")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What the loader read, dropped and split; ``messages`` are lines for the user.

    Attributes:
      source: the folder, corpus file or download cache the data came from.
      files: names of the CSV files read.
      label_names: label strings in id order (``label_names[i]`` has id ``i``).
      dropped_header_rows: rows whose text and label repeat the header line.
      dropped_empty_rows: rows with an empty (or whitespace-only) text.
      split_sizes: ``{split name: number of examples}``.
      messages: one human-readable line per notable event (drops, splits).
    """

    source: str
    files: tuple[str, ...]
    label_names: tuple[str, ...]
    dropped_header_rows: int
    dropped_empty_rows: int
    split_sizes: dict[str, int]
    messages: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _RawFile:
    path: Path
    texts: list[str]
    labels: list[str]
    header_rows: int
    empty_rows: int


def _read_csv(path: Path) -> _RawFile:
    """Reads one CSV into stripped text/label lists, dropping header copies and empty texts."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as err:
        raise JaxpruneError(
            f"{path} is not UTF-8 text (invalid byte at position {err.start}); re-save it as UTF-8"
        ) from None
    except csv.Error as err:
        raise JaxpruneError(
            f"{path} is not a readable CSV file ({err}); fix or re-export it"
        ) from None
    if not rows:
        raise JaxpruneError(f"{path} is empty; it needs a header line with text and label columns")
    header = [name.strip() for name in rows[0]]
    lowered = [name.lower() for name in header]
    text_col = next((lowered.index(n) for n in _TEXT_COLUMNS if n in lowered), None)
    label_col = next((lowered.index(n) for n in _LABEL_COLUMNS if n in lowered), None)
    if text_col is None or label_col is None:
        raise JaxpruneError(
            f"{path} has columns {header}; expected a text column (Text or text) and a label "
            "column (Label or labels)"
        )
    header_text, header_label = lowered[text_col], lowered[label_col]
    texts: list[str] = []
    labels: list[str] = []
    header_rows = empty_rows = 0
    for row in rows[1:]:
        if not row:  # a blank line
            continue
        text = row[text_col].strip() if text_col < len(row) else ""
        label = row[label_col].strip() if label_col < len(row) else ""
        if text.lower() == header_text and label.lower() == header_label:
            header_rows += 1
        elif not text:
            empty_rows += 1
        else:
            texts.append(text)
            labels.append(label)
    if not texts:
        raise JaxpruneError(
            f"{path} has no examples after dropping {header_rows} header rows and {empty_rows} "
            "empty texts; pass a file with data rows"
        )
    return _RawFile(path, texts, labels, header_rows, empty_rows)


def _resolve_label_names(
    files: Sequence[_RawFile], label_names: Sequence[str] | None
) -> tuple[str, ...]:
    """The model's label names when it has real ones, else the data's sorted unique labels."""
    if label_names and not all(_GENERIC_LABEL.fullmatch(n) for n in label_names):
        return tuple(label_names)
    found = {label for raw in files for label in raw.labels}
    if all(label.isdigit() for label in found):
        return tuple(sorted(found, key=int))
    return tuple(sorted(found))


def _label_ids(raw: _RawFile, label_names: tuple[str, ...]) -> np.ndarray:
    """Label ids (N,) int64 of ``raw`` under ``label_names``; an unknown label is an error."""
    label_to_id = {name: i for i, name in enumerate(label_names)}
    for row, label in enumerate(raw.labels):
        if label not in label_to_id:
            raise JaxpruneError(
                f"{raw.path} has unknown label {label!r} (data row {row + 1}); the model's labels "
                f"are {list(label_names)}: fix the file or use a model trained on these labels"
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


def _find_files(folder: Path, variant: str) -> dict[str, Path]:
    """``{"train"|"valid"|"test": path}`` of the variant's CSVs in ``folder``."""
    pattern = re.compile(rf"({'|'.join(VARIANTS)})_({'|'.join(_SPLIT_NAMES)})\.csv", re.IGNORECASE)
    found: dict[str, Path] = {}
    other_variants: set[str] = set()
    for path in sorted(folder.iterdir()):
        match = pattern.fullmatch(path.name)
        if match and path.is_file():
            if match.group(1).upper() == variant:
                found[match.group(2).lower()] = path
            else:
                other_variants.add(match.group(1).upper())
    if not found:
        hint = ""
        if other_variants:
            hint = f" (it has {', '.join(sorted(other_variants))} files: pass that variant)"
        raise JaxpruneError(
            f"{folder} has no {variant}_Train/{variant}_Valid/{variant}_Test .csv file{hint}; "
            "pass --data-dir with a folder of MahaNews CSVs"
        )
    return found


def _build(
    source: str,
    raw_files: dict[str, _RawFile],
    label_names: Sequence[str] | None,
    eval_fraction: float,
    seed: int,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Assembles train/eval(/test) splits from cleaned files keyed train/valid/test."""
    names = _resolve_label_names(list(raw_files.values()), label_names)
    ids = {key: _label_ids(raw, names) for key, raw in raw_files.items()}
    messages = []
    for raw in raw_files.values():
        if raw.header_rows or raw.empty_rows:
            messages.append(
                f"{raw.path.name}: dropped {raw.header_rows} stray header rows and "
                f"{raw.empty_rows} empty texts, kept {len(raw.texts)} examples"
            )
    splits: dict[str, datasets.Dataset] = {}
    eval_key = next((k for k in ("valid", "test") if k in raw_files), None)
    if "train" in raw_files and eval_key is not None:
        splits["train"] = _to_dataset(raw_files["train"].texts, ids["train"], names)
        splits["eval"] = _to_dataset(raw_files[eval_key].texts, ids[eval_key], names)
        used = {"train", eval_key}
    else:
        # One file to learn from: split it, stratified, so both parts see every class.
        key = "train" if "train" in raw_files else eval_key
        raw = raw_files[key]
        train_rows, eval_rows = stratified_split(ids[key], eval_fraction, seed)
        texts = np.array(raw.texts, dtype=object)
        splits["train"] = _to_dataset(texts[train_rows], ids[key][train_rows], names)
        splits["eval"] = _to_dataset(texts[eval_rows], ids[key][eval_rows], names)
        used = {key}
        messages.append(
            f"{raw.path.name}: split {len(raw.texts)} examples into {len(train_rows)} train and "
            f"{len(eval_rows)} eval ({1 - eval_fraction:.0%}/{eval_fraction:.0%}, stratified, "
            f"seed {seed})"
        )
    if "test" in raw_files and "test" not in used:
        splits["test"] = _to_dataset(raw_files["test"].texts, ids["test"], names)
    for message in messages:
        logger.info(message)
    info = DataInfo(
        source=source,
        files=tuple(raw.path.name for raw in raw_files.values()),
        label_names=names,
        dropped_header_rows=sum(raw.header_rows for raw in raw_files.values()),
        dropped_empty_rows=sum(raw.empty_rows for raw in raw_files.values()),
        split_sizes={name: len(split) for name, split in splits.items()},
        messages=tuple(messages),
    )
    return datasets.DatasetDict(splits), info


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
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Loads MahaNews from a local folder, or downloads it when ``data_dir`` is None.

    With Train and Valid (or Test) files, Train is ``train`` and Valid (else
    Test) is ``eval``; a Test file beside both becomes ``test``. With only one
    file to learn from (Train, else Valid, else Test) that file is split
    ``1 - eval_fraction`` / ``eval_fraction``, stratified by label and seeded,
    and ``info.messages`` says so; a Test file beside a lone Valid is ``test``.

    Args:
      data_dir: folder with ``{variant}_{Train,Valid,Test}.csv`` (any case).
      variant: ``SHC``, ``LDC`` or ``LPC``.
      label_names: the model's ``id2label`` in id order. Placeholder names
        (``LABEL_0``...) or None mean "use the data's sorted unique labels".
      eval_fraction, seed: the split used when there is no Train file.

    Returns:
      ``(splits, info)``: a DatasetDict with ``train``, ``eval`` (and maybe
      ``test``), columns ``text`` and ``label`` (ClassLabel of the label names).
    """
    variant = _check_variant(variant)
    if data_dir is None:
        folder = download_mahanews(variant)
    else:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise JaxpruneError(
                f"data folder {folder} does not exist; pass --data-dir with a folder of "
                f"{variant}_Train/Valid/Test.csv files"
            )
    paths = _find_files(folder, variant)
    raw_files = {key: _read_csv(paths[key]) for key in _SPLIT_NAMES if key in paths}
    return _build(str(folder), raw_files, label_names, eval_fraction, seed)


def load_offline_corpus(
    label_names: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    path: str | os.PathLike | None = None,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Loads the project's own Marathi headline corpus (or any ``text,label`` CSV at ``path``).

    The file is split into ``train`` and ``eval`` like a lone MahaNews Valid
    file: stratified by label, seeded. See ``jaxprune/corpus/README.md``.
    """
    csv_path = Path(path) if path is not None else OFFLINE_CORPUS
    if not csv_path.is_file():
        raise JaxpruneError(
            f"corpus file {csv_path} does not exist; pass the path of a text,label CSV"
        )
    raw = _read_csv(csv_path)
    return _build(str(csv_path), {"valid": raw}, label_names, eval_fraction, seed)


def load_csv(
    path: str | os.PathLike, label_names: Sequence[str] | None = None
) -> tuple[datasets.Dataset, DataInfo]:
    """Loads one MahaNews-format CSV (text and label columns) whole, without splitting.

    The file is cleaned like :func:`load_mahanews` (stray header rows and empty
    texts dropped and counted in ``info``). Labels map to ids by
    ``label_names`` (the model's ``id2label``); a label outside them is an
    error. Placeholder names (``LABEL_0``...) or None mean "the data's sorted
    unique labels".

    Returns:
      ``(dataset, info)``: columns ``text`` and ``label`` (ClassLabel), and
      ``info.split_sizes == {"all": len(dataset)}``.
    """
    csv_path = Path(path)
    if not csv_path.is_file():
        raise JaxpruneError(f"data file {csv_path} does not exist; pass the path of a text,label CSV")
    raw = _read_csv(csv_path)
    names = _resolve_label_names([raw], label_names)
    dataset = _to_dataset(raw.texts, _label_ids(raw, names), names)
    messages = []
    if raw.header_rows or raw.empty_rows:
        messages.append(
            f"{csv_path.name}: dropped {raw.header_rows} stray header rows and "
            f"{raw.empty_rows} empty texts, kept {len(raw.texts)} examples"
        )
    info = DataInfo(
        source=str(csv_path),
        files=(csv_path.name,),
        label_names=names,
        dropped_header_rows=raw.header_rows,
        dropped_empty_rows=raw.empty_rows,
        split_sizes={"all": len(dataset)},
        messages=tuple(messages),
    )
    return dataset, info
