"""The training progress bar: steps done of the run's total, and the loss now and then."""

from __future__ import annotations

from typing import IO, Any

from tqdm.auto import tqdm


class Progress:
    """A context manager around a tqdm bar of ``total`` steps that starts at ``initial`` (a
    resumed run's step). :meth:`show_loss` reads a loss from the device, so the loop calls it
    only every few steps, where it reads the losses anyway."""

    def __init__(self, total: int, initial: int, description: str, file: IO[str] | None = None):
        self.total, self.initial, self.description, self.file = total, initial, description, file
        self._bar: Any = None

    def __enter__(self) -> Progress:
        self._bar = tqdm(total=self.total, initial=self.initial, desc=self.description, unit="step",
                         dynamic_ncols=True, file=self.file)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bar.close()

    def advance(self) -> None:
        """One step done."""
        self._bar.update(1)

    def show_loss(self, loss: Any) -> None:
        self._bar.set_postfix(loss=f"{float(loss):.3f}")

    @property
    def done(self) -> int:
        """Steps done, counting from 0 (a resumed run's bar starts at its step)."""
        return int(self._bar.n)
