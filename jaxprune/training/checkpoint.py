"""Periodic, atomic checkpoints of the whole training state with orbax.

A checkpoint holds the train state pytree (params, block scores, layer-distillation
maps, the optimizer state, step, RNG key data) and a small JSON record of where the
data order stands (epoch, batch within the epoch) and which run it belongs
to. orbax writes each step into a temporary folder and renames it when
complete, so an interrupted save is never restored.

Faults keep the last complete checkpoint usable:

- a state holding nan or inf is refused before anything is written
  (`NonFiniteStateError`), so every checkpoint on disk can be resumed;
- a failed write (a full disk above all) becomes a one-line JaxpruneError
  naming the step kept. orbax removes old steps only after the new one has
  committed, and at least two are kept, so the previous checkpoint survives
  even a save that fails halfway; the next Checkpointer on the folder deletes
  the half-written temporary folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxprune.errors import JaxpruneError


def _abstract(tree: Any) -> Any:
    # With the target's sharding: a checkpoint written on any device count is restored onto this mesh.
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)


def _without_empty(tree: Any) -> Any:
    """``tree`` with each zero-size leaf as one zero of its dtype: orbax cannot write an empty array,
    and a compacted layer without heads or neurons has some (its key bias is (0,)). Restoring maps
    them back to the target's empty leaves, so their stand-ins never reach a state."""
    return jax.tree_util.tree_map(lambda x: jnp.zeros((1,), x.dtype) if x.size == 0 else x, tree)


@jax.jit
def _leaves_finite(leaves: list[jax.Array]) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def tree_is_finite(tree: Any) -> bool:
    """Whether every floating-point leaf of ``tree`` is free of nan and inf (one device sync)."""
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return not leaves or bool(_leaves_finite(leaves))


class NonFiniteStateError(JaxpruneError):
    """The state of ``step`` holds nan or inf and was not saved; ``kept_step`` is the newest checkpoint (or None)."""

    def __init__(self, step: int, kept_step: int | None, folder: str):
        self.step, self.kept_step, self.folder = step, kept_step, folder
        super().__init__(
            f"the training state of step {step} holds nan or inf, so it was not saved; {kept_clause(kept_step, folder)}"
        )


def kept_clause(kept_step: int | None, folder: str) -> str:
    """Which checkpoint a run that stops now leaves in ``folder``, as a clause of an error message."""
    if kept_step is None:
        return f"{folder} holds no complete checkpoint"
    return f"the last good checkpoint (step {kept_step}) is kept in {folder}"


def _write_errno(error: BaseException) -> int | None:
    """The operating-system error number behind a failed write, or None if ``error`` is not one.

    orbax raises OSError for the files it writes itself; tensorstore (the arrays) raises
    ValueError("RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']").
    """
    if isinstance(error, OSError):
        return error.errno if error.errno is not None else 0
    found = re.search(r"os_error_code='(\d+)'", str(error))
    return int(found.group(1)) if found else None


def _join_threads_started_since(before: set[threading.Thread], timeout_s: float = 60.0) -> None:
    """Wait (at most ``timeout_s`` in all) for the non-daemon threads started since ``before`` to end."""
    deadline = time.monotonic() + timeout_s
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon and thread is not threading.current_thread():
            # orbax's threads re-raise their own failure from join(): more of the same full disk.
            with contextlib.suppress(Exception):
                thread.join(max(0.0, deadline - time.monotonic()))


# The layout of the saved train state (a TrainState: step, params, scores, maps, the optimizer
# state over ((params, maps), scores), rng); a checkpoint of any other is refused.
STATE_FORMAT = 3


