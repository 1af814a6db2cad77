"""The train step: one update of weights and block scores, the same in every mode.

``train_step`` is a pure function of ``(state, batch)``, jitted once by
:func:`make_train_step` with the static pieces (model, pruner, optimizer, loss
settings) bound by ``functools.partial`` and the state donated. Fine-tuning a
teacher, pruning, soft pruning and distillation differ only in those pieces: the
pruner is the identity when nothing is pruned, and distillation targets are
always batch fields: ``teacher_logits`` (cached once, or filled by
:func:`make_teacher_fn` before the step) and, for layer distillation,
``teacher_hidden`` (every teacher layer's output, always filled by the teacher fn:
too large to cache).

The optimizer is the pruner's: one optax transformation over ``(weights, scores)``
(AdamW with linear warm-up and decay for the weights, Adam with a larger rate for
the scores), so the step makes one update call. The weights are the pair
``(params, maps)``: the model's params and the layer-distillation maps (``{}`` when
that is off), which are trained like weights but are not part of the model. The
keep fraction follows the cubic schedule as a function of the traced step, so the
step compiles once per batch shape.

The CE term and the accuracy count rows by ``label_weight`` (0 on rows without a real
label, e.g. a transfer set's texts); the distillation terms by ``weight``.

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
from jaxprune.errors import JaxpruneError
from jaxprune.models.bert import BertForSequenceClassification
from jaxprune.models.config import BertConfig
from jaxprune.training.config import DistillationConfig, TrainConfig
from jaxprune.training.losses import (
    LayerMaps,
    cross_entropy,
    distillation_loss,
    init_layer_maps,
    layer_distillation_loss,
)

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
    # Layer distillation's linear maps ({} when off): trained here, never part of the model's params.
    maps: LayerMaps
    opt_state: optax.OptState  # the pruner's optimizer over ((params, maps), scores)
    rng: Array  # uint32 key data (2,), dropout keys are folded from it by step


def make_optimizer(config: TrainConfig, pruner: mask.Pruner, total_steps: int) -> optax.GradientTransformation:
    """The pruner's optimizer over ``((params, maps), scores)`` with ``config.optimizer``'s transformations.

    The layer-distillation maps ride in the pruner's weights half: the pruner's optimizer labels
    every leaf of its first element a weight, so the maps get the weights' AdamW (same schedule,
    kernels decayed, biases not) with no second optimizer, no label function of our own and no
    change to :class:`jaxprune.mask.Pruner`, whose ``apply`` still sees the model's params alone.
    A run without maps (``{}``) updates exactly as before.
    """
    return pruner.optimizer(*config.optimizer.build(total_steps))


def create_train_state(
    params: Params,
    config: TrainConfig,
    pruner: mask.Pruner,
    tx: optax.GradientTransformation,
    model_config: BertConfig | None = None,
) -> TrainState:
    """The state at step 0; ``model_config`` (the student's) sizes the layer maps, and is
    needed only when ``config`` distils layers."""
    scores = pruner.init(params)
    maps = {}
    if config.distills_layers:
        if model_config is None:
            raise JaxpruneError("layer distillation needs the model config to size its maps; pass model_config")
        maps = init_layer_maps(model_config.num_hidden_layers, model_config.hidden_size)
    # A copy: the step donates the state, and the caller may still need ``params`` (the teacher).
    params = jax.tree_util.tree_map(lambda p: jnp.array(p, jnp.float32, copy=True), params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        scores=scores,
        maps=maps,
        opt_state=tx.init(((params, maps), scores)),
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
    """One update of weights, layer maps and scores.

    ``batch`` holds ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T) int32,
    ``labels`` (B,), ``weight`` (B,) float32 (0 on padding rows), optionally ``label_weight``
    (B,) float32 (``weight``, and 0 on rows without a real label; default ``weight``) and,
    when distilling, ``teacher_logits`` (B, C) and for layer distillation ``teacher_hidden``
    (every teacher layer's output, (B, T, H) each). The loss is ``alpha_ce * CE + alpha_kd * KD
    + layer_weight * layer`` (plus the soft pruning penalty). Returns the new state and float32
    scalar metrics (``layer`` among them when layers are distilled).
    """
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    weight = batch["weight"]
    label_weight = batch.get("label_weight", weight)
    with_layers = distillation is not None and distillation.distills_layers

    def loss_fn(variables):
        (params, maps), scores = variables
        outputs = model.apply(
            {"params": pruner.apply(params, scores, state.step)},
            *(batch[name] for name in MODEL_INPUTS),
            deterministic=False,
            rngs={"dropout": dropout_key},
            return_hidden=with_layers,
        )
        logits, hidden = outputs if with_layers else (outputs, None)
        ce = cross_entropy(logits, batch["labels"], label_weight)
        metrics = {"ce": ce}
        if distillation is not None:
            kd = distillation_loss(logits, batch["teacher_logits"], distillation.temperature, weight)
            loss = distillation.alpha_ce * ce + distillation.alpha_kd * kd
            metrics["kd"] = kd
        else:
            loss = ce
        if with_layers:
            layer = layer_distillation_loss(hidden, batch["teacher_hidden"], maps, batch["attention_mask"], weight)
            loss = loss + distillation.layer_weight * layer
            metrics["layer"] = layer
        if pruner.penalty_weight:
            penalty = pruner.penalty(scores)
            loss = loss + penalty
            metrics["penalty"] = penalty
        correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
        metrics["accuracy"] = jnp.sum(correct * label_weight) / jnp.maximum(jnp.sum(label_weight), 1.0)
        metrics["loss"] = loss
        return loss, metrics

    variables = ((state.params, state.maps), state.scores)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables)
    updates, opt_state = tx.update(grads, state.opt_state, variables)
    (params, maps), scores = optax.apply_updates(variables, updates)
    if pruner.prunes:
        metrics["keep_fraction"] = pruner.keep_fraction(state.step)
    new_state = state.replace(step=state.step + 1, params=params, scores=scores, maps=maps, opt_state=opt_state)
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
    teacher_config: BertConfig, compute_dtype: str = "float32", hidden: bool = False
) -> Callable[[Params, Batch], dict[str, Any]]:
    """A jitted ``(teacher_params, batch) -> targets``: the batch's distillation fields when they
    are computed every step instead of cached: ``teacher_logits`` (B, C) float32 and, with
    ``hidden``, ``teacher_hidden`` (every teacher layer's output, (B, T, H) each in
    ``compute_dtype``). ``teacher_config`` is the teacher's own (a compacted student's differs)."""
    teacher = BertForSequenceClassification(teacher_config, dtype=jnp.dtype(compute_dtype))

    @jax.jit
    def teacher_targets(teacher_params: Params, batch: Batch) -> dict[str, Any]:
        outputs = teacher.apply({"params": teacher_params}, *(batch[name] for name in MODEL_INPUTS),
                                return_hidden=hidden)
        if hidden:
            return {"teacher_logits": outputs[0], "teacher_hidden": outputs[1]}
        return {"teacher_logits": outputs}

    return teacher_targets
