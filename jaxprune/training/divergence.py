"""The divergence guard: a run whose loss becomes nan or inf stops, in one line that says what is kept.

The guard holds the metrics of the steps run in this process as the step returned them
(device arrays), so that no step waits for the device: :meth:`DivergenceGuard.check` reads
the losses added since the last check in one transfer. The loop checks every few steps and
before each checkpoint, so no checkpoint of a diverged run is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxprune.errors import JaxpruneError


class DivergenceGuard:
    """The metrics of the steps after ``first_step`` and the check that their losses are finite.

    Args:
      first_step: the state's step before the first metrics added (the restored step on resume).
      description: the run's name in messages (``"student"``).
      compute_dtype: the run's; below float32 the message also suggests float32.
      kept: says which checkpoint a run that stops now leaves, as a clause of the message.
      restored_loss: the loss a resumed run's checkpoint recorded (:meth:`last_loss` before any step).
    """

    def __init__(self, first_step: int, description: str, compute_dtype: str = "float32",
                 kept: Callable[[], str] = lambda: "checkpoints were off, so none is kept",
                 restored_loss: float | None = None):
        self.first_step, self.description, self.compute_dtype = first_step, description, compute_dtype
        self.kept, self.restored_loss = kept, restored_loss
        self.history: list[dict[str, Any]] = []
        self._checked = 0  # history[:_checked] hold finite losses

    def append(self, metrics: dict[str, Any]) -> None:
        self.history.append(metrics)

    def check(self) -> None:
        """Raise JaxpruneError if a loss added since the last check is nan or inf."""
        new = [row["loss"] for row in self.history[self._checked:]]
        losses = np.asarray(jax.device_get(new), np.float32)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            at_step = self.first_step + self._checked + int(bad[0]) + 1
            raise self.diverged(f"the training loss became {losses[bad[0]]}", at_step)
        self._checked = len(self.history)

    def diverged(self, what: str, at_step: int) -> JaxpruneError:
        """The error that stops a run where ``what`` happened at ``at_step``."""
        precision = ' or use `compute_dtype="float32"`' if self.compute_dtype != "float32" else ""
        # Resuming is exact, so it would diverge at the same step again; and a run with other
        # settings cannot resume this one's checkpoint: the fix is a new run.
        return JaxpruneError(
            f"{what} at step {at_step} ({self.description}); {self.kept()}; lower the learning rate{precision} and "
            "start a new run (resuming would diverge again)"
        )

    def last_loss(self) -> float | None:
        """The newest step's loss (the restored one before any step of this process)."""
        return float(self.history[-1]["loss"]) if self.history else self.restored_loss

    def host_history(self) -> list[dict[str, float]]:
        """The metrics as Python floats, one dict per step."""
        return [{k: float(v) for k, v in row.items()} for row in jax.device_get(self.history)]
