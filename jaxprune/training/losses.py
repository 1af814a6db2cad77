"""Classification and knowledge-distillation losses (float32 whatever the compute dtype)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


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
