"""The cubic keep-fraction schedule of gradual pruning.

Zhu & Gupta (2017) prune with a cubic sparsity ramp; Sanh et al. (2020) use
it for movement pruning with a warm-up before the ramp and a cool-down after
it. In terms of the fraction of weights *kept*, for step ``t``::

    t < t_i                  keep = initial_keep_fraction
    t_i <= t < T - t_f       keep = final + (initial - final) * (1 - (t - t_i) / (T - t_i - t_f)) ** 3
    t >= T - t_f             keep = final_keep_fraction

with ``T = total_steps``, ``t_i = initial_warmup_steps`` and
``t_f = final_warmup_steps``. The schedule is a pure ``jnp`` function of the
step (``clip`` instead of Python ``if``), so it runs inside jit with a traced
step and never causes recompilation.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxprune.errors import JaxpruneError

Schedule = Callable[[jax.Array | int], jax.Array]


def cubic_keep_schedule(
    total_steps: int,
    final_keep_fraction: float,
    initial_warmup_steps: int = 0,
    final_warmup_steps: int = 0,
    initial_keep_fraction: float = 1.0,
) -> Schedule:
    """Build the cubic schedule ``step -> keep_fraction``.

    Args:
      total_steps: ``T``, the number of training steps.
      final_keep_fraction: keep fraction reached at ``T - final_warmup_steps``
        and held after it (``1 - final sparsity``).
      initial_warmup_steps: steps at ``initial_keep_fraction`` before pruning.
      final_warmup_steps: steps at ``final_keep_fraction`` at the end (the
        masks settle while the weights fine-tune).
      initial_keep_fraction: keep fraction during the initial warm-up (1.0).

    Returns:
      A function of an integer step (Python int or traced int/float array)
      returning a float32 scalar in ``[final, initial]``. Steps past
      ``total_steps`` give ``final_keep_fraction``.
    """
    if total_steps < 1 or initial_warmup_steps < 0 or final_warmup_steps < 0:
        raise JaxpruneError(
            f"cubic_keep_schedule: total_steps={total_steps} must be >= 1 and the warm-ups "
            f"({initial_warmup_steps}, {final_warmup_steps}) >= 0"
        )
    if initial_warmup_steps + final_warmup_steps > total_steps:
        raise JaxpruneError(
            f"cubic_keep_schedule: warm-ups {initial_warmup_steps} + {final_warmup_steps} exceed "
            f"total_steps={total_steps}; shorten them"
        )
    for name, value in (("final_keep_fraction", final_keep_fraction), ("initial_keep_fraction", initial_keep_fraction)):
        if not 0.0 <= value <= 1.0:
            raise JaxpruneError(f"cubic_keep_schedule: {name}={value} must be in [0, 1]")
    ramp_steps = total_steps - initial_warmup_steps - final_warmup_steps

    def schedule(step: jax.Array | int) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        if ramp_steps > 0:
            progress = jnp.clip((step - initial_warmup_steps) / ramp_steps, 0.0, 1.0)
        else:  # no ramp: jump to the final value when the initial warm-up ends
            progress = (step >= initial_warmup_steps).astype(jnp.float32)
        return final_keep_fraction + (initial_keep_fraction - final_keep_fraction) * (1.0 - progress) ** 3

    return schedule
