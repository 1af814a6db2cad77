"""Logits of every row of an encoded split, batched and jitted, in row order."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import interrupts
from jaxprune.data.batching import EncodedSplit, epoch_plan, make_batch
from jaxprune.models.bert import BertForSequenceClassification, inference_logits
from jaxprune.models.config import BertConfig

Params = Any


@functools.partial(jax.jit, static_argnames=("model",))
def _logits(model: BertForSequenceClassification, params: Params, batch: dict[str, jax.Array]) -> jax.Array:
    return inference_logits(model, params, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def predict_logits(
    params: Params,
    model_config: BertConfig,
    encoded: EncodedSplit,
    batch_size: int,
    compute_dtype: str = "float32",
    progress: Callable[[Any], Any] | None = None,
    parallel: Any = None,
) -> np.ndarray:
    """Logits (N, C) float32 for every row of ``encoded``, in row order.

    Batches of ``batch_size`` rows of one length bucket go through the jitted inference
    path (:func:`jaxprune.models.bert.inference_logits`) in ``compute_dtype``; ``progress``
    wraps the batch plan (e.g. a tqdm factory). With ``parallel`` (a
    :class:`jaxprune.parallel.Parallel`) the batches are split over its mesh and the
    params placed as it says (replicated, or sharded with ``shard_params``).
    """
    model = BertForSequenceClassification(model_config, dtype=jnp.dtype(compute_dtype))
    out = np.zeros((len(encoded), model_config.num_labels), np.float32)
    plan = epoch_plan(encoded, batch_size, shuffle=False)
    rows_per_batch = batch_size
    if parallel is not None:
        from jaxprune.parallel import to_host

        params, rows_per_batch = parallel.put(params), parallel.padded_batch_size(batch_size)
    # A signal waits for the end of a batch (even one that lands while the bar is being drawn),
    # and the bar is closed before it propagates: otherwise the bar would close when the
    # traceback is collected, after the script's one-line error, and on that error's line.
    with interrupts.deferred():
        batches = progress(plan) if progress else plan
        try:
            for rows in batches:
                interrupts.raise_pending()
                batch = make_batch(encoded, rows, rows_per_batch)
                inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
                if parallel is None:
                    out[rows] = np.asarray(_logits(model, params, inputs))[: len(rows)]
                else:
                    out[rows] = to_host(_logits(model, params, parallel.put_batch(inputs)))[: len(rows)]
        finally:
            getattr(batches, "close", lambda: None)()
    return out
