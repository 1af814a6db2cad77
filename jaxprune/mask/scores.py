"""Block scores: a pytree beside the params, one score per block or unit.

The scores pytree is a nested ``dict`` of float32 arrays keyed by the same
path strings as the params, holding leaves only where a rule matched:

* a leaf of a :class:`~jaxprune.mask.BlockRule` gets an array of shape
  ``leaf.shape // block_shape`` at the leaf's own path;
* a group of a :class:`~jaxprune.mask.GroupRule` gets a vector ``(n_units,)``
  at its anchor, the path of the leaf that matched the first member.

Scores are ordinary trainable parameters: give them their own optimizer (or
an ``optax.multi_transform`` branch) and differentiate the loss with respect
to them through :func:`jaxprune.mask.apply_masks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.errors import JaxpruneError
from jaxprune.mask.layout import MaskLayout, Path

Scores = dict[str, Any]
# (key, shape, dtype) -> array, as in jax.nn.initializers.
Initializer = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]


def _nest(paths: Sequence[Path], arrays: Sequence[jax.Array]) -> Scores:
    tree: Scores = {}
    for path, array in zip(paths, arrays):
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = array
    return tree


def scores_from_list(arrays: Sequence[jax.Array], layout: MaskLayout) -> Scores:
    """Nest one array per layout entry (in entry order) into a scores pytree."""
    if len(arrays) != len(layout.entries):
        raise JaxpruneError(f"got {len(arrays)} score arrays for {len(layout.entries)} layout entries")
    return _nest([e.anchor for e in layout.entries], arrays)


def scores_to_list(scores: Any, layout: MaskLayout) -> list[jax.Array]:
    """The score array of every layout entry, in entry order, shapes checked.

    Works on any nested mapping with the anchor paths (a plain dict, a
    FrozenDict, an NNX ``State``), so masks built with the same layout are
    read the same way.
    """
    arrays = []
    for entry in layout.entries:
        node = scores
        try:
            for key in entry.anchor:
                node = node[key]
        except (KeyError, TypeError):
            raise JaxpruneError(
                f"scores have no entry at {'/'.join(entry.anchor)}; build them with "
                "init_scores(layout) from the same layout"
            ) from None
        if tuple(node.shape) != entry.score_shape:
            raise JaxpruneError(
                f"scores at {'/'.join(entry.anchor)} have shape {tuple(node.shape)} but the layout "
                f"expects {entry.score_shape}; rebuild the scores for these params"
            )
        arrays.append(node)
    return arrays


def init_scores(
    layout: MaskLayout,
    init: float | Initializer = 0.0,
    rng: jax.Array | None = None,
    dtype: Any = jnp.float32,
) -> Scores:
    """Fresh scores for every entry of ``layout``.

    Args:
      layout: from :func:`jaxprune.mask.build_layout`.
      init: a constant (default 0.0, movement pruning's choice: every block
        starts tied and movement decides) or an initializer
        ``(key, shape, dtype) -> array`` such as
        ``jax.nn.initializers.uniform(0.01)``.
      rng: PRNG key, required when ``init`` is an initializer; split once per
        entry in entry order.
      dtype: score dtype (float32: scores accumulate small gradients).

    Returns:
      Nested dict of ``dtype`` arrays, ``entry.score_shape`` at each anchor.
    """
    if callable(init):
        if rng is None:
            raise JaxpruneError("init_scores: an initializer needs rng=jax.random.key(...)")
        keys = jax.random.split(rng, max(len(layout.entries), 1))
        arrays = [init(k, e.score_shape, dtype) for k, e in zip(keys, layout.entries)]
    else:
        arrays = [jnp.full(e.score_shape, init, dtype) for e in layout.entries]
    return scores_from_list(arrays, layout)
