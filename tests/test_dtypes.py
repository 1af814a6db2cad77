"""jaxprune's own arithmetic under strict dtype promotion: no silent upcast or mixed-dtype op.

``jax.numpy_dtype_promotion("strict")`` turns every implicit promotion between two
array dtypes (bfloat16 + float32, int32 * float32, ...) into an error. The whole suite
cannot run that way because dependencies promote inside (Flax's LayerNorm promotes
bfloat16 to float32, optax's Adam raises a float to an int32 step count), so this file
runs the parts that are ours under it: the float32 model forward with dropout and with
micro-batches, attention in bfloat16 with padding, the masks and their schedule inside
jit with a traced step, and the losses. (JAX does not check ``einsum`` operands given a
``preferred_element_type``; the elementwise arithmetic around them is checked.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import mask
from jaxprune.models.bert import BertForSequenceClassification, attend, inference_logits
from jaxprune.models.bert_rules import bert_rules
from jaxprune.training.losses import cross_entropy, distillation_loss, init_layer_maps, layer_distillation_loss

def _inputs(vocab_size: int, batch: int = 3, length: int = 8):
    ids = jax.random.randint(jax.random.key(1), (batch, length), 0, vocab_size)
    attention_mask = jnp.ones((batch, length), jnp.int32).at[0, 5:].set(0)
    return ids, attention_mask


@pytest.mark.slow  # over the fast lane's budget; losses, masks and bf16 attention stay in it
def test_float32_forward_is_strict(tiny_bert_config, tiny_bert_params):
    ids, attention_mask = _inputs(tiny_bert_config.vocab_size)
    model = BertForSequenceClassification(tiny_bert_config)
    with jax.numpy_dtype_promotion("strict"):
        logits = model.apply({"params": tiny_bert_params}, ids, attention_mask)
        trained = model.apply({"params": tiny_bert_params}, ids, attention_mask, deterministic=False,
                              rngs={"dropout": jax.random.key(2)})
        micro = jax.jit(lambda p, i, m: inference_logits(model, p, i, m, microbatch_size=2))(
            tiny_bert_params, ids, attention_mask)
    assert logits.dtype == trained.dtype == micro.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(micro), np.asarray(logits), atol=1e-5)


def test_bfloat16_attention_is_strict():
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 4, 8, 4), jnp.bfloat16) for i in range(3))
    key_mask = jnp.ones((2, 8), bool).at[1, 6:].set(False)
    with jax.numpy_dtype_promotion("strict"):
        whole = attend(q, k, v, key_mask)
        blocked = attend(q, k, v, key_mask, query_block=3)
    assert whole.dtype == blocked.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(blocked, np.float32), np.asarray(whole, np.float32), atol=2e-2)


@pytest.mark.parametrize("method", ["topk", "soft"])
def test_masks_and_schedule_are_strict(tiny_bert_config, tiny_bert_params, method):
    params = tiny_bert_params
    layout = mask.build_layout(params, bert_rules(tiny_bert_config))
    scores = mask.init_scores(layout, jax.nn.initializers.normal(1.0), jax.random.key(3))
    schedule = mask.cubic_keep_schedule(total_steps=10, final_keep_fraction=0.5, initial_warmup_steps=2)
    config = mask.MaskConfig(method=method)

    @jax.jit
    def masked_leaf(params, scores, step):
        keep = schedule(step)
        masked = mask.apply_masks(params, scores, keep, layout, config)
        return keep, masked["encoder"]["layer_0"]["intermediate"]["kernel"]

    with jax.numpy_dtype_promotion("strict"):
        keep, kernel = masked_leaf(params, scores, jnp.int32(6))
        grads = jax.grad(lambda s: jnp.sum(mask.apply_masks(params, s, jnp.float32(0.5), layout, config)
                                           ["encoder"]["layer_1"]["output"]["kernel"]))(scores)
    assert keep.dtype == kernel.dtype == jnp.float32 and 0.5 < float(keep) < 1.0
    assert jax.tree.leaves(grads)[0].dtype == jnp.float32


def test_losses_are_strict():
    student = jax.random.normal(jax.random.key(4), (4, 3), jnp.bfloat16)
    teacher = jax.random.normal(jax.random.key(5), (4, 3), jnp.float32)
    labels = jnp.array([0, 2, 1, 0], jnp.int32)
    weight = jnp.array([1.0, 1.0, 0.0, 1.0], jnp.float32)
    student_hidden = [jax.random.normal(jax.random.key(6 + i), (4, 5, 8), jnp.bfloat16) for i in range(2)]
    teacher_hidden = [jax.random.normal(jax.random.key(8 + i), (4, 5, 8), jnp.float32) for i in range(2)]
    token_mask = jnp.ones((4, 5), jnp.int32).at[0, 3:].set(0)
    with jax.numpy_dtype_promotion("strict"):
        losses = (cross_entropy(student, labels, weight), distillation_loss(student, teacher, 2.0, weight),
                  layer_distillation_loss(student_hidden, teacher_hidden, init_layer_maps(2, 8), token_mask, weight))
    assert all(loss.dtype == jnp.float32 and np.isfinite(float(loss)) for loss in losses)
