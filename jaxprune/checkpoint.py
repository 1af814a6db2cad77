"""Periodic, atomic checkpoints of the whole training state with orbax.

A checkpoint holds the train state pytree (params, block scores, both
optimizer states, step, RNG key data) and a small JSON record of where the
data order stands (epoch, batch within the epoch) and which run it belongs
to. orbax writes each step into a temporary folder and renames it when
complete, so an interrupted save is never restored.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxprune.errors import JaxpruneError


def _abstract(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


class Checkpointer:
    """Save and restore ``(state, meta)`` pairs under ``folder``.

    ``meta`` is a JSON-able dict; ``fingerprint`` identifies the run's
    configuration, and restoring a checkpoint written under another
    fingerprint is refused, so ``--resume`` never continues a different run.
    """

    def __init__(self, folder: str | os.PathLike, fingerprint: str, max_to_keep: int = 2):
        self.folder = os.path.abspath(os.fspath(folder))
        self.fingerprint = fingerprint
        self._manager = ocp.CheckpointManager(
            self.folder,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        meta = dict(meta, fingerprint=self.fingerprint)
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore_latest(self, like_state: Any) -> tuple[Any, dict[str, Any]] | None:
        """The newest ``(state, meta)``, shaped like ``like_state``; ``None`` if there is none."""
        step = self.latest_step()
        if step is None:
            return None
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta.get("fingerprint") != self.fingerprint:
            raise JaxpruneError(
                f"the checkpoint in {self.folder} belongs to a run with other settings; resume with the "
                f"same flags, or use a new --output-dir"
            )
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like_state)))
        )
        return restored["state"], meta

    def close(self) -> None:
        self._manager.close()
