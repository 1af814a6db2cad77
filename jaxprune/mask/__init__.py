"""Block movement pruning as a pytree transform, for any Flax model.

The mask never touches the model's code: block scores are a pytree beside the
params, and masking is a pure function of (params, scores, keep_fraction).

>>> import jax, jax.numpy as jnp
>>> from jaxprune import mask
>>> params = {"dense": {"kernel": jnp.arange(16.0).reshape(4, 4), "bias": jnp.ones(4)}}
>>> layout = mask.build_layout(params, [mask.BlockRule(r"kernel$", (2, 2))])
>>> scores = mask.init_scores(layout)
>>> scores["dense"]["kernel"].shape
(2, 2)
>>> scores["dense"]["kernel"] = jnp.array([[0.0, 3.0], [2.0, 1.0]])
>>> masked = mask.apply_masks(params, scores, 0.5, layout)
>>> masked["dense"]["kernel"]
Array([[ 0.,  0.,  2.,  3.],
       [ 0.,  0.,  6.,  7.],
       [ 8.,  9.,  0.,  0.],
       [12., 13.,  0.,  0.]], dtype=float32)

To train: :class:`Pruner` bundles layout, method and keep schedule
(``init(params) -> scores``, ``apply(params, scores, step)``, ``penalty(scores)``)
and ``Pruner.optimizer(weight_tx, score_tx)`` is one optax transformation over
``(params, scores)``.

Modules: :mod:`.rules` (what is pruned), :mod:`.layout` (rules resolved
against a params tree), :mod:`.scores`, :mod:`.masking`, :mod:`.schedule`,
:mod:`.pruner`, :mod:`.units` (which group units are entirely zero), :mod:`.report`.
"""

from jaxprune.mask.layout import MaskLayout, ScoredEntry, Slot, build_layout
from jaxprune.mask.masking import (
    MaskConfig,
    apply_masks,
    compute_masks,
    expand_masks,
    kept_fraction,
    score_penalty,
)
from jaxprune.mask.pruner import Pruner
from jaxprune.mask.report import LeafSparsity, SparsityReport, UnitSparsity, sparsity_report
from jaxprune.mask.rules import BlockRule, GroupMember, GroupRule, Rule, path_string
from jaxprune.mask.schedule import cubic_keep_schedule
from jaxprune.mask.units import removed_units, zero_units
from jaxprune.mask.scores import Scores, init_scores, scores_from_list, scores_to_list

__all__ = [
    "BlockRule",
    "GroupMember",
    "GroupRule",
    "LeafSparsity",
    "MaskConfig",
    "MaskLayout",
    "Pruner",
    "Rule",
    "ScoredEntry",
    "Scores",
    "Slot",
    "SparsityReport",
    "UnitSparsity",
    "apply_masks",
    "build_layout",
    "compute_masks",
    "cubic_keep_schedule",
    "expand_masks",
    "init_scores",
    "kept_fraction",
    "path_string",
    "removed_units",
    "score_penalty",
    "scores_from_list",
    "scores_to_list",
    "sparsity_report",
    "zero_units",
]
