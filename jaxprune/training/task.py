"""What training needs from a model: the :class:`Task` protocol.

The train step and :func:`jaxprune.training.loop.fit` know no model. A task gives them the
model's side: the loss of a batch (the model applied to the masked params), the pruning rules
of its params, the extra weights layer distillation trains (``{}`` when off) and, when the
model is the teacher, the batch fields its outputs fill. :class:`jaxprune.training.bert.BertClassification`
is BERT sequence classification; any Flax model gets trained and pruned by writing these five
methods for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax

from jaxprune.mask import Rule
from jaxprune.training.config import PruningConfig, TrainConfig

Array = jax.Array
Params = Any
Batch = dict[str, Any]

LossFn = Callable[[Params, Any, Batch, Array], tuple[Array, dict[str, Array]]]
"""``(params, maps, batch, dropout_key) -> (loss, metrics)``: ``params`` as the model computes
with them (already masked), ``maps`` the training-only weights (``{}`` when none), the loss a
float32 scalar and the metrics float32 scalars (the step adds ``loss``, ``penalty`` and
``keep_fraction``)."""

TeacherFn = Callable[[Params, Batch], dict[str, Any]]
"""A jitted ``(teacher_params, batch) -> fields``: the distillation targets the step's batch
carries (``teacher_logits``, and ``teacher_hidden`` when layers are distilled)."""


class Task(Protocol):
    """A model as training sees it (see :class:`jaxprune.training.bert.BertClassification`)."""

    def loss_fn(self, config: TrainConfig) -> LossFn:
        """The loss of a batch under ``config`` (its compute dtype and distillation)."""

    def pruning_rules(self, pruning: PruningConfig) -> Sequence[Rule]:
        """Which leaves of the params are pruned and in which blocks or units."""

    def layer_maps(self, config: TrainConfig) -> Any:
        """The training-only weights the loss trains beside the params (``{}`` when none)."""

    def teacher_fn(self, config: TrainConfig) -> TeacherFn:
        """This model as the teacher: the batch fields its outputs fill under ``config``."""

    def check_layer_teacher(self, teacher: Task) -> None:
        """Raise JaxpruneError if ``teacher``'s layers cannot be distilled into this model's."""
