"""Typed, nested training configs: optimizer, pruning, distillation, and the run around them.

``TrainConfig`` is one training run (fine-tuning a teacher, or pruning and distilling a
student). Its parts say what they configure and are ``None`` when a run does not use them:
a teacher has no ``pruning`` and no ``distillation``. Each part builds its runtime object
(``OptimizerConfig.build`` the optax transformations, ``PruningConfig.build`` the
:class:`jaxprune.mask.Pruner`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import jax
import optax

from jaxprune import mask
from jaxprune.errors import JaxpruneError


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW for the weights (no decay on 1-D leaves), Adam for the block scores; both warm
    up linearly over ``warmup_fraction`` of the steps, then decay linearly to 0."""

    learning_rate: float = 5e-5
    score_learning_rate: float = 1e-2
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1

    def __post_init__(self):
        if not self.learning_rate > 0 or not self.score_learning_rate > 0:
            raise JaxpruneError(f"learning rates ({self.learning_rate}, {self.score_learning_rate}) must be > 0")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise JaxpruneError(f"warmup_fraction {self.warmup_fraction} must be in [0, 1]")

    def build(self, total_steps: int) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
        """``(weight_tx, score_tx)`` for a run of ``total_steps``."""
        warmup = int(self.warmup_fraction * total_steps)
        weight_tx = optax.adamw(
            _linear_warmup_decay(self.learning_rate, total_steps, warmup),
            weight_decay=self.weight_decay,
            mask=_decay_mask,
        )
        score_tx = optax.adam(_linear_warmup_decay(self.score_learning_rate, total_steps, warmup))
        return weight_tx, score_tx


@dataclasses.dataclass(frozen=True)
class PruningConfig:
    """Block movement pruning of the weights the model's rules score (a BERT's encoder).

    ``sparsity`` is the final fraction of scored weights pruned. With ``method="topk"`` it
    is reached exactly through the cubic schedule (warm-up, ramp, cool-down fractions of the
    steps); with ``"soft"`` sparsity comes from the L1 penalty ``soft_penalty`` on
    sigmoid(scores) and the achieved value is reported. ``attention_blocks`` prunes whole
    heads (compactable) or ``block_shape`` blocks of the attention kernels; FFN neurons are
    always whole units (both read by the BERT's rules, :meth:`jaxprune.training.bert.BertClassification.pruning_rules`).
    ``scope="global"`` lets layers compete for the budget.
    """

    sparsity: float = 0.0
    method: Literal["topk", "soft"] = "topk"
    attention_blocks: Literal["heads", "blocks"] = "heads"
    block_shape: tuple[int, int] = (32, 32)
    scope: Literal["local", "global"] = "global"
    warmup_fraction: float = 0.1
    cooldown_fraction: float = 0.3
    soft_penalty: float = 1.0
    soft_threshold: float = 0.1

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise JaxpruneError(f"sparsity {self.sparsity} is out of range; pass a value with 0 <= s < 1")
        if self.method not in ("topk", "soft"):
            raise JaxpruneError(f"method {self.method!r} is unknown; use topk or soft")
        object.__setattr__(self, "block_shape", tuple(self.block_shape))

    @property
    def prunes(self) -> bool:
        return self.sparsity > 0.0 or self.method == "soft" and self.soft_penalty > 0.0

    def build(self, params: Any, rules: Sequence[mask.Rule], total_steps: int) -> mask.Pruner:
        """The :class:`jaxprune.mask.Pruner` of ``params`` under ``rules`` (the model's, e.g.
        :func:`jaxprune.models.bert_rules.bert_rules`) for a run of ``total_steps`` (the identity
        pruner when this config prunes nothing)."""
        if not self.prunes:
            return mask.Pruner.from_rules(params, [])
        # Scores are trained with Adam, whose steps have the same size for a head's score and a
        # neuron's whatever their gradient scale, so raw scores are what should compete in global
        # ranking: equal rule weights (the budget itself stays counted in weights).
        rules = [dataclasses.replace(rule, weight=1.0) for rule in rules]
        schedule = mask.cubic_keep_schedule(
            total_steps,
            1.0 - self.sparsity,
            initial_warmup_steps=int(self.warmup_fraction * total_steps),
            final_warmup_steps=int(self.cooldown_fraction * total_steps),
        )
        return mask.Pruner.from_rules(
            params, rules, mask.MaskConfig(method=self.method, scope=self.scope, threshold=self.soft_threshold),
            keep_schedule=schedule, penalty_weight=self.soft_penalty if self.method == "soft" else 0.0,
        )


@dataclasses.dataclass(frozen=True)
class DistillationConfig:
    """Hinton distillation from the teacher: ``alpha_ce * CE + alpha_kd * T^2 KL`` at ``temperature``,
    plus ``layer_weight`` times the layer distillation loss (hidden states of the teacher's layers
    matched to the student's through learned linear maps; 0: off)."""

    alpha_ce: float = 0.5
    alpha_kd: float = 0.5
    temperature: float = 2.0
    layer_weight: float = 0.0

    def __post_init__(self):
        if not self.temperature > 0:
            raise JaxpruneError(f"temperature {self.temperature} must be > 0")
        if self.alpha_ce < 0 or self.alpha_kd < 0 or self.layer_weight < 0:
            raise JaxpruneError(f"distillation weights ({self.alpha_ce}, {self.alpha_kd}, {self.layer_weight}) must "
                                f"be >= 0")

    @property
    def distills_layers(self) -> bool:
        return self.layer_weight > 0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run: teacher fine-tuning (no ``pruning``, no ``distillation``) or a student.

    ``compute_dtype`` is the precision policy's one choice: params, scores and optimizer
    states stay float32, the model computes in ``compute_dtype`` (``"bfloat16"`` on request),
    and softmax, losses and metrics are float32.
    """

    epochs: int = 3
    batch_size: int = 32
    seed: int = 0
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    optimizer: OptimizerConfig = OptimizerConfig()
    pruning: PruningConfig | None = None
    distillation: DistillationConfig | None = None

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise JaxpruneError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) must be at least 1")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise JaxpruneError(f"compute_dtype {self.compute_dtype!r} is not float32 or bfloat16")

    @property
    def prunes(self) -> bool:
        return self.pruning is not None and self.pruning.prunes

    @property
    def distills(self) -> bool:
        return self.distillation is not None

    @property
    def distills_layers(self) -> bool:
        return self.distillation is not None and self.distillation.distills_layers

    @property
    def sparsity(self) -> float:
        """The pruning's target sparsity (0 when the run does not prune)."""
        return self.pruning.sparsity if self.pruning is not None else 0.0

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _decay_mask(params: Any) -> Any:
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
