"""Train, eval and test splits that share no text, and what the loader did (:class:`DataInfo`)."""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np

from jaxprune.data._read import RawFile, canonical_labels, integer_value
from jaxprune.errors import JaxpruneError

logger = logging.getLogger("jaxprune.data")

_GENERIC_LABEL = re.compile(r"LABEL_\d+")


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
      repaired_texts: rows whose text was UTF-8 mis-decoded as CP866 and was repaired.
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
    repaired_texts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)



def is_model_labels(label_names: Sequence[str] | None) -> bool:
    """Whether ``label_names`` are a trained classifier's real labels (not None, not LABEL_0, LABEL_1...)."""
    return bool(label_names) and not all(_GENERIC_LABEL.fullmatch(name) for name in label_names)


def resolve_label_names(train: RawFile, label_names: Sequence[str] | None) -> tuple[str, ...]:
    """The model's label names when it has real ones, else the training data's, sorted
    (numerically when they are integers)."""
    if is_model_labels(label_names):
        return tuple(label_names)
    found = {label: integer_value(label) for label in train.labels}
    if all(value is not None for value in found.values()):  # "1" and "1.0" stay apart when eval has "x"
        return tuple(sorted(found, key=lambda label: (found[label], label)))
    return tuple(sorted(found))


def label_ids(raw: RawFile, label_names: tuple[str, ...], from_model: bool) -> np.ndarray:
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


def to_dataset(texts: Sequence[str], label_ids: np.ndarray, label_names: tuple[str, ...]):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(label_names))}
    )
    return datasets.Dataset.from_dict(
        {"text": list(texts), "label": label_ids.tolist()}, features=features
    )


def _subset(raw: RawFile, rows: np.ndarray) -> RawFile:
    pick = [int(r) for r in rows]
    return dataclasses.replace(raw, texts=[raw.texts[i] for i in pick], labels=[raw.labels[i] for i in pick],
                               keys=[raw.keys[i] for i in pick])


def cleaning_message(raw: RawFile) -> str | None:
    parts = []
    if raw.repaired:
        parts.append(f"repaired {raw.repaired} texts that were UTF-8 mis-decoded as CP866 (--no-repair-text keeps "
                     f"them)")
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
    train: RawFile,
    eval_file: RawFile | None = None,
    test: RawFile | None = None,
    label_names: Sequence[str] | None = None,
    eval_fraction: float = 0.2,
    seed: int = 0,
    keep_overlap: bool = False,
    source: str | None = None,
) -> tuple[datasets.DatasetDict, DataInfo]:
    """Train, eval (split off ``train`` when there is no eval file) and test splits that share no text."""
    read = [raw for raw in (train, eval_file, test) if raw is not None]
    messages = [m for m in map(cleaning_message, read) if m]
    train, *rest = canonical_labels(read)
    eval_file = rest.pop(0) if eval_file is not None else None
    test = rest.pop(0) if test is not None else None
    from_model = is_model_labels(label_names)
    names = resolve_label_names(train, label_names)
    train_ids = label_ids(train, names, from_model)
    counts = collections.Counter(train.labels)
    rare = {label: counts[label] for label in sorted(counts) if counts[label] < 2}
    file_keys = set(train.keys)  # the whole training file, its split-off eval part included

    if eval_file is None:
        train, train_ids, eval_file, eval_ids, split = _split_off_eval(train, train_ids, rare, eval_fraction, seed)
        messages.append(split)
    else:
        split, eval_ids = "files", None
        if rare:
            messages.append(f"{train.path.name}: labels with fewer than 2 training examples: {_shown(rare)}; "
                            f"expect poor scores on them")

    # Test texts are looked for in the whole training file: one in the eval part split off it would
    # otherwise be in both eval and test.
    held_out, overlap, overlap_removed, kept_eval = _leave_out_overlap(
        {"eval": eval_file, "test": test}, {"eval": set(train.keys), "test": file_keys}, keep_overlap, messages)
    eval_file, test = held_out["eval"], held_out["test"]
    eval_ids = label_ids(eval_file, names, from_model) if eval_ids is None else eval_ids[kept_eval]

    splits = {"train": to_dataset(train.texts, train_ids, names), "eval": to_dataset(eval_file.texts, eval_ids, names)}
    if test is not None:
        splits["test"] = to_dataset(test.texts, label_ids(test, names, from_model), names)
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
        repaired_texts=sum(raw.repaired for raw in read),
    )
    return datasets.DatasetDict(splits), info


def _shown(rare: dict[str, int]) -> str:
    return ", ".join(f"{label!r} ({n})" for label, n in list(rare.items())[:5])


def _split_off_eval(train: RawFile, train_ids: np.ndarray, rare: dict[str, int], eval_fraction: float, seed: int):
    """``(train, train_ids, eval, eval_ids, message)``: a stratified eval split of ``train``'s distinct texts."""
    if rare:
        raise JaxpruneError(
            f"{train.path} has labels with fewer than 2 examples ({_shown(rare)}), so no stratified split can give "
            f"them to both train and eval; add examples, remove those rows, or pass an `eval_file`"
        )
    train_rows, eval_rows = stratified_split(train_ids, eval_fraction, seed)
    split = (f"{train.path.name} split over its {len(train_rows) + len(eval_rows)} distinct texts into "
             f"{len(train_rows)} train and {len(eval_rows)} eval ({1 - eval_fraction:.0%}/{eval_fraction:.0%}, "
             f"stratified by label, seed {seed})")
    return (_subset(train, train_rows), train_ids[train_rows], _subset(train, eval_rows), train_ids[eval_rows],
            split)


def _leave_out_overlap(held_out: dict[str, RawFile | None], train_keys: dict[str, set], keep_overlap: bool,
                       messages: list[str]):
    """The held-out files without the texts that occur in training (unless ``keep_overlap``), how many
    each shared and left out, and the eval rows kept (a slice of all of them when none were left out);
    appends what was done to ``messages``."""
    held_out = dict(held_out)
    overlap: dict[str, int] = {}
    overlap_removed: dict[str, int] = {}
    kept_eval: Any = slice(None)
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
                                f"(or `keep_overlap=True` to score it anyway)")
        keep = np.setdiff1d(np.arange(len(raw.texts)), shared)
        held_out[name] = _subset(raw, keep)
        if name == "eval":
            kept_eval = keep
        overlap_removed[name] = len(shared)
        messages.append(f"{raw.path.name}: left out {len(shared)} of its {len(raw.texts)} texts that also occur "
                        f"in training (--keep-overlap keeps them)")
    return held_out, overlap, overlap_removed, kept_eval
