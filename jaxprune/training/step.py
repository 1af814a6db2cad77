"""The train step: one update of weights and block scores, the same in every mode.

``train_step`` is a pure function of ``(state, batch)``, jitted once by
:func:`make_train_step` with the static pieces (model, pruner, optimizer, loss
settings) bound by ``functools.partial`` and the state donated. Fine-tuning a
teacher, pruning, soft pruning and distillation differ only in those pieces: the
pruner is the identity when nothing is pruned, and distillation targets are
always the batch's ``teacher_logits`` (cached once, or filled by
:func:`make_teacher_fn` before the step).

The optimizer is the pruner's: one optax transformation over ``(params, scores)``
(AdamW with linear warm-up and decay for the weights, Adam with a larger rate for
the scores), so the step makes one update call. The keep fraction follows the
cubic schedule as a function of the traced step, so the step compiles once per
batch shape.

Precision policy: params, scores and optimizer states are float32; the model
computes in ``compute_dtype`` (bfloat16 on request); softmax, losses and
metrics are float32.
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
from jaxprune.models.bert import BertForSequenceClassification
from jaxprune.models.config import BertConfig
from jaxprune.training.config import DistillationConfig, TrainConfig
from jaxprune.training.losses import cross_entropy, distillation_loss

Array = jax.Array
Params = Any
Batch = dict[str, Any]

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; a pytree that orbax saves whole."""

    step: Array  # int32 scalar
    params: Params
    scores: Params  # block scores ({} when nothing is pruned)
    opt_state: optax.OptState  # the pruner's optimizer over (params, scores)
    rng: Array  # uint32 key data (2,), dropout keys are folded from it by step


def make_optimizer(config: TrainConfig, pruner: mask.Pruner, total_steps: int) -> optax.GradientTransformation:
    """The pruner's optimizer over ``(params, scores)`` with ``config.optimizer``'s transformations."""
    return pruner.optimizer(*config.optimizer.build(total_steps))


def create_train_state(
    params: Params, config: TrainConfig, pruner: mask.Pruner, tx: optax.GradientTransformation
) -> TrainState:
    scores = pruner.init(params)
    # A copy: the step donates the state, and the caller may still need ``params`` (the teacher).
    params = jax.tree_util.tree_map(lambda p: jnp.array(p, jnp.float32, copy=True), params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        scores=scores,
        opt_state=tx.init((params, scores)),
        rng=jax.random.key_data(jax.random.key(config.seed)),
    )


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: BertForSequenceClassification,
    pruner: mask.Pruner,
    tx: optax.GradientTransformation,
    distillation: DistillationConfig | None,
) -> tuple[TrainState, dict[str, Array]]:
    """One update of weights and scores.

    ``batch`` holds ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T) int32,
    ``labels`` (B,), ``weight`` (B,) float32 (0 on padding rows) and, when distilling,
    ``teacher_logits`` (B, C). Returns the new state and float32 scalar metrics.
    """
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    weight = batch["weight"]

    def loss_fn(variables):
        params, scores = variables
        logits = model.apply(
            {"params": pruner.apply(params, scores, state.step)},
            *(batch[name] for name in MODEL_INPUTS),
            deterministic=False,
            rngs={"dropout": dropout_key},
        )
        ce = cross_entropy(logits, batch["labels"], weight)
        metrics = {"ce": ce}
        if distillation is not None:
            kd = distillation_loss(logits, batch["teacher_logits"], distillation.temperature, weight)
            loss = distillation.alpha_ce * ce + distillation.alpha_kd * kd
            metrics["kd"] = kd
        else:
            loss = ce
        if pruner.penalty_weight:
            penalty = pruner.penalty(scores)
            loss = loss + penalty
            metrics["penalty"] = penalty
        correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
        metrics["accuracy"] = jnp.sum(correct * weight) / jnp.maximum(jnp.sum(weight), 1.0)
        metrics["loss"] = loss
        return loss, metrics

    variables = (state.params, state.scores)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables)
    updates, opt_state = tx.update(grads, state.opt_state, variables)
    params, scores = optax.apply_updates(variables, updates)
    if pruner.prunes:
        metrics["keep_fraction"] = pruner.keep_fraction(state.step)
    new_state = state.replace(step=state.step + 1, params=params, scores=scores, opt_state=opt_state)
    return new_state, metrics


def make_train_step(
    model_config: BertConfig,
    config: TrainConfig,
    pruner: mask.Pruner,
    tx: optax.GradientTransformation,
    state_shardings: Any = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, Array]]]:
    """``train_step`` with its static pieces bound, jitted once, the state donated.

    ``state_shardings`` (a tree of ``NamedSharding`` shaped like the state, from
    :meth:`jaxprune.training.parallel.Parallel.shardings`) pins the new state to the old one's
    layout across the mesh; the metrics come back replicated. ``None``: placement follows the inputs.
    """
    step = functools.partial(
        train_step,
        model=BertForSequenceClassification(model_config, dtype=jnp.dtype(config.compute_dtype)),
        pruner=pruner,
        tx=tx,
        distillation=config.distillation,
    )
    if state_shardings is None:
        return jax.jit(step, donate_argnums=0)
    mesh = jax.tree_util.tree_leaves(state_shardings)[0].mesh
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(step, donate_argnums=0, out_shardings=(state_shardings, replicated))


def make_teacher_fn(
    teacher_config: BertConfig, compute_dtype: str = "float32"
) -> Callable[[Params, Batch], Array]:
    """A jitted ``(teacher_params, batch) -> teacher_logits`` (B, C): what fills a batch's
    distillation targets when they are computed every step instead of cached."""
    teacher = BertForSequenceClassification(teacher_config, dtype=jnp.dtype(compute_dtype))

    @jax.jit
    def teacher_logits(teacher_params: Params, batch: Batch) -> Array:
        return teacher.apply({"params": teacher_params}, *(batch[name] for name in MODEL_INPUTS))

    return teacher_logits
