"""jaxprune's own train step, compiled ahead of time for a benchmark to time.

The train-step benchmarks (``train_step.py``, ``mask_overhead.py``, ``vocab_step.py``) time
the library, never a copy of it: the step is :func:`jaxprune.training.step.make_train_step`
with the BERT's loss (:class:`jaxprune.training.bert.BertClassification`), the state of
:func:`~jaxprune.training.step.create_train_state` and the optimizer of
:func:`~jaxprune.training.step.make_optimizer`, and the masked variants use the pruner that
training builds (:meth:`jaxprune.training.config.PruningConfig.build` of ``bert_rules``:
every rule weight set to 1.0, the method, scope and soft penalty of the config), its keep
schedule held at one fixed value so that every timed step prunes alike.

>>> import jax, jax.numpy as jnp
>>> from jaxprune.models.bert import init_params
>>> from jaxprune.models.config import BertConfig
>>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
...                     num_attention_heads=2, intermediate_size=32)
>>> params = init_params(config, jax.random.key(0))
>>> pruner = training_pruner(params, config, keep_fraction=0.5)
>>> float(pruner.keep_fraction(0)), float(pruner.keep_fraction(10_000))
(0.5, 0.5)
>>> batch = step_batch(jnp.ones((2, 8), jnp.int32), jnp.zeros((2,), jnp.int32))
>>> run, compile_s = compiled_train_step(params, config, TrainConfig(), pruner, batch, total_steps=4)
>>> run()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from jaxprune import mask
from jaxprune.models.bert_rules import bert_rules
from jaxprune.models.config import BertConfig
from jaxprune.training.bert import BertClassification
from jaxprune.training.config import PruningConfig, TrainConfig
from jaxprune.training.step import create_train_state, make_optimizer, make_train_step
from jaxprune.training.task import Batch, Params


def training_pruner(
    params: Params,
    model_config: BertConfig,
    keep_fraction: float,
    *,
    method: Literal["topk", "soft"] = "topk",
    scope: Literal["local", "global"] = "global",
    attention: Literal["heads", "blocks"] = "heads",
    ffn: Literal["neurons", "blocks"] = "neurons",
    block_shape: tuple[int, int] = (32, 32),
) -> mask.Pruner:
    """The pruner training builds for ``params``, at ``keep_fraction`` from step 0 on.

    It is :meth:`PruningConfig.build` of ``sparsity = 1 - keep_fraction`` with no warm-up
    and all steps in the cool-down, so the cubic schedule sits at its final value. With
    ``keep_fraction=1`` and top-k that is the identity pruner, as in training at sparsity 0.

    ``ffn="blocks"`` is not a training option (training scores whole FFN neurons): it builds
    the same pruner over ``bert_rules(..., ffn="blocks")``.
    """
    pruning = PruningConfig(
        sparsity=1.0 - keep_fraction, method=method, attention_blocks=attention, block_shape=block_shape,
        scope=scope, warmup_fraction=0.0, cooldown_fraction=1.0,
    )
    rules = bert_rules(model_config, attention=attention, block_shape=block_shape, ffn=ffn)
    return pruning.build(params, rules, total_steps=1)


def step_batch(input_ids: jax.Array, labels: jax.Array) -> Batch:
    """A training batch of ``input_ids`` (B, T) and ``labels`` (B,): no padding (attention
    mask all ones), segment 0 everywhere, every row weighted 1 (int32 ids, float32 weights)."""
    input_ids = jnp.asarray(input_ids, jnp.int32)
    return {
        "input_ids": input_ids,
        "attention_mask": jnp.ones_like(input_ids),
        "token_type_ids": jnp.zeros_like(input_ids),
        "labels": jnp.asarray(labels, jnp.int32),
        "weight": jnp.ones(input_ids.shape[:1], jnp.float32),
    }


def train_step_runner(compiled_step: Callable[..., Any], state: Any, batch: Any) -> Callable[[], None]:
    """A blocking call that advances ``state`` by one ``compiled_step(state, batch)``; the
    state is carried from call to call, so a step that donates it can be timed repeatedly."""
    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = compiled_step(holder["state"], batch)
        jax.block_until_ready((holder["state"], metrics))

    return run


def compiled_train_step(
    params: Params,
    model_config: BertConfig,
    config: TrainConfig,
    pruner: mask.Pruner,
    batch: Batch,
    *,
    total_steps: int,
) -> tuple[Callable[[], None], float]:
    """jaxprune's train step for ``params`` and ``pruner``, compiled for ``batch``'s shapes.

    Args:
      params: float32 params of ``model_config`` (copied into the state, so the caller keeps them).
      config: the run's :class:`TrainConfig` (optimizer, ``compute_dtype``, distillation, seed).
      pruner: from :func:`training_pruner`, or ``mask.Pruner.from_rules(params, [])`` (dense).
      batch: as :func:`step_batch` returns (plus ``teacher_logits`` (B, C) when ``config`` distils).
      total_steps: length of the optimizer's warm-up/decay schedule.

    Returns:
      A no-argument call running one step and blocking on its result (see
      :func:`train_step_runner`), and the seconds spent lowering and compiling it.
    """
    task = BertClassification(model_config)
    tx = make_optimizer(config, pruner, total_steps)
    step = make_train_step(task.loss_fn(config), pruner, tx)
    state = create_train_state(params, pruner, tx, config.seed, task.layer_maps(config))
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    return train_step_runner(compiled, state, batch), compile_s
