"""Rules: which parameters are pruned, and in what blocks.

A rule matches parameter *paths*: the keys from the root of the params pytree
to a leaf, joined with ``/`` (``"encoder/layer_3/attention/query/kernel"``).
Patterns are Python regular expressions applied with :func:`re.search`, so
``r"Dense_\\d+/kernel$"`` matches anywhere in the path; anchor with ``^`` or
``$`` where a pattern could match more than you mean. A leaf may match at most
one rule.

Two block structures exist:

* :class:`BlockRule` tiles a leaf into equal N-D blocks (e.g. 32x32 blocks of a
  kernel, as in Lagunas et al. 2021). Each block has its own score.
* :class:`GroupRule` ties slices of several leaves into *units* that share one
  score, e.g. an FFN neuron (a column of the up-projection, an entry of its
  bias and a row of the down-projection) or an attention head. Pruning a unit
  zeroes every slice it owns, so compaction can later delete it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Union

import jax

from jaxprune.errors import JaxpruneError

# Path entries that NNX Variables add below the parameter's own name when a
# State is flattened; dropping them makes NNX paths read like Linen ones.
_VARIABLE_VALUE_KEYS = ("value", "raw_value")


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise JaxpruneError(f"rule pattern {pattern!r} is not a valid regular expression ({err}); fix it")


@dataclasses.dataclass(frozen=True)
class BlockRule:
    """Score every ``block_shape`` block of each leaf whose path matches ``pattern``.

    Attributes:
      pattern: regular expression searched in the ``/``-joined path.
      block_shape: one entry per leaf dimension; ``None`` means the whole
        dimension (so ``(None, 1)`` scores columns). Each entry must divide the
        leaf's dimension. A leaf of shape ``(R, C)`` with ``block_shape=(r, c)``
        gets a score array of shape ``(R // r, C // c)``.
      weight: multiplies the scores before they are ranked against other
        rules' blocks in global scope (see :mod:`jaxprune.mask.masking`).
        ``None`` (the default) means ``1 / weights per block``, which ranks
        blocks by score per weight; see :func:`jaxprune.mask.build_layout`.
    """

    pattern: str
    block_shape: tuple[int | None, ...]
    weight: float | None = None

    def __post_init__(self):
        _compile(self.pattern)
        object.__setattr__(self, "block_shape", tuple(self.block_shape))
        if any(b is not None and int(b) < 1 for b in self.block_shape):
            raise JaxpruneError(f"BlockRule {self.pattern!r}: block_shape {self.block_shape} must be positive")
        if self.weight is not None and not self.weight > 0:
            raise JaxpruneError(f"BlockRule {self.pattern!r}: weight {self.weight} must be > 0")


@dataclasses.dataclass(frozen=True)
class GroupMember:
    """One kind of slice a :class:`GroupRule` unit owns.

    Unit ``u`` owns indices ``[u * width, (u + 1) * width)`` along ``axis`` of
    each leaf that ``pattern`` matches (e.g. a head of width ``d`` owns
    ``d`` columns, ``axis=1``, of the query kernel).
    """

    pattern: str
    axis: int
    width: int = 1

    def __post_init__(self):
        _compile(self.pattern)
        if self.width < 1:
            raise JaxpruneError(f"GroupMember {self.pattern!r}: width {self.width} must be >= 1")


@dataclasses.dataclass(frozen=True)
class GroupRule:
    """Units that span several leaves and share one score each.

    Every member pattern is matched against all paths. The regex capture groups
    of a match form the *group key*: leaves whose matches capture the same
    values (e.g. ``layer_(\\d+)`` capturing ``"3"``) belong to the same group,
    which needs exactly one leaf per member. All members of a group must hold
    the same number of units ``n``.

    The group's scores, shape ``(n,)``, are stored at the path of the leaf that
    matched the **first member** (its *anchor*), so the scores pytree still
    mirrors the params' paths.

    Attributes:
      members: the slices each unit owns, anchor member first.
      weight: multiplies the scores before ranking in global scope; ``None``
        (the default) means ``1 / weights per unit``, as for :class:`BlockRule`.
      name: a label for reports (e.g. ``"heads"``); not used for matching.
    """

    members: tuple[GroupMember, ...]
    weight: float | None = None
    name: str = "group"

    def __post_init__(self):
        object.__setattr__(self, "members", tuple(self.members))
        if not self.members:
            raise JaxpruneError(f"GroupRule {self.name!r} has no members; give at least one GroupMember")
        if self.weight is not None and not self.weight > 0:
            raise JaxpruneError(f"GroupRule {self.name!r}: weight {self.weight} must be > 0")


Rule = Union[BlockRule, GroupRule]


def key_name(key: Any) -> str:
    """The string for one entry of a ``jax.tree_util`` key path."""
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def path_keys(key_path: Sequence[Any]) -> tuple[str, ...]:
    """Key path -> tuple of strings, without the trailing ``value`` of an NNX Variable."""
    keys = [key_name(k) for k in key_path]
    if (
        keys
        and isinstance(key_path[-1], jax.tree_util.GetAttrKey)
        and keys[-1] in _VARIABLE_VALUE_KEYS
    ):
        keys.pop()
    return tuple(keys)


def path_string(key_path: Sequence[Any]) -> str:
    """The ``/``-joined path that rule patterns are matched against."""
    return "/".join(path_keys(key_path))


def leaf_paths(params: Any) -> list[tuple[tuple[str, ...], Any]]:
    """``(path keys, leaf)`` for every leaf of ``params`` in flatten order.

    Leaves may be arrays or anything with a ``.shape`` (e.g.
    ``jax.ShapeDtypeStruct``).
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [(path_keys(key_path), leaf) for key_path, leaf in flat]
