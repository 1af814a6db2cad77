"""BERT sequence classification as a training task (:class:`jaxprune.training.task.Task`).

The loss is ``alpha_ce * CE + alpha_kd * KD + layer_weight * layer`` (CE alone without
distillation) over a batch of ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T)
int32, ``labels`` (B,), ``weight`` (B,) float32 (0 on padding rows), optionally
``label_weight`` (B,) float32 (``weight``, and 0 on rows without a real label; default
``weight``) and, when distilling, ``teacher_logits`` (B, C) and for layer distillation
``teacher_hidden`` (every teacher layer's output, (B, T, H) each). The CE term and the
accuracy count rows by ``label_weight``, the distillation terms by ``weight``.

The pruning rules are :func:`jaxprune.models.bert_rules.bert_rules`; the training-only
weights are the layer-distillation maps (:func:`jaxprune.training.losses.init_layer_maps`).
The model computes in the run's ``compute_dtype``; softmax, losses and metrics are float32.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.errors import JaxpruneError
from jaxprune.mask import Rule
from jaxprune.models.bert import BertForSequenceClassification
from jaxprune.models.bert_rules import bert_rules
from jaxprune.models.config import BertConfig
from jaxprune.training.config import DistillationConfig, PruningConfig, TrainConfig
from jaxprune.training.losses import (
    LayerMaps,
    cross_entropy,
    distillation_loss,
    init_layer_maps,
    layer_distillation_loss,
)
from jaxprune.training.task import Batch, LossFn, Params, TeacherFn

Array = jax.Array

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclasses.dataclass(frozen=True)
class BertClassification:
    """What training needs from a ``BertForSequenceClassification`` of ``config``."""

    config: BertConfig

    def model(self, compute_dtype: str = "float32") -> BertForSequenceClassification:
        return BertForSequenceClassification(self.config, dtype=jnp.dtype(compute_dtype))

    def loss_fn(self, config: TrainConfig) -> LossFn:
        return functools.partial(classification_loss, model=self.model(config.compute_dtype),
                                 distillation=config.distillation)

    def pruning_rules(self, pruning: PruningConfig) -> list[Rule]:
        return bert_rules(self.config, attention=pruning.attention_blocks, block_shape=pruning.block_shape)

    def layer_maps(self, config: TrainConfig) -> LayerMaps:
        if not config.distills_layers:
            return {}
        return init_layer_maps(self.config.num_hidden_layers, self.config.hidden_size)

    def teacher_fn(self, config: TrainConfig) -> TeacherFn:
        """A jitted ``(teacher_params, batch) -> fields``: ``teacher_logits`` (B, C) float32 and,
        when ``config`` distils layers, ``teacher_hidden`` (every layer's output, (B, T, H) each in
        the compute dtype). This model's config is the teacher's own (a compacted student's differs)."""
        return jax.jit(functools.partial(teacher_targets, model=self.model(config.compute_dtype),
                                         hidden=config.distills_layers))

    def check_layer_teacher(self, teacher: BertClassification) -> None:
        student, other = self.config, teacher.config
        if (other.num_hidden_layers, other.hidden_size) != (student.num_hidden_layers, student.hidden_size):
            raise JaxpruneError(
                f"layer distillation pairs layers of the same size: the teacher has {other.num_hidden_layers} "
                f"layers of {other.hidden_size}, the student {student.num_hidden_layers} of "
                f"{student.hidden_size}; turn it off (layer_weight 0) for this student")


def classification_loss(
    params: Params,
    maps: LayerMaps,
    batch: Batch,
    dropout_key: Array,
    *,
    model: BertForSequenceClassification,
    distillation: DistillationConfig | None,
) -> tuple[Array, dict[str, Array]]:
    """The loss of ``model`` with ``params`` on ``batch`` (see the module docstring) and its
    float32 metrics ``ce``, ``kd`` and ``layer`` (when those terms are on) and ``accuracy``."""
    weight = batch["weight"]
    label_weight = batch.get("label_weight", weight)
    with_layers = distillation is not None and distillation.distills_layers
    outputs = model.apply(
        {"params": params},
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
    correct = (jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32)
    metrics["accuracy"] = jnp.sum(correct * label_weight) / jnp.maximum(jnp.sum(label_weight), 1.0)
    return loss, metrics


def teacher_targets(teacher_params: Params, batch: Batch, *, model: BertForSequenceClassification,
                    hidden: bool) -> dict[str, Any]:
    """The distillation fields of ``batch`` from the teacher ``model`` (dropout off)."""
    outputs = model.apply({"params": teacher_params}, *(batch[name] for name in MODEL_INPUTS), return_hidden=hidden)
    if hidden:
        return {"teacher_logits": outputs[0], "teacher_hidden": outputs[1]}
    return {"teacher_logits": outputs}
