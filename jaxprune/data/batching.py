"""Tokenizing text splits into length buckets and cutting them into fixed-shape batches.

Every example is padded to the smallest *bucket* length that holds it (powers
of two from ``smallest_bucket`` below ``max_length``, then ``max_length``), and
a batch only mixes examples of one bucket. A jitted step therefore compiles
once per bucket, not once per sequence length.

An epoch's order is a pure function of ``(seed, epoch)``, so a resumed run
replays the same batches; ``start_batch`` skips the ones already done. The
last batch of each bucket is filled up to ``batch_size`` with copies of its
first example that carry ``weight == 0``, so every batch has the same number
of rows and padding rows are still valid inputs (and valid ``index`` values
for looking up cached teacher logits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from jaxprune.errors import JaxpruneError

Batch = dict[str, np.ndarray]
"""``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T) int32; ``labels``,
``index`` (B,) int32; ``weight`` (B,) float32 (1 for real rows, 0 for padding);
``label_weight`` (B,) float32 (``weight``, and 0 on rows without a real label)."""


def bucket_lengths(max_length: int, smallest_bucket: int = 16) -> tuple[int, ...]:
    """Padded lengths, increasing: powers of two from ``smallest_bucket``, then ``max_length``.

    >>> bucket_lengths(128)
    (16, 32, 64, 128)
    >>> bucket_lengths(100, smallest_bucket=32)
    (32, 64, 100)
    """
    if max_length < 2:
        raise JaxpruneError(f"max length {max_length} is too short; pass at least 2 tokens")
    if smallest_bucket < 1:
        raise JaxpruneError(f"smallest bucket {smallest_bucket} must be positive; pass e.g. 16")
    lengths = []
    length = smallest_bucket
    while length < max_length:
        lengths.append(length)
        length *= 2
    return (*lengths, max_length)


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """A tokenized split: arrays padded to ``max(buckets)``, each row assigned a bucket.

    Attributes:
      input_ids, attention_mask, token_type_ids: (N, max_length) int32, right-padded.
      labels: (N,) int32 class ids.
      bucket: (N,) int32 padded length of each row (an entry of ``buckets``).
      buckets: the bucket lengths, increasing.
      labelled: (N,) bool, whether a row's label is real; ``None``: all are. Rows without one
        (a transfer set's texts) carry ``label_weight == 0`` in their batches: they teach
        through the teacher's logits only.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    labels: np.ndarray
    bucket: np.ndarray
    buckets: tuple[int, ...]
    labelled: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def encode_split(
    split: Any,
    tokenizer: Any,
    max_length: int = 128,
    smallest_bucket: int = 16,
    text_column: str = "text",
    label_column: str = "label",
) -> EncodedSplit:
    """Tokenizes a split (a ``datasets.Dataset`` or a dict of columns) in one batched call.

    Texts longer than ``max_length`` tokens are truncated. ``tokenizer`` is a
    Hugging Face tokenizer, e.g. ``transformers.AutoTokenizer.from_pretrained(folder)``.
    """
    buckets = bucket_lengths(max_length, smallest_bucket)
    texts = list(split[text_column])
    if not texts:
        raise JaxpruneError("the split has no examples; pass a dataset with at least one row")
    encoded = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        padding="max_length",
        padding_side="right",
        return_token_type_ids=True,
        return_attention_mask=True,
        return_tensors="np",
    )
    attention_mask = np.asarray(encoded["attention_mask"], dtype=np.int32)
    lengths = attention_mask.sum(axis=1)
    bucket_index = np.searchsorted(np.asarray(buckets), lengths, side="left")
    return EncodedSplit(
        input_ids=np.asarray(encoded["input_ids"], dtype=np.int32),
        attention_mask=attention_mask,
        token_type_ids=np.asarray(encoded["token_type_ids"], dtype=np.int32),
        labels=np.asarray(split[label_column], dtype=np.int32),
        bucket=np.asarray(buckets, dtype=np.int32)[bucket_index],
        buckets=buckets,
    )


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise JaxpruneError(f"batch size {batch_size} must be at least 1")


