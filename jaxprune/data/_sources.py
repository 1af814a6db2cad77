"""Where the data comes from: files, a folder of them, MahaNews (downloaded or local), the embedded corpus."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from jaxprune.data._read import canonical_labels, read_table
from jaxprune.data._splits import (
    DataInfo,
    cleaning_message,
    is_model_labels,
    label_ids,
    resolve_label_names,
    to_dataset,
    build_splits,
)
from jaxprune.errors import JaxpruneError

VARIANTS = ("SHC", "LDC", "LPC")
MAHANEWS_URL = (
    "https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/main/L3Cube-MahaNews/{variant}/{file}"
)
OFFLINE_CORPUS = Path(__file__).resolve().parent / "corpus" / "marathi_headlines.csv"
# What a file's name says it holds, for a folder passed as ``data_dir``.
_ROLE_PATTERNS = {"train": re.compile(r"train"), "eval": re.compile(r"val|dev"), "test": re.compile(r"test")}
_TABLE_SUFFIXES = (".csv", ".tsv")


def _check_file(path: str | os.PathLike, argument: str) -> Path:
    """``path`` as a Path, when it is a file; the error names the ``argument`` that passed it."""
    path = Path(path)
    if path.is_dir():
        raise JaxpruneError(f"`{argument}` {path} is a folder; pass a CSV file (or the folder as `data_dir`)")
    if not path.is_file():
        raise JaxpruneError(f"`{argument}` {path} does not exist; pass the path of a CSV file with a text and a "
                            f"label column")
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
    repair_text: bool = True,
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
    paths = {"train_file": train_file, "eval_file": eval_file, "test_file": test_file}
    raw = {argument: read_table(_check_file(path, argument), text_column, label_column, repair_text)
           for argument, path in paths.items() if path is not None}
    folders = {str(Path(path).resolve().parent) for path in paths.values() if path is not None}
    source = folders.pop() if len(folders) == 1 else str(Path(train_file).resolve())
    return build_splits(raw["train_file"], raw.get("eval_file"), raw.get("test_file"), label_names,
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
        raise JaxpruneError(f"`data_dir` {folder} is a file; pass it as `train_file` {folder} (or pass its folder)")
    if not folder.is_dir():
        raise JaxpruneError(f"`data_dir` {folder} does not exist; pass a folder of *train*/*valid*/*test* CSV files")
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
                                f"`variant`, or the files themselves as `train_file`/`eval_file`/`test_file`")
        if paths:
            found[role] = paths[0]
    if not found:
        raise JaxpruneError(f"{folder} has no CSV file named like *train*, *valid* or *test*; pass `train_file` "
                            f"(and `eval_file`), or a folder with such files as `data_dir`")
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
    repair_text: bool = True,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Load a folder of ``*train*``, ``*val*``/``*valid*`` and ``*test*`` files (see :func:`find_split_files`).

    Train is ``train``, valid is ``eval`` and test is ``test``. Without a valid file
    ``eval`` is split off train; without a train file, valid (else test) is the one
    file that is split into ``train`` and ``eval``.
    """
    found = find_split_files(folder, variant)
    options = dict(text_column=text_column, label_column=label_column, repair_text=repair_text)
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
                "pass `data_dir` with a local folder of MahaNews CSV files"
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
    repair_text: bool = True,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Loads the project's own Marathi headline corpus (or any ``text,label`` CSV at ``path``),
    split into ``train`` and ``eval`` over its distinct texts. See ``jaxprune/data/corpus/README.md``."""
    csv_path = Path(path) if path is not None else OFFLINE_CORPUS
    if not csv_path.is_file():
        raise JaxpruneError(
            f"corpus file {csv_path} does not exist; pass the path of a text,label CSV"
        )
    return build_splits(read_table(csv_path, repair_text=repair_text), label_names=label_names,
                        eval_fraction=eval_fraction, seed=seed)


def load_csv(
    path: str | os.PathLike,
    label_names: Sequence[str] | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    repair_text: bool = True,
) -> tuple[datasets.Dataset, DataInfo]:
    """Loads one CSV whole, without splitting: the distinct texts of a file to evaluate on.

    The file is cleaned like the training data (see :func:`read_table`). Labels map
    to ids by ``label_names`` (the model's ``id2label``); a label outside them is an
    error. Placeholder names (``LABEL_0``...) or None mean "the file's sorted labels".

    Returns:
      ``(dataset, info)``: columns ``text`` and ``label`` (ClassLabel), and
      ``info.split_sizes == {"all": len(dataset)}``.
    """
    raw = read_table(_check_file(path, "path"), text_column, label_column, repair_text)
    (raw,) = canonical_labels([raw])
    from_model = is_model_labels(label_names)
    names = resolve_label_names(raw, label_names)
    dataset = to_dataset(raw.texts, label_ids(raw, names, from_model), names)
    message = cleaning_message(raw)
    info = DataInfo(
        source=str(raw.path), files={"all": raw.path.name}, label_names=names,
        dropped_header_rows=raw.header_rows, dropped_empty_rows=raw.empty_rows,
        dropped_unlabelled_rows=raw.unlabelled_rows, duplicate_rows=raw.duplicate_rows,
        label_conflicts=raw.conflicts, overlap={}, overlap_removed={}, rare_labels={}, split="none",
        split_sizes={"all": len(dataset)}, messages=(message,) if message else (), repaired_texts=raw.repaired,
    )
    return dataset, info
