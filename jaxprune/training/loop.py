"""The training loop `fit`: epochs of bucketed batches through the one train step.

``fit`` is the loop; its concerns are parts of their own: the model's side (a
:class:`jaxprune.training.task.Task`), checkpoints and the restore policy
(:class:`jaxprune.training.checkpoint.RunCheckpoints`), the divergence guard
(:class:`jaxprune.training.divergence.DivergenceGuard`), the progress bar
(:class:`jaxprune.training.progress.Progress`) and Ctrl-C and SIGTERM (:mod:`jaxprune.interrupts`).

The data order of an epoch is a pure function of ``(seed, epoch)`` and the
dropout key of a step is folded from the state's key by the step number, so a
run restored from a checkpoint replays exactly the batches and randomness it
would have seen, and ends with the same weights (CPU, float32: bit for bit).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxprune import interrupts
from jaxprune.data.batching import EncodedSplit, epoch_plan, make_batch, num_batches
from jaxprune.errors import JaxpruneError
from jaxprune.mask import Pruner
from jaxprune.parallel import Parallel, to_host
from jaxprune.training.checkpoint import NonFiniteStateError, RunCheckpoints
from jaxprune.training.config import TrainConfig
from jaxprune.training.divergence import DivergenceGuard
from jaxprune.training.progress import Progress
from jaxprune.training.step import (
    StepFn,
    TrainState,
    create_train_state,
    make_optimizer,
    make_pruner,
    make_train_step,
)
from jaxprune.training.task import Batch, Params, Task

# What the step gets of a host batch (``index`` only serves to look up cached teacher logits).
_BATCH_FIELDS = ("input_ids", "attention_mask", "token_type_ids", "labels", "weight", "label_weight")
# Steps between two reads of the loss (divergence check and progress bar).
_READ_EVERY = 10


@dataclasses.dataclass
class FitResult:
    state: TrainState
    pruner: Pruner
    params: Any  # the params the model computes with after the last step: masked when pruned
    total_steps: int
    history: list[dict[str, float]]  # per-step metrics of the steps run in this process
    resumed_from_step: int | None
    final_loss: float | None = None  # the last step's loss (kept in checkpoints: also after a resume)


def fit(
    params: Params,
    task: Task,
    config: TrainConfig,
    train: EncodedSplit,
    *,
    teacher_logits: np.ndarray | None = None,
    teacher: tuple[Params, Task] | None = None,
    checkpoint_dir: str | None = None,
    fingerprint: str = "",
    resume: bool = False,
    checkpoint_every: int = 100,
    stop_after_steps: int | None = None,
    description: str = "train",
    parallel: Parallel | None = None,
    log: Callable[[str], Any] = print,
) -> FitResult:
    """Train ``params`` of ``task``'s model (pruning them as ``config.pruning`` says) on ``train``.

    Distillation targets are batch fields: ``teacher_logits`` (N, C) are cached logits for the
    rows of ``train``; ``teacher`` (``(teacher_params, teacher_task)``, e.g. a
    :class:`~jaxprune.training.bert.BertClassification` of the teacher's own config) fills each
    batch's targets with a jitted teacher call instead. Layer distillation needs ``teacher``:
    its hidden states are computed every step (cached ``teacher_logits`` are then unused).

    ``checkpoint_dir`` gets a checkpoint every ``checkpoint_every`` steps, at the end and on
    Ctrl-C (``None``: none); ``resume`` continues its newest one, saying so through ``log``.
    ``stop_after_steps`` stops (after checkpointing) once the state reaches that step.
    ``parallel`` is the mesh (default: data parallel over every device, params replicated); a
    checkpoint resumes on any device count. Ctrl-C and SIGTERM stop the run between two steps:
    the state is saved and :class:`jaxprune.interrupts.Interrupted` raised, naming the checkpoint.
    A nan or inf loss (read every 10 steps and before each checkpoint) or state stops the run
    with a JaxpruneError naming the last good checkpoint; no diverged state is ever saved.
    """
    _check_teacher(task, config, teacher_logits, teacher)
    parallel = parallel if parallel is not None else Parallel.create()
    steps_per_epoch = num_batches(train, config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    pruner = make_pruner(params, task, config, total_steps)
    tx = make_optimizer(config, pruner, total_steps)
    state = create_train_state(params, pruner, tx, config.seed, task.layer_maps(config))
    state_shardings = parallel.shardings(state)
    checkpoints = RunCheckpoints(checkpoint_dir, fingerprint, checkpoint_every, steps_per_epoch)
    state, meta = checkpoints.restore(parallel.put(state, state_shardings), resume)
    step_fn = make_train_step(task.loss_fn(config), pruner, tx, state_shardings)
    batches = _Batches(train, config, parallel, steps_per_epoch, teacher_logits, teacher)
    first_step = int(state.step)
    guard = DivergenceGuard(first_step, description, config.compute_dtype, checkpoints.kept,
                            meta.get("loss") if meta is not None else None)
    end = total_steps if stop_after_steps is None else min(total_steps, stop_after_steps)
    try:
        # Deferred from before the bar shows: a signal sent on seeing it waits for the first step's
        # end and keeps a checkpoint, as one sent later does.
        with interrupts.deferred(), Progress(total_steps, first_step, description) as progress:
            if meta is not None:
                log(f"{description}: resuming from step {first_step} of {total_steps} ({checkpoint_dir})")
            state = _run_steps(state, step_fn, batches, range(first_step, end), guard, checkpoints, progress)
    finally:
        checkpoints.close()
    final = to_host(pruner.apply(state.params, state.scores, total_steps))
    resumed_from = first_step if meta is not None else None
    return FitResult(state, pruner, final, total_steps, guard.host_history(), resumed_from, guard.last_loss())


def _check_teacher(task: Task, config: TrainConfig, teacher_logits: np.ndarray | None,
                   teacher: tuple[Params, Task] | None) -> None:
    if config.distills and teacher_logits is None and teacher is None:
        raise JaxpruneError("distillation needs the teacher: pass teacher_logits or teacher")
    if config.distills_layers:
        if teacher is None:
            raise JaxpruneError("layer distillation computes the teacher's hidden states every step; pass "
                                "teacher=(teacher_params, teacher_task)")
        task.check_layer_teacher(teacher[1])


def _run_steps(state: TrainState, step_fn: StepFn, batches: _Batches, steps: range, guard: DivergenceGuard,
               checkpoints: RunCheckpoints, progress: Progress) -> TrainState:
    """Run ``steps`` and save the last state. Signals wait for the end of a step (see
    :mod:`jaxprune.interrupts`); then the state is saved and :class:`Interrupted` raised."""
    try:
        with interrupts.deferred():
            for step in steps:
                state, metrics = step_fn(state, batches.for_step(step))
                guard.append(metrics)
                progress.advance()
                interrupts.raise_pending()
                if len(guard.history) % _READ_EVERY == 0:
                    guard.check()  # the bar reads the loss here anyway; the ones before it are ready by now
                    progress.show_loss(metrics["loss"])
                if checkpoints.due(step + 1):
                    _save(checkpoints, guard, state)
            _save(checkpoints, guard, state)
    except KeyboardInterrupt as error:
        raise interrupts.stopped_after(error, functools.partial(_save_stopped, checkpoints, guard, state)) from None
    return state


def _save(checkpoints: RunCheckpoints, guard: DivergenceGuard, state: TrainState) -> None:
    """Check the losses, then save ``state``: a diverged run is never saved."""
    guard.check()
    try:
        checkpoints.save(state, guard.last_loss())
    except NonFiniteStateError as error:  # finite losses, but the last update overflowed
        raise guard.diverged("the weights or optimizer state held nan or inf", error.step) from None


def _save_stopped(checkpoints: RunCheckpoints, guard: DivergenceGuard, state: TrainState) -> str:
    """Save an interrupted run; say what is kept and how to continue. A signal that came between
    steps finds the state whole; a KeyboardInterrupt raised inside a step (outside the main
    thread's deferral) may find it donated, and the last periodic checkpoint is kept instead."""
    try:
        _save(checkpoints, guard, state)
        where = (f"a checkpoint at step {int(state.step)} is in {checkpoints.folder}" if checkpoints.folder
                 else "checkpoints were off, so nothing is kept")
    except JaxpruneError:  # a diverged run or a full disk: more to the point than the interrupt
        raise
    except Exception:  # noqa: BLE001 - the state may have been donated mid-step
        where = "the last periodic checkpoint is kept"
    return f"{where}; rerun with the same settings and `resume=True` to continue"


class _Batches:
    """The step's batches on the mesh: the epoch's plan, the fields the step reads, and the
    distillation targets (cached logits looked up by row, or the teacher's jitted call)."""

    def __init__(self, train: EncodedSplit, config: TrainConfig, parallel: Parallel, steps_per_epoch: int,
                 teacher_logits: np.ndarray | None, teacher: tuple[Params, Task] | None):
        self.train, self.config, self.parallel, self.steps_per_epoch = train, config, parallel, steps_per_epoch
        self.rows = parallel.padded_batch_size(config.batch_size)  # weight-0 rows fill the rest
        self.cached = teacher_logits if config.distills else None
        self.teacher_fn = None
        if config.distills and (teacher_logits is None or config.distills_layers):
            self.teacher_params = parallel.put_replicated(teacher[0])
            self.teacher_fn, self.cached = teacher[1].teacher_fn(config), None
        self._epoch, self._plan = None, []

    def for_step(self, step: int) -> Batch:
        """The batch of ``step`` (counted from the run's start)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._plan = epoch_plan(self.train, self.config.batch_size, seed=self.config.seed, epoch=epoch)
        batch = make_batch(self.train, self._plan[index], self.rows)
        host = {name: batch[name] for name in _BATCH_FIELDS}
        if self.cached is not None:
            host["teacher_logits"] = self.cached[batch["index"]]
        inputs = self.parallel.put_batch(host)
        if self.teacher_fn is not None:
            inputs.update(self.teacher_fn(self.teacher_params, inputs))
        return inputs
