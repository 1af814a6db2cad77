"""Classification and knowledge-distillation losses (float32 whatever the compute dtype).

Besides cross-entropy and Hinton's soft-target loss, CoFi's layer distillation (Xia et al.
2022): the student's hidden states of a few layers, each through a learned linear map,
regress onto the teacher's (:func:`distilled_layers`, :func:`init_layer_maps`,
:func:`layer_distillation_loss`). The maps belong to training, not to the model: they live
in the train state and are dropped when training ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxprune.errors import JaxpruneError

Array = jax.Array
LayerMaps = dict[str, dict[str, Array]]  # "layer_{i}" -> {"kernel": (H, H), "bias": (H,)} float32

# CoFi matches four teacher layers, evenly spaced.
DISTILLED_LAYER_COUNT = 4


def _weighted_mean(per_example: Array, weight: Array | None) -> Array:
    if weight is None:
        return jnp.mean(per_example)
    weight = weight.astype(jnp.float32)
    return jnp.sum(per_example * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def cross_entropy(logits: Array, labels: Array, weight: Array | None = None) -> Array:
    """Mean softmax cross-entropy.

    Args:
      logits: (B, C) any float dtype (computed in float32).
      labels: (B,) int class ids.
      weight: (B,) optional per-example weight; padding rows carry 0.
    Returns:
      float32 scalar.
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return _weighted_mean(-picked, weight)


def distillation_loss(
    student_logits: Array, teacher_logits: Array, temperature: float = 2.0, weight: Array | None = None
) -> Array:
    """Hinton et al.'s soft-target loss ``T^2 * KL(p_teacher^T || p_student^T)``.

    ``p^T = softmax(logits / T)``; the ``T^2`` factor keeps the gradient scale
    independent of the temperature. Both inputs are (B, C); returns a float32 scalar.
    """
    t = jnp.float32(temperature)
    teacher_log_probs = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / t, axis=-1)
    student_log_probs = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, axis=-1)
    kl = jnp.sum(jnp.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
    return t * t * _weighted_mean(kl, weight)


def distilled_layers(num_layers: int, count: int = DISTILLED_LAYER_COUNT) -> tuple[int, ...]:
    """The 0-based encoder layers whose outputs layer distillation matches.

    ``count`` evenly spaced layers ending at the last (12 layers: 2, 5, 8, 11, i.e. the outputs
    of layers 3, 6, 9 and 12; 6 layers: 0, 2, 3, 5), or every layer when there are no more than
    ``count``. Teacher layer ``i`` is matched to student layer ``i``: pruning removes heads and
    neurons, never layers, so both have the same depth.

    >>> distilled_layers(12), distilled_layers(2)
    ((2, 5, 8, 11), (0, 1))
    """
    if num_layers <= count:
        return tuple(range(num_layers))
    return tuple((k + 1) * num_layers // count - 1 for k in range(count))


def _map_name(layer: int) -> str:
    return f"layer_{layer}"  # the encoder's own name for the layer


def init_layer_maps(num_layers: int, hidden_size: int) -> LayerMaps:
    """Identity maps (kernel ``I``, bias 0, float32) for the :func:`distilled_layers` of a
    ``num_layers`` encoder, keyed ``"layer_{i}"`` like the encoder's params."""
    return {
        _map_name(i): {"kernel": jnp.eye(hidden_size, dtype=jnp.float32), "bias": jnp.zeros(hidden_size, jnp.float32)}
        for i in distilled_layers(num_layers)
    }


def layer_distillation_loss(
    student_hidden: Sequence[Array],
    teacher_hidden: Sequence[Array],
    maps: Mapping[str, Mapping[str, Array]],
    attention_mask: Array,
    weight: Array | None = None,
) -> Array:
    """CoFi's layer distillation: the mean over the :func:`distilled_layers` ``i`` of

    ``sum_bt c_bt * mean_h((s_i[b, t] @ W_i + b_i - t_i[b, t])^2) / sum_bt c_bt``

    with ``c_bt = attention_mask[b, t] * weight[b]``: the squared error of the mapped student
    state, averaged over the hidden units, then over the real tokens of the weighted rows
    (padding tokens and weight-0 rows count for nothing). Averaged, not summed, over the
    layers, so a layer weight means the same at any depth.

    Args:
      student_hidden, teacher_hidden: every encoder layer's output, (B, T, H) each, any float
        dtype (computed in float32); both models have the same depth.
      maps: from :func:`init_layer_maps`: a (H, H) ``kernel`` and (H,) ``bias`` per distilled layer.
      attention_mask: (B, T), 1 for tokens, 0 for padding.
      weight: (B,) optional row weight; padding rows carry 0.
    Returns:
      float32 scalar.
    """
    if len(student_hidden) != len(teacher_hidden):
        raise JaxpruneError(f"layer distillation pairs layers of equal depth; the student has {len(student_hidden)} "
                            f"layers and the teacher {len(teacher_hidden)}")
    counts = attention_mask.astype(jnp.float32)
    if weight is not None:
        counts = counts * weight.astype(jnp.float32)[:, None]
    total = jnp.maximum(jnp.sum(counts), 1.0)
    losses = []
    for i in distilled_layers(len(teacher_hidden)):
        layer_map = maps[_map_name(i)]
        # HIGHEST: a float32 loss, not TF32 on GPUs (the identity map then maps exactly).
        mapped = jnp.matmul(student_hidden[i].astype(jnp.float32), layer_map["kernel"],
                            precision=jax.lax.Precision.HIGHEST) + layer_map["bias"]
        error = jnp.mean(jnp.square(mapped - teacher_hidden[i].astype(jnp.float32)), axis=-1)  # (B, T)
        losses.append(jnp.sum(error * counts) / total)
    return jnp.mean(jnp.stack(losses))
