"""Masking: ``W' = W * expand(M(S))`` as a pure function of params and scores.

Two methods turn scores ``S`` into 0/1 block masks ``M``:

* ``"topk"`` (movement pruning, Sanh et al. 2020): keep the highest-ranked
  blocks. The number kept follows ``keep_fraction``, which may be a traced
  scalar: ranking uses a stable ``argsort`` and compares positions with a
  traced count, so changing it between steps does not recompile.
* ``"soft"`` (soft movement): keep blocks with ``sigmoid(S) > threshold``;
  ``keep_fraction`` is ignored and sparsity comes from :func:`score_penalty`
  added to the loss.

Both use the straight-through estimator: the forward pass uses the hard mask,
the backward pass treats ``M`` as ``S``, so
``dL/dS_block = sum over the block of dL/dW' * W`` (for a group: summed over
every slice of every member leaf). Params receive ``dL/dW = dL/dW' * M``.
A pruned unit that owns both its inputs and its outputs (an FFN neuron, a
head) gets a score gradient of exactly zero, since nothing reads its zero
output; its score stays put while the others move, and top-k brings it back
if kept units' scores fall below it.

What ``keep_fraction`` counts, per :class:`MaskConfig` scope:

* ``"local"``: each entry (a block-tiled leaf, or one group such as the heads
  of one layer) keeps ``floor(keep_fraction * n + 0.5)`` of its ``n`` blocks
  (round half up). Blocks of an entry are equal in size, so this is also the
  fraction of its weights.
* ``"global"``: all blocks of all entries are ranked together by
  ``weight * S`` (rule weight, see :func:`jaxprune.mask.build_layout`).
  With ``budget="blocks"``, the top ``floor(keep_fraction * N + 0.5)`` of all
  ``N`` blocks are kept. With ``budget="weights"`` (default), blocks are kept in
  rank order while the number of weights they own stays within
  ``floor(keep_fraction * layout.num_weights + 0.5)``: the kept fraction of
  scored weights never exceeds ``keep_fraction`` (up to float32 rounding of
  that product) and is within one block of it.

Ties are broken deterministically: the lower index wins, where the index runs
over the entries in layout order (the scores' ``jax.tree.leaves`` order) and
row-major within each score array.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.errors import JaxpruneError
from jaxprune.mask.layout import MaskLayout, ScoredEntry, Slot
from jaxprune.mask.rules import path_keys
from jaxprune.mask.scores import Scores, scores_from_list, scores_to_list

Array = jax.Array
Params = Any


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """How scores become masks.

    Attributes:
      method: ``"topk"`` or ``"soft"`` (see the module docstring).
      scope: ``"local"`` (per leaf / per group) or ``"global"`` (all entries
        compete; the model decides which layers to prune). Top-k only.
      budget: in global scope, count ``keep_fraction`` in ``"weights"`` or in
        ``"blocks"``. Ignored in local scope.
      threshold: soft method only: keep where ``sigmoid(S) > threshold``.
        With the default 0.1 and scores initialised to 0 (``sigmoid = 0.5``),
        everything starts kept.
    """

    method: Literal["topk", "soft"] = "topk"
    scope: Literal["local", "global"] = "local"
    budget: Literal["weights", "blocks"] = "weights"
    threshold: float = 0.1

    def __post_init__(self):
        choices = {"method": ("topk", "soft"), "scope": ("local", "global"), "budget": ("weights", "blocks")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise JaxpruneError(f"MaskConfig.{name}={getattr(self, name)!r}; use one of {allowed}")
        if not 0.0 <= self.threshold < 1.0:
            raise JaxpruneError(f"MaskConfig.threshold={self.threshold} must be in [0, 1)")


def _straight_through(hard: Array, scores: Array) -> Array:
    """``hard`` in the forward pass, identity gradient to ``scores``.

    ``scores - stop_gradient(scores)`` is exactly zero for finite scores, so
    the forward value is exactly ``hard`` (unlike ``s + stop_gradient(m - s)``).
    """
    return hard + (scores - jax.lax.stop_gradient(scores))


def _round_count(fraction: Array, total: int) -> Array:
    """``floor(fraction * total + 0.5)`` clipped to ``[0, total]``, int32."""
    count = jnp.floor(jnp.asarray(fraction, jnp.float32) * total + 0.5)
    return jnp.clip(count, 0, total).astype(jnp.int32)


def _rank_order(keys: Array) -> Array:
    """Indices sorting ``keys`` (1-D) descending; ties keep the lower index first."""
    # A stable ascending sort of the negated keys (JAX's sort compares -0.0 == 0.0).
    return jnp.argsort(-keys, stable=True)


def _scatter_back(order: Array, kept_sorted: Array) -> Array:
    return jnp.zeros(order.shape, jnp.float32).at[order].set(kept_sorted.astype(jnp.float32))


def _topk_local(score: Array, keep_fraction: Array) -> Array:
    flat = score.ravel()
    order = _rank_order(flat)
    count = _round_count(keep_fraction, flat.size)
    return _scatter_back(order, jnp.arange(flat.size) < count).reshape(score.shape)


def _topk_global(
    scores: Sequence[Array], entries: Sequence[ScoredEntry], keep_fraction: Array, budget: str
) -> list[Array]:
    keys = jnp.concatenate([s.ravel().astype(jnp.float32) * e.weight for s, e in zip(scores, entries)])
    total_blocks = int(keys.size)
    order = _rank_order(keys)
    if budget == "blocks":
        kept_sorted = jnp.arange(total_blocks) < _round_count(keep_fraction, total_blocks)
    else:
        sizes = np.concatenate(
            [np.full(e.num_blocks, e.weights_per_block, np.int32) for e in entries] + [np.zeros(0, np.int32)]
        )
        allowed = _round_count(keep_fraction, int(sizes.sum()))
        kept_sorted = jnp.cumsum(jnp.asarray(sizes)[order]) <= allowed
    flat = _scatter_back(order, kept_sorted)
    splits = np.cumsum([e.num_blocks for e in entries])[:-1]
    return [m.reshape(e.score_shape) for m, e in zip(jnp.split(flat, splits), entries)]


def _hard_masks(
    scores: Sequence[Array], layout: MaskLayout, keep_fraction: Array, config: MaskConfig
) -> list[Array]:
    scores = [jax.lax.stop_gradient(s) for s in scores]
    if config.method == "soft":
        return [(jax.nn.sigmoid(s.astype(jnp.float32)) > config.threshold).astype(jnp.float32) for s in scores]
    if config.scope == "local":
        return [_topk_local(s, keep_fraction) for s in scores]
    if not scores:
        return []
    return _topk_global(scores, layout.entries, keep_fraction, config.budget)


def compute_masks(
    scores: Scores, keep_fraction: float | Array, layout: MaskLayout, config: MaskConfig = MaskConfig()
) -> Scores:
    """0/1 block masks, shaped and nested like ``scores``.

    Args:
      scores: from :func:`jaxprune.mask.init_scores` (any dtype; float32 advised).
      keep_fraction: scalar in [0, 1], Python or traced (see module docstring
        for what it counts). Ignored by the soft method.
      layout: the layout the scores were built from.
      config: method, scope and budget.

    Returns:
      float32 arrays of 0.0 / 1.0 at the scores' paths, carrying the
      straight-through gradient (``dM/dS = 1``); use ``mask > 0`` for booleans.
    """
    arrays = scores_to_list(scores, layout)
    hard = _hard_masks(arrays, layout, keep_fraction, config)
    return scores_from_list(
        [_straight_through(h, s.astype(jnp.float32)) for h, s in zip(hard, arrays)], layout
    )


def _expand(weights: Array, mask: Array, slot: Slot) -> Array:
    """``weights * mask`` with each mask entry broadcast over its block or slice.

    The weights are viewed (a free reshape) with every blocked dimension split
    into ``(count, block)`` and the mask broadcast over the ``block`` axes.
    Dimensions with blocks of size 1 are not split: a trailing axis of size 1
    makes XLA's CPU reductions in the backward pass several times slower.
    """
    shape = weights.shape
    if slot.block_shape is not None:
        split, mask_shape = [], []
        for dim, block in zip(shape, slot.block_shape):
            count = dim // block
            if block == 1 or count == 1:
                split.append(dim)
                mask_shape.append(count)
            else:
                split += [count, block]
                mask_shape += [count, 1]
    else:
        axis, width, count = slot.axis, slot.width, shape[slot.axis] // slot.width
        middle, mask_middle = ((count,), (count,)) if width == 1 else ((count, width), (count, 1))
        split = shape[:axis] + middle + shape[axis + 1 :]
        mask_shape = (1,) * axis + mask_middle + (1,) * (len(shape) - axis - 1)
    out = weights.reshape(split) * mask.astype(weights.dtype).reshape(mask_shape)
    return out.reshape(shape)


def expand_masks(params: Params, masks: Scores, layout: MaskLayout) -> Params:
    """``W * expand(M)`` for every scored leaf; other leaves pass through unchanged.

    Args:
      params: the pytree the layout was built from (same paths and shapes);
        any structure (Linen dict, NNX ``State``); the structure is preserved.
      masks: block masks nested like the scores (from :func:`compute_masks`,
        or any 0/1 arrays of the score shapes, e.g. loaded from disk).
      layout: the layout.

    Returns:
      Params of the same structure and dtypes with pruned blocks set to 0.
    """
    mask_arrays = scores_to_list(masks, layout)
    index = layout.slot_index
    seen = set()

    def mask_leaf(key_path, leaf):
        path = path_keys(key_path)
        if path not in index:
            return leaf
        entry, slot = index[path]
        if tuple(leaf.shape) != slot.leaf_shape:
            raise JaxpruneError(
                f"{'/'.join(path)} has shape {tuple(leaf.shape)} but the layout was built for "
                f"{slot.leaf_shape}; rebuild the layout for these params"
            )
        seen.add(path)
        return _expand(leaf, mask_arrays[entry], slot)

    out = jax.tree_util.tree_map_with_path(mask_leaf, params)
    missing = [p for p in index if p not in seen]
    if missing:
        raise JaxpruneError(
            f"params lack {'/'.join(missing[0])} (and {len(missing) - 1} more) that the layout "
            "masks; pass the params the layout was built from"
        )
    return out


def apply_masks(
    params: Params,
    scores: Scores,
    keep_fraction: float | Array,
    layout: MaskLayout,
    config: MaskConfig = MaskConfig(),
) -> Params:
    """Masked params ``W * expand(M(S))`` with straight-through score gradients.

    Bind the static arguments to get the ``(params, scores, keep_fraction) ->
    masked params`` transform: ``functools.partial(apply_masks, layout=layout,
    config=config)``. Pure and jit-friendly; ``keep_fraction`` may be traced.
    """
    return expand_masks(params, compute_masks(scores, keep_fraction, layout, config), layout)


def score_penalty(scores: Scores, layout: MaskLayout) -> Array:
    """L1 penalty of soft movement: the weighted mean of ``sigmoid(S)``.

    Each block counts in proportion to the weights it owns, so the value is
    the "soft" fraction of scored weights kept, in [0, 1], float32 scalar.
    Add ``lambda * score_penalty(...)`` to the loss.
    """
    arrays = scores_to_list(scores, layout)
    if not layout.num_weights:
        return jnp.zeros((), jnp.float32)
    total = sum(
        jnp.sum(jax.nn.sigmoid(s.astype(jnp.float32))) * e.weights_per_block
        for s, e in zip(arrays, layout.entries)
    )
    return total / layout.num_weights


def kept_fraction(masks: Scores, layout: MaskLayout, count: Literal["weights", "blocks"] = "weights") -> Array:
    """Fraction of scored weights (or of blocks) that ``masks`` keep; float32 scalar."""
    arrays = [jax.lax.stop_gradient(m) for m in scores_to_list(masks, layout)]
    per_block = [e.weights_per_block if count == "weights" else 1 for e in layout.entries]
    total = sum(e.num_blocks * w for e, w in zip(layout.entries, per_block))
    if not total:
        return jnp.ones((), jnp.float32)
    kept = sum(jnp.sum(m.astype(jnp.float32)) * w for m, w in zip(arrays, per_block))
    return kept / total