def num_batches(encoded: EncodedSplit, batch_size: int) -> int:
    """Batches per epoch (the same for every seed and epoch), without building them."""
    _check_batch_size(batch_size)
    counts = np.unique(encoded.bucket, return_counts=True)[1]
    return int(sum(-(-int(count) // batch_size) for count in counts))


def epoch_plan(
    encoded: EncodedSplit,
    batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
) -> list[np.ndarray]:
    """Row indices of each batch of one epoch, in order; the last one per bucket may be short.

    With ``shuffle`` the rows are permuted and the batches interleaved by a
    generator seeded with ``(seed, epoch)``; without it, batches go through
    the buckets in increasing length and the rows in index order.

    Returns:
      ``num_batches(encoded, batch_size)`` int64 arrays of 1 to ``batch_size`` rows.
    """
    _check_batch_size(batch_size)
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(encoded))
    else:
        order = np.arange(len(encoded))
    plan: list[np.ndarray] = []
    for length in encoded.buckets:
        rows = order[encoded.bucket[order] == length]
        plan.extend(rows[start : start + batch_size] for start in range(0, len(rows), batch_size))
    if shuffle:
        plan = [plan[i] for i in rng.permutation(len(plan))]
    return plan


def make_batch(encoded: EncodedSplit, rows: np.ndarray, batch_size: int) -> Batch:
    """The batch of ``rows`` (all in one bucket), filled to ``batch_size`` with weight-0 copies."""
    rows = np.asarray(rows, dtype=np.int64)
    if not 1 <= len(rows) <= batch_size:
        raise ValueError(f"a batch needs 1 to {batch_size} rows, got {len(rows)}")
    length = int(encoded.bucket[rows].max())
    weight = np.zeros(batch_size, dtype=np.float32)
    weight[: len(rows)] = 1.0
    padded = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
    label_weight = weight if encoded.labelled is None else weight * encoded.labelled[padded]
    return {
        "input_ids": encoded.input_ids[padded, :length],
        "attention_mask": encoded.attention_mask[padded, :length],
        "token_type_ids": encoded.token_type_ids[padded, :length],
        "labels": encoded.labels[padded],
        "weight": weight,
        "label_weight": label_weight.astype(np.float32),
        "index": padded.astype(np.int32),
    }


def join_unlabelled(labelled: EncodedSplit, unlabelled: EncodedSplit) -> EncodedSplit:
    """``labelled``'s rows, then ``unlabelled``'s with ``labelled == False`` (their labels
    are placeholders): one split to train on whose CE term sees only the real labels.
    Both must be encoded with the same buckets."""
    if labelled.buckets != unlabelled.buckets:
        raise JaxpruneError(f"cannot join splits with buckets {labelled.buckets} and {unlabelled.buckets}; encode "
                            f"both with the same max length")
    mine = np.ones(len(labelled), bool) if labelled.labelled is None else labelled.labelled
    join = lambda a, b: np.concatenate([a, b])  # noqa: E731
    return EncodedSplit(
        input_ids=join(labelled.input_ids, unlabelled.input_ids),
        attention_mask=join(labelled.attention_mask, unlabelled.attention_mask),
        token_type_ids=join(labelled.token_type_ids, unlabelled.token_type_ids),
        labels=join(labelled.labels, np.zeros(len(unlabelled), np.int32)),
        bucket=join(labelled.bucket, unlabelled.bucket),
        buckets=labelled.buckets,
        labelled=join(mine, np.zeros(len(unlabelled), bool)),
    )


def iterate_batches(
    encoded: EncodedSplit,
    batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    start_batch: int = 0,
) -> Iterator[Batch]:
    """Yields the epoch's batches from number ``start_batch`` on (to resume mid-epoch).

    Each batch has shape ``(batch_size, T)`` with ``T`` in ``encoded.buckets``.
    """
    plan = epoch_plan(encoded, batch_size, seed=seed, epoch=epoch, shuffle=shuffle)
    if not 0 <= start_batch <= len(plan):
        raise JaxpruneError(
            f"cannot start at batch {start_batch}: the epoch has {len(plan)} batches; "
            "resume from a checkpoint of this dataset and batch size"
        )
    for rows in plan[start_batch:]:
        yield make_batch(encoded, rows, batch_size)


def batch_shapes(encoded: EncodedSplit, batch_size: int) -> Sequence[tuple[int, int]]:
    """The distinct ``(batch_size, T)`` shapes an epoch uses: what jit compiles for."""
    return [(batch_size, int(length)) for length in np.unique(encoded.bucket)]