class Checkpointer:
    """Save and restore ``(state, meta)`` pairs under ``folder``.

    ``meta`` is a JSON-able dict; ``fingerprint`` identifies the run's
    configuration, and restoring a checkpoint written under another
    fingerprint is refused, so resuming never continues a different run.
    """

    def __init__(self, folder: str | os.PathLike, fingerprint: str, max_to_keep: int = 2):
        if max_to_keep < 2:
            # orbax chooses the steps to delete as a save starts and deletes them once it has
            # committed; keeping two means the previous checkpoint is never among them, even if a
            # failed save slipped past orbax's own check.
            raise ValueError(f"max_to_keep must be at least 2, not {max_to_keep}")
        self.folder = os.path.abspath(os.fspath(folder))
        self.fingerprint = fingerprint
        self._save_failed = False
        self._manager = ocp.CheckpointManager(
            self.folder,
            # A save that died (full disk, kill -9) leaves a "<step>.orbax-checkpoint-tmp" folder
            # behind; it is never restored, and clearing it frees its space and lets that step be
            # saved again. Safe because one run at a time writes here (see jaxprune.experiment.runlock).
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                 cleanup_tmp_directories=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Write ``state`` and ``meta`` as checkpoint ``step`` and wait until it is complete.

        Raises NonFiniteStateError (nothing written) if a float leaf of ``state`` is nan or inf,
        and JaxpruneError if the file system refuses the write (the previous checkpoint is kept).
        """
        step = int(step)
        if not tree_is_finite(state):
            raise NonFiniteStateError(step, self.latest_step(), self.folder)
        kept_step = self.latest_step()
        meta = dict(meta, fingerprint=self.fingerprint, state_format=STATE_FORMAT)
        threads_before = set(threading.enumerate())
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardSave(_without_empty(state)),
                                        meta=ocp.args.JsonSave(meta)),
                force=True,
            )
            # orbax writes in background threads: a write error surfaces here.
            self._manager.wait_until_finished()
        except Exception as error:
            code = _write_errno(error)
            if code is None:
                raise
            self._save_failed = True
            # orbax reports the first failed write while its others run on in their threads; let
            # them end, so nothing writes into the half-written folder once the caller knows (a
            # rerun in this process would clear that folder, and could race them).
            _join_threads_started_since(threads_before)
            problem = os.strerror(code).lower() if code else str(error)
            fix = "free some space" if code == errno.ENOSPC else "fix that"
            kept = ("no complete checkpoint is kept" if kept_step is None
                    else f"the checkpoint of step {kept_step} is kept")
            raise JaxpruneError(
                f"{problem} while saving the checkpoint of step {step} in {self.folder}; {kept}: {fix} and "
                "rerun with `resume=True`"
            ) from error

    def restore_latest(self, like_state: Any) -> tuple[Any, dict[str, Any]] | None:
        """The newest ``(state, meta)``, shaped like ``like_state``; ``None`` if there is none."""
        step = self.latest_step()
        if step is None:
            return None
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta.get("fingerprint") != self.fingerprint:
            raise JaxpruneError(
                f"the checkpoint in {self.folder} belongs to a run with other settings; resume with the "
                f"same settings, or use a new `checkpoint_dir`"
            )
        state_format = meta.get("state_format")
        if state_format != STATE_FORMAT:
            raise JaxpruneError(
                f"the checkpoint in {self.folder} was written by another jaxprune (train state format "
                f"{state_format}, today's is {STATE_FORMAT}) and cannot be resumed; start the run again in a new "
                f"`checkpoint_dir`"
            )
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(_without_empty(like_state))))
        )
        state = jax.tree_util.tree_map(lambda saved, like: like if like.size == 0 else saved, restored["state"],
                                       like_state)
        return state, meta

    def close(self) -> None:
        try:
            self._manager.close()
        except Exception:
            # After a failed save orbax re-raises that save's error on close; it was reported
            # already, and raising it again would hide the one-line message.
            if not self._save_failed:
                raise


class RunCheckpoints:
    """One run's checkpoints: whether it may continue a folder, when it saves, what it keeps.

    ``folder`` None turns checkpoints off (nothing is restored or saved). A checkpoint is saved
    every ``every`` steps, and its meta records where the data order stands (``epoch``, ``batch``
    within it, from the step and ``steps_per_epoch``) and the last loss.
    """

    def __init__(self, folder: str | None, fingerprint: str = "", every: int = 100, steps_per_epoch: int = 1):
        self.folder, self.every, self.steps_per_epoch = folder, every, steps_per_epoch
        self.checkpointer = Checkpointer(folder, fingerprint) if folder else None

    def restore(self, state: Any, resume: bool) -> tuple[Any, dict[str, Any] | None]:
        """``(state, None)`` for a fresh run, or the newest checkpoint's ``(state, meta)``.

        A folder holding a checkpoint is only continued with ``resume`` (so a finished or other
        run is never overwritten), and only by a run of the same fingerprint and state format.
        A refusal closes the checkpointer: its background threads would outlive the run.
        """
        if self.checkpointer is None or self.checkpointer.latest_step() is None:
            return state, None
        try:
            if not resume:
                raise JaxpruneError(
                    f"{self.folder} already holds a checkpoint; pass `resume=True` to continue it or use a new "
                    "`checkpoint_dir`"
                )
            return self.checkpointer.restore_latest(state)
        except BaseException:
            self.checkpointer.close()
            raise

    def due(self, step: int) -> bool:
        """Whether the state of ``step`` is one of the periodic checkpoints."""
        return self.checkpointer is not None and step % self.every == 0

    def save(self, state: Any, loss: float | None) -> None:
        """Save ``state`` (its ``step`` says where) unless it is the newest checkpoint already:
        restored from it, or just saved. Raises as :meth:`Checkpointer.save` does."""
        if self.checkpointer is None:
            return
        # Reading the step from the state (saving reads its arrays anyway): a Ctrl-C between a step
        # and the loop's bookkeeping cannot record a data position out of step with the state.
        step = int(state.step)
        if step == self.checkpointer.latest_step():
            return
        epoch, batch = divmod(step, self.steps_per_epoch)
        self.checkpointer.save(step, state, {"epoch": epoch, "batch": batch, "loss": loss})

    def kept(self) -> str:
        """Which checkpoint a run that stops now leaves, as a clause of an error message."""
        if self.checkpointer is None:
            return "checkpoints were off, so none is kept"
        return kept_clause(self.checkpointer.latest_step(), self.checkpointer.folder)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
