"""The train step: one update of weights and block scores, the same for every model and mode.

``train_step`` is a pure function of ``(state, batch)``, jitted once by
:func:`make_train_step` with the static pieces (the model's loss, the pruner, the optimizer)
bound by ``functools.partial`` and the state donated. The loss comes from the model's side
(:meth:`jaxprune.training.task.Task.loss_fn`) and sees the params masked by the pruner; the
step adds the pruner's penalty, takes the gradients and makes one update. Fine-tuning,
pruning, soft pruning and distillation differ only in those pieces: the pruner is the
identity when nothing is pruned, and distillation targets are batch fields.

The optimizer is the pruner's: one optax transformation over ``(weights, scores)``
(AdamW with linear warm-up and decay for the weights, Adam with a larger rate for
the scores), so the step makes one update call. The weights are the pair
``(params, maps)``: the model's params and the training-only weights (layer distillation's
maps, ``{}`` when off), which are trained like weights but are not part of the model. The
keep fraction follows the pruner's schedule as a function of the traced step, so the step
compiles once per batch shape.

Precision policy: params, scores and optimizer states are float32; the loss decides the
compute dtype of the model; losses and metrics are float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxprune import mask
from jaxprune.training.config import TrainConfig
from jaxprune.training.task import Batch, LossFn, Params, Task

Array = jax.Array
StepFn = Callable[["TrainState", Batch], tuple["TrainState", dict[str, Array]]]


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; a pytree that orbax saves whole."""

    step: Array  # int32 scalar
    params: Params
    scores: Params  # block scores ({} when nothing is pruned)
    # Training-only weights (layer distillation's maps; {} when off): never part of the model's params.
    maps: Any
    opt_state: optax.OptState  # the pruner's optimizer over ((params, maps), scores)
    rng: Array  # uint32 key data (2,), dropout keys are folded from it by step


def make_optimizer(config: TrainConfig, pruner: mask.Pruner, total_steps: int) -> optax.GradientTransformation:
    """The pruner's optimizer over ``((params, maps), scores)`` with ``config.optimizer``'s transformations.

    The maps ride in the pruner's weights half: the pruner's optimizer labels every leaf of its
    first element a weight, so the maps get the weights' AdamW (same schedule, kernels decayed,
    biases not) with no second optimizer and no change to :class:`jaxprune.mask.Pruner`, whose
    ``apply`` still sees the model's params alone.
    """
    return pruner.optimizer(*config.optimizer.build(total_steps))


def make_pruner(params: Params, task: Task, config: TrainConfig, total_steps: int) -> mask.Pruner:
    """The pruner of a run of ``total_steps``: ``config.pruning`` over ``task``'s rules (the
    identity when the run prunes nothing)."""
    if config.pruning is None:
        return mask.Pruner.from_rules(params, [])
    return config.pruning.build(params, task.pruning_rules(config.pruning), total_steps)


def create_train_state(
    params: Params, pruner: mask.Pruner, tx: optax.GradientTransformation, seed: int, maps: Any = None
) -> TrainState:
    """The state at step 0: zero scores, ``maps`` (default ``{}``) and the dropout key of ``seed``."""
    maps = {} if maps is None else maps
    scores = pruner.init(params)
    # A copy: the step donates the state, and the caller may still need ``params`` (the teacher).
    params = jax.tree_util.tree_map(lambda p: jnp.array(p, jnp.float32, copy=True), params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        scores=scores,
        maps=maps,
        opt_state=tx.init(((params, maps), scores)),
        rng=jax.random.key_data(jax.random.key(seed)),
    )


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    loss_fn: LossFn,
    pruner: mask.Pruner,
    tx: optax.GradientTransformation,
) -> tuple[TrainState, dict[str, Array]]:
    """One update of weights, maps and scores.

    ``loss_fn(masked_params, maps, batch, dropout_key)`` gives the model's loss and metrics;
    the step adds the pruner's penalty (soft pruning) to the loss. Returns the new state and
    float32 scalar metrics: the loss's, ``loss``, ``penalty`` when there is one and
    ``keep_fraction`` when the pruner prunes.
    """
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def objective(variables):
        (params, maps), scores = variables
        loss, metrics = loss_fn(pruner.apply(params, scores, state.step), maps, batch, dropout_key)
        if pruner.penalty_weight:
            penalty = pruner.penalty(scores)
            loss = loss + penalty
            metrics["penalty"] = penalty
        metrics["loss"] = loss
        return loss, metrics

    variables = ((state.params, state.maps), state.scores)
    (_, metrics), grads = jax.value_and_grad(objective, has_aux=True)(variables)
    updates, opt_state = tx.update(grads, state.opt_state, variables)
    (params, maps), scores = optax.apply_updates(variables, updates)
    if pruner.prunes:
        metrics["keep_fraction"] = pruner.keep_fraction(state.step)
    new_state = state.replace(step=state.step + 1, params=params, scores=scores, maps=maps, opt_state=opt_state)
    return new_state, metrics


def make_train_step(
    loss_fn: LossFn,
    pruner: mask.Pruner,
    tx: optax.GradientTransformation,
    state_shardings: Any = None,
) -> StepFn:
    """``train_step`` with its static pieces bound, jitted once, the state donated.

    ``state_shardings`` (a tree of ``NamedSharding`` shaped like the state, from
    :meth:`jaxprune.parallel.Parallel.shardings`) pins the new state to the input state's
    layout across the mesh; the metrics come back replicated. ``None``: placement follows the inputs.
    """
    step = functools.partial(train_step, loss_fn=loss_fn, pruner=pruner, tx=tx)
    if state_shardings is None:
        return jax.jit(step, donate_argnums=0)
    mesh = jax.tree_util.tree_leaves(state_shardings)[0].mesh
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(step, donate_argnums=0, out_shardings=(state_shardings, replicated))
