"""Sparsity reports of masked params, as plain JSON-ready dataclasses.

Reports read the (masked) params on the host; they count exact zeros, so a
weight that happens to be 0.0 before masking counts as pruned too. They never
run inside jit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxprune.mask.layout import MaskLayout
from jaxprune.mask.rules import leaf_paths
from jaxprune.mask.units import removed_units


@dataclasses.dataclass(frozen=True)
class LeafSparsity:
    """Zeros in one params leaf. ``scored`` is whether a rule masks it."""

    path: str
    size: int
    zeros: int
    scored: bool

    @property
    def zero_fraction(self) -> float:
        return self.zeros / self.size if self.size else 0.0


@dataclasses.dataclass(frozen=True)
class UnitSparsity:
    """Units of one group (e.g. the heads of one layer) whose every slice is zero.

    ``removed`` is :func:`jaxprune.mask.units.removed_units`: the model-agnostic
    test. A model-aware rule may remove more (BERT compaction also drops units
    whose output or input slice alone is zero; see ``bert_rules.surviving_units``).

    ``group_key`` holds the rule's regex captures (e.g. ``("3",)`` for layer 3).
    """

    name: str
    anchor: str
    group_key: tuple[str, ...]
    units: int
    removed: tuple[int, ...]

    @property
    def kept(self) -> int:
        return self.units - len(self.removed)


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-leaf and total zero counts, and fully removed group units.

    Attributes:
      leaves: every params leaf, in flatten order.
      groups: one entry per group of a ``GroupRule`` in the layout (empty
        without a layout).
    """

    leaves: tuple[LeafSparsity, ...]
    groups: tuple[UnitSparsity, ...] = ()

    @property
    def total_params(self) -> int:
        return sum(leaf.size for leaf in self.leaves)

    @property
    def total_zeros(self) -> int:
        return sum(leaf.zeros for leaf in self.leaves)

    @property
    def params_remaining(self) -> int:
        """Non-zero scalars over all leaves."""
        return self.total_params - self.total_zeros

    @property
    def scored_params(self) -> int:
        return sum(leaf.size for leaf in self.leaves if leaf.scored)

    @property
    def scored_zeros(self) -> int:
        return sum(leaf.zeros for leaf in self.leaves if leaf.scored)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: totals, then per-leaf and per-group details."""
        return {
            "total_params": self.total_params,
            "total_zeros": self.total_zeros,
            "params_remaining": self.params_remaining,
            "zero_fraction": self.total_zeros / self.total_params if self.total_params else 0.0,
            "scored_params": self.scored_params,
            "scored_zeros": self.scored_zeros,
            "scored_zero_fraction": self.scored_zeros / self.scored_params if self.scored_params else 0.0,
            "leaves": [
                {**dataclasses.asdict(leaf), "zero_fraction": leaf.zero_fraction} for leaf in self.leaves
            ],
            "groups": [
                {
                    "name": g.name,
                    "anchor": g.anchor,
                    "group_key": list(g.group_key),
                    "units": g.units,
                    "kept": g.kept,
                    "removed": list(g.removed),
                }
                for g in self.groups
            ],
        }


def sparsity_report(params: Any, layout: MaskLayout | None = None) -> SparsityReport:
    """Count zeros in ``params`` (typically the output of ``apply_masks``).

    Args:
      params: any pytree of arrays (Linen dict, NNX ``State``).
      layout: optional; marks scored leaves and reports, for every group
        entry, the units all of whose slices are exactly zero
        (:func:`jaxprune.mask.units.removed_units`).
    """
    arrays = {path: np.asarray(leaf) for path, leaf in leaf_paths(params)}
    scored = set(layout.slot_index) if layout is not None else set()
    leaves = tuple(
        LeafSparsity(
            path="/".join(path),
            size=int(array.size),
            zeros=int(array.size - np.count_nonzero(array)),
            scored=path in scored,
        )
        for path, array in arrays.items()
    )
    groups = []
    for entry in layout.entries if layout is not None else ():
        if entry.slots[0].block_shape is not None:
            continue
        groups.append(
            UnitSparsity(
                name=entry.name,
                anchor="/".join(entry.anchor),
                group_key=entry.group_key,
                units=entry.score_shape[0],
                removed=tuple(int(u) for u in np.flatnonzero(removed_units(arrays, entry))),
            )
        )
    return SparsityReport(leaves=leaves, groups=tuple(groups))
