"""Which units of a group are zero: the one test behind reports, survivors and compaction.

A group entry of a :class:`~jaxprune.mask.layout.MaskLayout` ties units (heads,
neurons) across member leaves: unit ``u`` owns the slice ``[u * width, (u + 1) *
width)`` along one axis of every member. :func:`zero_units` is the single test
"this unit's slice of this leaf is exactly zero"; everything that decides
whether a unit is gone is built from it:

* :func:`removed_units`: every slice over all members is zero. It knows nothing
  of the model, so it is what :func:`jaxprune.mask.sparsity_report` counts as
  removed.
* A model that knows which member feeds its output can remove more: the BERT
  rule (:func:`jaxprune.models.bert_rules.removable_heads` and
  ``removable_neurons``, used by ``surviving_units`` and compaction) also drops a
  unit whose output slice alone, or whose input slice alone, is zero. A unit
  :func:`removed_units` finds is always one of those.

Exact zeros only (``-0.0`` included): these run on the host, on masked params.

>>> import numpy as np
>>> kernel = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
>>> zero_units(kernel, axis=1, width=2)
array([False,  True])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxprune.mask.layout import Path, ScoredEntry


def zero_units(array: Any, axis: int, width: int = 1) -> np.ndarray:
    """Units of one leaf whose whole slice is exactly zero.

    Args:
      array: the leaf, any shape ``(..., units * width, ...)``; any array type.
      axis: the axis cut into units (non-negative).
      width: entries of ``axis`` that one unit owns.

    Returns:
      ``(units,)`` bool: True where ``array[..., u * width:(u + 1) * width, ...]``
      is all zero (a unit with no entries at all counts as zero).
    """
    array = np.asarray(array)
    units = array.shape[axis] // width
    split = array.reshape(array.shape[:axis] + (units, width) + array.shape[axis + 1 :])
    other_axes = tuple(i for i in range(split.ndim) if i != axis)
    return np.all(split == 0, axis=other_axes)


def removed_units(arrays: Mapping[Path, Any], entry: ScoredEntry) -> np.ndarray:
    """Units of a group entry every slice of which, over all member leaves, is zero.

    Args:
      arrays: params leaves by path keys (e.g. ``dict(leaf_paths(params))``); must
        hold every member of ``entry``.
      entry: a group entry (its slots have ``axis`` and ``width``), with
        ``score_shape == (units,)``.

    Returns:
      ``(units,)`` bool, True for a removed unit.
    """
    removed = np.ones(entry.score_shape[0], bool)
    for slot in entry.slots:
        removed &= zero_units(arrays[slot.path], slot.axis, slot.width)
    return removed

