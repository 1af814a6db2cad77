"""The layout: rules resolved against one params tree's paths and shapes.

:func:`build_layout` runs once, outside jit, on the params (or on their
``jax.eval_shape`` structs). The resulting :class:`MaskLayout` is a static,
hashable description of every scored entry: where its score array lives, its
shape, which slices of which leaves each block owns, and how many weights a
block holds. Scores, masks, masking and reports all read it; none of them
needs to look at the rules again.

Entries are ordered by their anchor path (tuples of strings, compared
element-wise), which is exactly the order in which ``jax.tree.leaves`` visits
the scores dict. That order defines "lower index" for tie-breaking.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence
from typing import Any

from jaxprune.errors import JaxpruneError
from jaxprune.mask.rules import BlockRule, GroupRule, Rule, leaf_paths

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Slot:
    """How one params leaf is masked.

    Attributes:
      path: the leaf's path keys.
      leaf_shape: the leaf's shape when the layout was built.
      block_shape: for a block rule, the block's shape (one entry per leaf
        dimension); ``None`` for a group member.
      axis / width: for a group member, the axis along which unit ``u`` owns
        ``[u * width, (u + 1) * width)``; ``None`` for a block rule.
    """

    path: Path
    leaf_shape: tuple[int, ...]
    block_shape: tuple[int, ...] | None = None
    axis: int | None = None
    width: int | None = None

    @property
    def weights_per_block(self) -> int:
        """Scalars of this leaf that one block (or unit) owns."""
        if self.block_shape is not None:
            return math.prod(self.block_shape)
        others = math.prod(d for i, d in enumerate(self.leaf_shape) if i != self.axis)
        return self.width * others


@dataclasses.dataclass(frozen=True)
class ScoredEntry:
    """One score array: a block-tiled leaf, or one group of tied units.

    Attributes:
      anchor: path of the score array in the scores pytree (the leaf's own
        path, or the first member's path for a group).
      score_shape: shape of the score array (one score per block or unit).
      weight: rule weight (already resolved, > 0) used for global ranking.
      weights_per_block: scalars owned by one block or unit, over all slots.
      slots: the leaves this entry masks (one for a block rule).
      rule_index: position of the rule in the list given to ``build_layout``.
      name: ``"blocks"`` or the group rule's name; ``group_key`` holds the
        regex captures that define the group (e.g. ``("3",)`` for layer 3).
    """

    anchor: Path
    score_shape: tuple[int, ...]
    weight: float
    weights_per_block: int
    slots: tuple[Slot, ...]
    rule_index: int
    name: str
    group_key: tuple[str, ...] = ()

    @property
    def num_blocks(self) -> int:
        return math.prod(self.score_shape)


@dataclasses.dataclass(frozen=True)
class MaskLayout:
    """Every scored entry, in scores-flatten order. Static and hashable."""

    entries: tuple[ScoredEntry, ...]

    @functools.cached_property
    def slot_index(self) -> dict[Path, tuple[int, Slot]]:
        """Leaf path -> (entry index, slot)."""
        return {slot.path: (i, slot) for i, entry in enumerate(self.entries) for slot in entry.slots}

    @property
    def num_blocks(self) -> int:
        """Blocks and units over all entries."""
        return sum(e.num_blocks for e in self.entries)

    @property
    def num_weights(self) -> int:
        """Scalars that masking can zero (the global budget counts these)."""
        return sum(e.num_blocks * e.weights_per_block for e in self.entries)


def _resolve_block_shape(rule: BlockRule, path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(rule.block_shape) != len(shape):
        raise JaxpruneError(
            f"BlockRule {rule.pattern!r}: block_shape {rule.block_shape} has {len(rule.block_shape)} "
            f"dims but {path} has shape {shape}; give one block size per dimension"
        )
    block = tuple(max(d, 1) if b is None else int(b) for b, d in zip(rule.block_shape, shape))
    if any(d % b for b, d in zip(block, shape)):
        raise JaxpruneError(
            f"BlockRule {rule.pattern!r}: block_shape {block} does not divide {path} of shape "
            f"{shape}; choose block sizes that divide every matched leaf"
        )
    return block


def _block_entry(rule: BlockRule, index: int, path: Path, shape: tuple[int, ...]) -> ScoredEntry:
    block = _resolve_block_shape(rule, "/".join(path), shape)
    slot = Slot(path=path, leaf_shape=shape, block_shape=block)
    return ScoredEntry(
        anchor=path,
        score_shape=tuple(d // b for d, b in zip(shape, block)),
        weight=rule.weight if rule.weight is not None else 1.0 / slot.weights_per_block,
        weights_per_block=slot.weights_per_block,
        slots=(slot,),
        rule_index=index,
        name="blocks",
    )


def _group_entries(
    rule: GroupRule, index: int, shapes: dict[Path, tuple[int, ...]], strings: dict[Path, str]
) -> list[ScoredEntry]:
    groups: dict[tuple[str, ...], list[Path | None]] = {}
    for m, member in enumerate(rule.members):
        regex = re.compile(member.pattern)
        for path, text in strings.items():
            match = regex.search(text)
            if match is None:
                continue
            key = tuple(g or "" for g in match.groups())
            found = groups.setdefault(key, [None] * len(rule.members))
            if found[m] is not None:
                raise JaxpruneError(
                    f"GroupRule {rule.name!r}: member {member.pattern!r} matches both "
                    f"{'/'.join(found[m])} and {text} with the same captures {key}; add a capture "
                    "group (e.g. layer_(\\d+)) or tighten the pattern"
                )
            found[m] = path
    entries = []
    for key, paths in groups.items():
        missing = [rule.members[m].pattern for m, p in enumerate(paths) if p is None]
        if missing:
            raise JaxpruneError(
                f"GroupRule {rule.name!r}: group {key} has no leaf for member(s) {missing}; "
                "every member must match one leaf per group"
            )
        slots, counts = [], []
        for member, path in zip(rule.members, paths):
            shape = shapes[path]
            axis = member.axis + len(shape) if member.axis < 0 else member.axis
            if not 0 <= axis < len(shape) or shape[axis] % member.width:
                raise JaxpruneError(
                    f"GroupRule {rule.name!r}: {'/'.join(path)} of shape {shape} has no axis "
                    f"{member.axis} divisible by width {member.width}; fix the member's axis/width"
                )
            counts.append(shape[axis] // member.width)
            slots.append(Slot(path=path, leaf_shape=shape, axis=axis, width=member.width))
        if len(set(counts)) != 1:
            detail = ", ".join(f"{'/'.join(s.path)}: {c}" for s, c in zip(slots, counts))
            raise JaxpruneError(
                f"GroupRule {rule.name!r}: members of group {key} hold different unit counts "
                f"({detail}); check the members' widths"
            )
        per_unit = sum(s.weights_per_block for s in slots)
        entries.append(
            ScoredEntry(
                anchor=slots[0].path,
                score_shape=(counts[0],),
                weight=rule.weight if rule.weight is not None else 1.0 / max(per_unit, 1),
                weights_per_block=per_unit,
                slots=tuple(slots),
                rule_index=index,
                name=rule.name,
                group_key=key,
            )
        )
    return entries


def build_layout(params: Any, rules: Sequence[Rule]) -> MaskLayout:
    """Resolve ``rules`` against the paths and shapes of ``params``.

    Args:
      params: any pytree of arrays or ``jax.ShapeDtypeStruct`` (a Linen params
        dict, an NNX ``State``...). Only paths and shapes are read.
      rules: :class:`BlockRule` and :class:`GroupRule` values.

    Returns:
      The :class:`MaskLayout`. A rule weight left as ``None`` resolves to
      ``1 / weights_per_block``: global ranking then compares score per
      weight, which (with a budget counted in weights) is the greedy knapsack
      order, so 32x32 blocks, FFN neurons and heads compete fairly.

    Raises:
      JaxpruneError: a rule matches no leaf, a leaf matches two rules, or a
        block/unit structure does not fit a leaf's shape.
    """
    flat = leaf_paths(params)
    shapes = {path: tuple(int(d) for d in leaf.shape) for path, leaf in flat}
    strings = {path: "/".join(path) for path in shapes}
    entries: list[ScoredEntry] = []
    for index, rule in enumerate(rules):
        if isinstance(rule, BlockRule):
            regex = re.compile(rule.pattern)
            found = [
                _block_entry(rule, index, path, shapes[path])
                for path, text in strings.items()
                if regex.search(text)
            ]
        elif isinstance(rule, GroupRule):
            found = _group_entries(rule, index, shapes, strings)
        else:
            raise JaxpruneError(f"rule {rule!r} is neither a BlockRule nor a GroupRule")
        if not found:
            example = next(iter(strings), "<no leaves>")
            raise JaxpruneError(
                f"rule {index} ({rule!r}) matches none of the {len(strings)} parameter paths "
                f"(e.g. {example!r}); fix its pattern"
            )
        entries.extend(found)

    owner: dict[Path, int] = {}
    for entry in entries:
        for slot in entry.slots:
            if slot.path in owner:
                raise JaxpruneError(
                    f"{'/'.join(slot.path)} is matched twice (rules {owner[slot.path]} and "
                    f"{entry.rule_index}); a leaf may be scored once only, so tighten the patterns"
                )
            owner[slot.path] = entry.rule_index
    entries.sort(key=lambda e: e.anchor)
    return MaskLayout(entries=tuple(entries))
