"""Training with block movement pruning and knowledge distillation.

``train_step`` is a pure function of ``(state, batch)`` (plus the teacher's
params when its logits are computed in the step), jitted once by
:func:`make_train_step` with the static pieces bound by ``functools.partial``.
Weights and block scores have separate optax transforms: AdamW with linear
warm-up and decay for the weights, Adam with a larger learning rate for the
scores. The keep fraction follows the cubic schedule of movement pruning as a
function of the traced step, so the step compiles once per batch shape.

Precision policy: params, scores and optimizer states are float32; the model
computes in ``compute_dtype`` (bfloat16 on request); softmax, losses and
metrics are float32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import mask
from jaxprune.bert import BertForSequenceClassification, inference_logits
from jaxprune.bert_rules import bert_rules
from jaxprune.config import BertConfig
from jaxprune.distill import cross_entropy, distillation_loss
from jaxprune.errors import JaxpruneError

Array = jax.Array
Params = Any
Batch = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (teacher fine-tuning or pruning a student).

    ``sparsity`` is the final fraction of encoder weights pruned (0 = plain
    fine-tuning). With ``method="topk"`` it is reached exactly through the
    cubic schedule; with ``"soft"`` sparsity comes from the L1 penalty
    ``soft_penalty`` on sigmoid(scores) and the achieved value is reported.
    """

    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    score_learning_rate: float = 1e-2
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    sparsity: float = 0.0
    method: Literal["topk", "soft"] = "topk"
    attention_blocks: Literal["heads", "blocks"] = "heads"
    block_shape: tuple[int, int] = (32, 32)
    scope: Literal["local", "global"] = "global"
    prune_warmup_fraction: float = 0.1
    prune_cooldown_fraction: float = 0.3
    soft_penalty: float = 1.0
    soft_threshold: float = 0.1
    distill: bool = False
    alpha_ce: float = 0.5
    alpha_kd: float = 0.5
    temperature: float = 2.0
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise JaxpruneError(f"sparsity {self.sparsity} is out of range; pass a value with 0 <= s < 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise JaxpruneError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be at least 1")
        if self.method not in ("topk", "soft"):
            raise JaxpruneError(f"method {self.method!r} is unknown; use topk or soft")

    @property
    def prunes(self) -> bool:
        return self.sparsity > 0.0 or self.method == "soft" and self.soft_penalty > 0.0


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes; a pytree that orbax saves whole."""

    step: Array  # int32 scalar
    params: Params
    scores: Params  # block scores ({} when nothing is pruned)
    weight_opt_state: optax.OptState
    score_opt_state: optax.OptState
    rng: Array  # uint32 key data (2,), dropout keys are folded from it by step


@dataclasses.dataclass(frozen=True)
class Pruning:
    """The static pieces of masking: layout, method, and the keep-fraction schedule."""

    layout: mask.MaskLayout
    mask_config: mask.MaskConfig
    keep_schedule: Callable[[Array], Array]


def _decay_mask(params: Params) -> Params:
    # Biases and LayerNorm parameters are not decayed (1-D leaves).
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def _linear_warmup_decay(peak: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    warmup_steps = max(1, warmup_steps)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, peak, warmup_steps),
            optax.linear_schedule(peak, 0.0, max(1, total_steps - warmup_steps)),
        ],
        [warmup_steps],
    )


def make_optimizers(config: TrainConfig, total_steps: int) -> tuple[optax.GradientTransformation, ...]:
    """``(weight_tx, score_tx)``: AdamW for weights, Adam for scores, both warm-up + linear decay."""
    warmup = int(config.warmup_fraction * total_steps)
    weight_tx = optax.adamw(
        _linear_warmup_decay(config.learning_rate, total_steps, warmup),
        weight_decay=config.weight_decay,
        mask=_decay_mask,
    )
    score_tx = optax.adam(_linear_warmup_decay(config.score_learning_rate, total_steps, warmup))
    return weight_tx, score_tx


def make_pruning(params: Params, model_config: BertConfig, config: TrainConfig, total_steps: int) -> Pruning | None:
    """The layout and schedule for ``config``, or ``None`` when nothing is pruned."""
    if not config.prunes:
        return None
    rules = bert_rules(model_config, attention=config.attention_blocks, block_shape=config.block_shape)
    # Scores are trained with Adam, whose steps have the same size for a head's score and a
    # neuron's whatever their gradient scale, so raw scores are what should compete in global
    # ranking: equal rule weights (the budget itself stays counted in weights).
    rules = [dataclasses.replace(rule, weight=1.0) for rule in rules]
    layout = mask.build_layout(params, rules)
    mask_config = mask.MaskConfig(method=config.method, scope=config.scope, threshold=config.soft_threshold)
    schedule = mask.cubic_keep_schedule(
        total_steps,
        1.0 - config.sparsity,
        initial_warmup_steps=int(config.prune_warmup_fraction * total_steps),
        final_warmup_steps=int(config.prune_cooldown_fraction * total_steps),
    )
    return Pruning(layout, mask_config, schedule)


def create_train_state(
    params: Params,
    config: TrainConfig,
    weight_tx: optax.GradientTransformation,
    score_tx: optax.GradientTransformation,
    pruning: Pruning | None,
) -> TrainState:
    scores = mask.init_scores(pruning.layout) if pruning is not None else {}
    # A copy: the step donates the state, and the caller may still need ``params`` (the teacher).
    params = jax.tree_util.tree_map(lambda p: jnp.array(p, jnp.float32, copy=True), params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        scores=scores,
        weight_opt_state=weight_tx.init(params),
        score_opt_state=score_tx.init(scores),
        rng=jax.random.key_data(jax.random.key(config.seed)),
    )


def masked_params(params: Params, scores: Params, step: Array | int, pruning: Pruning | None) -> Params:
    """The params the student computes with at ``step`` (the params themselves if unpruned)."""
    if pruning is None:
        return params
    keep = pruning.keep_schedule(step)
    return mask.apply_masks(params, scores, keep, pruning.layout, pruning.mask_config)


def train_step(
    state: TrainState,
    batch: Batch,
    teacher_params: Params | None = None,
    *,
    model: BertForSequenceClassification,
    teacher_model: BertForSequenceClassification | None,
    config: TrainConfig,
    pruning: Pruning | None,
    weight_tx: optax.GradientTransformation,
    score_tx: optax.GradientTransformation,
) -> tuple[TrainState, dict[str, Array]]:
    """One update of weights and scores.

    ``batch`` holds ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T),
    ``labels`` (B,), ``weight`` (B,) and, for cached distillation,
    ``teacher_logits`` (B, C). With ``teacher_params`` the teacher's logits are
    computed here instead.
    """
    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    weight = batch["weight"]

    teacher_logits = batch.get("teacher_logits")
    if config.distill and teacher_params is not None:
        teacher_logits = teacher_model.apply(
            {"params": teacher_params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
        teacher_logits = jax.lax.stop_gradient(teacher_logits)

    def loss_fn(params, scores):
        effective = masked_params(params, scores, state.step, pruning)
        logits = model.apply(
            {"params": effective},
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            deterministic=False,
            rngs={"dropout": dropout_key},
        )
        ce = cross_entropy(logits, batch["labels"], weight)
        metrics = {"ce": ce}
        if config.distill:
            kd = distillation_loss(logits, teacher_logits, config.temperature, weight)
            loss = config.alpha_ce * ce + config.alpha_kd * kd
            metrics["kd"] = kd
        else:
            loss = ce
        if pruning is not None and config.method == "soft":
            penalty = mask.score_penalty(scores, pruning.layout)
            loss = loss + config.soft_penalty * penalty
            metrics["penalty"] = penalty
        correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
        metrics["accuracy"] = jnp.sum(correct * weight) / jnp.maximum(jnp.sum(weight), 1.0)
        metrics["loss"] = loss
        return loss, metrics

    (_, metrics), (weight_grads, score_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        state.params, state.scores
    )
    updates, weight_opt_state = weight_tx.update(weight_grads, state.weight_opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    score_updates, score_opt_state = score_tx.update(score_grads, state.score_opt_state, state.scores)
    scores = optax.apply_updates(state.scores, score_updates)
    if pruning is not None:
        metrics["keep_fraction"] = pruning.keep_schedule(state.step)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        scores=scores,
        weight_opt_state=weight_opt_state,
        score_opt_state=score_opt_state,
    )
    return new_state, metrics


def make_train_step(
    model_config: BertConfig,
    config: TrainConfig,
    pruning: Pruning | None,
    weight_tx: optax.GradientTransformation,
    score_tx: optax.GradientTransformation,
    teacher_config: BertConfig | None = None,
) -> Callable[..., tuple[TrainState, dict[str, Array]]]:
    """``train_step`` with its static pieces bound, jitted once, the state donated."""
    dtype = jnp.dtype(config.compute_dtype)
    step = functools.partial(
        train_step,
        model=BertForSequenceClassification(model_config, dtype=dtype),
        teacher_model=BertForSequenceClassification(teacher_config, dtype=dtype) if teacher_config else None,
        config=config,
        pruning=pruning,
        weight_tx=weight_tx,
        score_tx=score_tx,
    )
    return jax.jit(step, donate_argnums=0)


@functools.partial(jax.jit, static_argnames=("model",))
def _logits(model: BertForSequenceClassification, params: Params, batch: Batch) -> Array:
    return inference_logits(model, params, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def predict_logits(
    params: Params,
    model_config: BertConfig,
    encoded: Any,
    batch_size: int,
    compute_dtype: str = "float32",
    progress: Callable[[Any], Any] | None = None,
) -> np.ndarray:
    """Logits (N, C) float32 for every row of an :class:`jaxprune.batching.EncodedSplit`, in row order."""
    from jaxprune.batching import epoch_plan, make_batch

    model = BertForSequenceClassification(model_config, dtype=jnp.dtype(compute_dtype))
    out = np.zeros((len(encoded), model_config.num_labels), np.float32)
    plan = epoch_plan(encoded, batch_size, shuffle=False)
    for rows in progress(plan) if progress else plan:
        batch = make_batch(encoded, rows, batch_size)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        out[rows] = np.asarray(_logits(model, params, inputs))[: len(rows)]
    return out
