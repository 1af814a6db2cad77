"""The pruner: layout, method and keep schedule in one object, and its optimizer.

A :class:`Pruner` is everything static about pruning one params tree. Its three
pure functions are all a training step needs:

* ``init(params) -> scores``: fresh block scores (a pytree beside the params);
* ``apply(params, scores, step) -> masked params``: ``W * expand(M(S))`` at the
  keep fraction the schedule gives for ``step`` (a traced step never recompiles),
  with the straight-through gradient to the scores;
* ``penalty(scores)``: what the method adds to the loss (soft movement's
  weighted L1 on ``sigmoid(S)``; zero for top-k).

``optimizer(weight_tx, score_tx)`` combines the two optax transformations into
one over the pair ``(params, scores)`` (``optax.multi_transform``), so a step
differentiates the loss with respect to the pair and makes one update call:

>>> import jax, jax.numpy as jnp, optax
>>> from jaxprune import mask
>>> params = {"dense": {"kernel": jnp.arange(16.0).reshape(4, 4)}}
>>> pruner = mask.Pruner.from_rules(params, [mask.BlockRule(r"kernel$", (2, 2))],
...                                 keep_schedule=lambda step: jnp.float32(0.5))
>>> scores = pruner.init(params)
>>> tx = pruner.optimizer(optax.sgd(0.1), optax.sgd(1.0))
>>> opt_state = tx.init((params, scores))
>>> def loss_fn(variables, step):
...     masked = pruner.apply(*variables, step)
...     return jnp.sum(masked["dense"]["kernel"] ** 2) + pruner.penalty(variables[1])
>>> grads = jax.grad(loss_fn)((params, scores), 0)
>>> updates, opt_state = tx.update(grads, opt_state, (params, scores))
>>> params, scores = optax.apply_updates((params, scores), updates)
>>> scores["dense"]["kernel"].shape
(2, 2)

A pruner with no scored entries (``Pruner.from_rules(params, [])``) is the
identity: ``init`` gives ``{}`` and ``apply`` returns the params, so one step
serves plain fine-tuning and pruning alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxprune.errors import JaxpruneError
from jaxprune.mask.layout import MaskLayout, build_layout
from jaxprune.mask.masking import MaskConfig, apply_masks, compute_masks, score_penalty
from jaxprune.mask.rules import Rule, path_keys
from jaxprune.mask.scores import Initializer, Scores, init_scores

Array = jax.Array
Params = Any
Schedule = Callable[[Array | int], Array]

WEIGHTS, SCORES = "weights", "scores"


@dataclasses.dataclass(frozen=True)
class Pruner:
    """Layout, method and keep schedule: how one params tree is pruned.

    Attributes:
      layout: from :func:`jaxprune.mask.build_layout` (static, hashable).
      config: method (top-k or soft), scope and budget (:class:`MaskConfig`).
      keep_schedule: ``step -> keep fraction``, a pure ``jnp`` function (e.g.
        :func:`jaxprune.mask.cubic_keep_schedule`); ``None`` keeps everything
        (top-k at keep fraction 1). The soft method ignores it.
      penalty_weight: soft method only: ``lambda`` of the L1 penalty
        ``lambda * score_penalty(scores)`` that :meth:`penalty` returns.

    Frozen and hashable (the schedule by identity), so a step can take it as
    a static argument.
    """

    layout: MaskLayout
    config: MaskConfig = MaskConfig()
    keep_schedule: Schedule | None = None
    penalty_weight: float = 0.0

    def __post_init__(self):
        if self.penalty_weight < 0:
            raise JaxpruneError(f"Pruner penalty_weight={self.penalty_weight} must be >= 0")
        if self.penalty_weight and self.config.method != "soft":
            raise JaxpruneError("Pruner penalty_weight applies to method='soft' only; set it to 0 for top-k")

    @classmethod
    def from_rules(
        cls,
        params: Params,
        rules: Sequence[Rule],
        config: MaskConfig = MaskConfig(),
        keep_schedule: Schedule | None = None,
        penalty_weight: float = 0.0,
    ) -> Pruner:
        """Resolve ``rules`` against ``params`` (arrays or ``jax.eval_shape`` structs) once, outside jit."""
        return cls(build_layout(params, rules), config, keep_schedule, penalty_weight)

    @property
    def prunes(self) -> bool:
        """Whether any leaf is scored (``False``: the pruner is the identity)."""
        return bool(self.layout.entries)

    def init(self, params: Params | None = None, init: float | Initializer = 0.0,
             rng: Array | None = None) -> Scores:
        """Fresh scores, one per block or unit (constant 0 by default; see :func:`init_scores`).

        ``params``, when given, are checked against the layout (same scored paths and shapes).
        """
        if params is not None and self.prunes:
            _check_params(params, self.layout)
        return init_scores(self.layout, init, rng)

    def keep_fraction(self, step: Array | int) -> Array:
        """The fraction of scored weights kept at ``step`` (float32 scalar)."""
        if self.keep_schedule is None:
            return jnp.ones((), jnp.float32)
        return jnp.asarray(self.keep_schedule(step), jnp.float32)

    def masks(self, scores: Scores, step: Array | int) -> Scores:
        """0/1 float32 block masks at ``step``, nested like the scores."""
        return compute_masks(scores, self.keep_fraction(step), self.layout, self.config)

    def apply(self, params: Params, scores: Scores, step: Array | int) -> Params:
        """The params the model computes with at ``step``: ``W * expand(M(S))``.

        Pure and jit-friendly; ``step`` may be traced. Straight-through gradient to
        ``scores``; pruned weights get no gradient. The identity when nothing is scored.
        """
        if not self.prunes:
            return params
        return apply_masks(params, scores, self.keep_fraction(step), self.layout, self.config)

    def penalty(self, scores: Scores) -> Array:
        """``penalty_weight * score_penalty(scores)`` (float32 scalar); 0 unless the method is soft."""
        if self.config.method != "soft" or not self.penalty_weight or not self.prunes:
            return jnp.zeros((), jnp.float32)
        return self.penalty_weight * score_penalty(scores, self.layout)

    def optimizer(
        self,
        weight_tx: optax.GradientTransformation,
        score_tx: optax.GradientTransformation | None = None,
    ) -> optax.GradientTransformation:
        """One optax transformation over ``(params, scores)``: ``weight_tx`` on the params,
        ``score_tx`` (default Adam at 1e-2, movement pruning's larger rate) on the scores."""
        return optax.multi_transform(
            {WEIGHTS: weight_tx, SCORES: score_tx if score_tx is not None else optax.adam(1e-2)},
            param_labels,
        )


def param_labels(variables: tuple[Params, Scores]) -> tuple[Any, Any]:
    """The ``multi_transform`` labels of a ``(params, scores)`` pair."""
    if not isinstance(variables, tuple) or len(variables) != 2:
        raise JaxpruneError("a pruner's optimizer updates the pair (params, scores); pass that tuple")
    params, scores = variables
    return (jax.tree_util.tree_map(lambda _: WEIGHTS, params), jax.tree_util.tree_map(lambda _: SCORES, scores))


def _check_params(params: Params, layout: MaskLayout) -> None:
    """Raise if ``params`` lack a scored leaf of ``layout`` or give it another shape."""
    shapes = {path_keys(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
    for path, (_, slot) in layout.slot_index.items():
        if path not in shapes:
            raise JaxpruneError(f"params lack {'/'.join(path)}, which the pruner scores; pass the params "
                                "its rules were resolved against")
        if shapes[path] != slot.leaf_shape:
            raise JaxpruneError(f"{'/'.join(path)} has shape {shapes[path]} but the pruner was built for "
                                f"{slot.leaf_shape}; rebuild it for these params")
