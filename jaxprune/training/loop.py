"""The training loop `fit`: epochs of bucketed batches, progress, checkpoints and resume.

The data order of an epoch is a pure function of ``(seed, epoch)`` and the
dropout key of a step is folded from the state's key by the step number, so a
run restored from a checkpoint replays exactly the batches and randomness it
would have seen, and ends with the same weights (CPU, float32: bit for bit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxprune import interrupts
from jaxprune.data.batching import EncodedSplit, epoch_plan, make_batch, num_batches
from jaxprune.errors import JaxpruneError
from jaxprune.mask import Pruner
from jaxprune.models.config import BertConfig
from jaxprune.training.checkpoint import Checkpointer, NonFiniteStateError, kept_clause
from jaxprune.training.config import TrainConfig
from jaxprune.training.parallel import Parallel, to_host
from jaxprune.training.step import (
    MODEL_INPUTS,
    TrainState,
    create_train_state,
    make_optimizer,
    make_teacher_fn,
    make_train_step,
)

_BATCH_FIELDS = (*MODEL_INPUTS, "labels", "weight", "label_weight")


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
    params: Any,
    model_config: BertConfig,
    config: TrainConfig,
    train: EncodedSplit,
    *,
    teacher_logits: np.ndarray | None = None,
    teacher: tuple[Any, BertConfig] | None = None,
    checkpoint_dir: str | None = None,
    fingerprint: str = "",
    resume: bool = False,
    checkpoint_every: int = 100,
    stop_after_steps: int | None = None,
    description: str = "train",
    parallel: Parallel | None = None,
    log: Callable[[str], Any] = print,
) -> FitResult:
    """Train ``params`` (pruning them as ``config.pruning`` says) on ``train``.

    Distillation targets are a batch field either way: ``teacher_logits`` (N, C) are cached
    logits for the rows of ``train`` (the default); ``teacher`` (``(teacher_params,
    teacher_config)``) fills each batch's targets with a jitted teacher call instead. Layer
    distillation (``config.distillation.layer_weight > 0``) needs ``teacher``: the teacher's
    hidden states are computed every step, and its logits from the same call are the KD
    targets (cached ``teacher_logits`` are then unused). The teacher runs with its own
    config; it must have the student's depth and hidden size.

    Args:
      checkpoint_dir: where orbax checkpoints go (every ``checkpoint_every``
        steps, at the end and on Ctrl-C); ``None`` disables them.
      resume: continue from the newest checkpoint in ``checkpoint_dir``.
      log: where the line saying from which step a resumed run continues goes.
      stop_after_steps: stop (after checkpointing) once the state reaches this
        step, as if interrupted; tests use it to cut a run short.
      parallel: the mesh and parameter sharding (:class:`jaxprune.training.parallel.Parallel`);
        default: data parallel over every device, params replicated. A checkpoint resumes on
        any device count.

    Ctrl-C and SIGTERM (in the main thread) stop the run between two steps: the state is saved
    and :class:`jaxprune.interrupts.Interrupted` raised, its message naming the checkpoint.

    Raises JaxpruneError when the loss becomes nan or inf (found where the
    progress bar reads it, every 10 steps, and before each checkpoint) or the
    state to be saved holds nan or inf: no checkpoint of a diverged state is
    ever written, and the message names the last good one.
    """
    if config.distills and teacher_logits is None and teacher is None:
        raise JaxpruneError("distillation needs the teacher: pass teacher_logits or teacher")
    if config.distills_layers:
        _check_layer_teacher(model_config, teacher)
    steps_per_epoch = num_batches(train, config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    pruner = (config.pruning.build(params, model_config, total_steps) if config.pruning is not None
              else Pruner.from_rules(params, []))
    tx = make_optimizer(config, pruner, total_steps)
    parallel = parallel if parallel is not None else Parallel.create()
    state = create_train_state(params, config, pruner, tx, model_config)
    state_shardings = parallel.shardings(state)
    state = parallel.put(state, state_shardings)
    rows_per_step = parallel.padded_batch_size(config.batch_size)  # weight-0 rows fill the rest

    checkpointer = Checkpointer(checkpoint_dir, fingerprint) if checkpoint_dir else None
    epoch, next_batch, resumed_from, restored_loss = 0, 0, None, None
    if checkpointer is not None and checkpointer.latest_step() is not None:
        try:
            if not resume:
                raise JaxpruneError(
                    f"{checkpoint_dir} already holds a checkpoint; pass `resume=True` to continue it or use a new "
                    "`checkpoint_dir`"
                )
            state, meta = checkpointer.restore_latest(state)
        except BaseException:
            checkpointer.close()  # its background threads would outlive a refused run
            raise
        epoch, next_batch, resumed_from = int(meta["epoch"]), int(meta["batch"]), int(state.step)
        restored_loss = meta.get("loss")

    step_fn = make_train_step(model_config, config, pruner, tx, state_shardings)
    teacher_fn = None
    if config.distills and (teacher_logits is None or config.distills_layers):
        teacher_params = parallel.put_replicated(teacher[0])
        teacher_fn = make_teacher_fn(teacher[1], config.compute_dtype, hidden=config.distills_layers)

    def last_loss() -> float | None:
        return float(history_arrays[-1]["loss"]) if history_arrays else restored_loss

    def finished() -> FitResult:
        final = to_host(pruner.apply(state.params, state.scores, total_steps))
        return FitResult(state, pruner, final, total_steps, _to_host(history_arrays), resumed_from, last_loss())

    def diverged(what: str, at_step: int) -> JaxpruneError:
        if checkpointer is None:
            kept = "checkpoints were off, so none is kept"
        else:
            kept = kept_clause(checkpointer.latest_step(), checkpointer.folder)
        precision = ' or use `compute_dtype="float32"`' if config.compute_dtype != "float32" else ""
        # Resuming is exact, so it would diverge at the same step again; and a run with other
        # settings cannot resume this one's checkpoint: the fix is a new run.
        return JaxpruneError(
            f"{what} at step {at_step} ({description}); {kept}; lower the learning rate{precision} and start "
            "a new run (resuming would diverge again)"
        )

    def check_losses() -> None:
        """Raise if a loss since the last check is nan or inf (one transfer of the new scalars)."""
        nonlocal checked
        losses = np.asarray(jax.device_get([row["loss"] for row in history_arrays[checked:]]), np.float32)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            first = checked + int(bad[0])
            raise diverged(f"the training loss became {losses[bad[0]]}", first_step + first + 1)
        checked = len(history_arrays)

    def save() -> None:
        check_losses()
        if checkpointer is not None:
            # The data position follows from the step alone: a Ctrl-C between a step and the
            # loop's bookkeeping below it cannot record a position out of step with the state.
            # (Saving reads the arrays anyway, so reading state.step here costs no extra sync.)
            saved_step = int(state.step)
            if saved_step == checkpointer.latest_step():
                return  # the state was restored from (or just saved as) this checkpoint: nothing new
            done_epochs, done_batches = divmod(saved_step, steps_per_epoch)
            try:
                checkpointer.save(saved_step, state, {"epoch": done_epochs, "batch": done_batches, "loss": last_loss()})
            except NonFiniteStateError as error:  # finite losses, but the last update overflowed
                raise diverged("the weights or optimizer state held nan or inf", error.step) from None

    # The step count lives on the host too: reading state.step would block every step on the
    # device and stop the next batch from being prepared while this one computes.
    step = first_step = int(state.step)
    history_arrays: list[dict[str, Any]] = []
    checked = 0  # history_arrays[:checked] hold finite losses
    # Ctrl-C and SIGTERM are only recorded here and acted on between steps (a signal never
    # stops a jitted step or a checkpoint save half way); see jaxprune.interrupts.
    bar = None
    try:
        with interrupts.deferred():
            bar = tqdm(total=total_steps, initial=step, desc=description, unit="step", dynamic_ncols=True)
            if resumed_from is not None:
                log(f"{description}: resuming from step {resumed_from} of {total_steps} ({checkpoint_dir})")
            while epoch < config.epochs:
                plan = epoch_plan(train, config.batch_size, seed=config.seed, epoch=epoch)
                while next_batch < len(plan):
                    if stop_after_steps is not None and step >= stop_after_steps:
                        save()
                        return finished()
                    batch = make_batch(train, plan[next_batch], rows_per_step)
                    host = {k: batch[k] for k in _BATCH_FIELDS}
                    if teacher_fn is None and config.distills:
                        host["teacher_logits"] = teacher_logits[batch["index"]]
                    inputs = parallel.put_batch(host)
                    if teacher_fn is not None:
                        inputs.update(teacher_fn(teacher_params, inputs))
                    state, metrics = step_fn(state, inputs)
                    step, next_batch = step + 1, next_batch + 1
                    history_arrays.append(metrics)
                    bar.update(1)
                    if interrupts.pending() is not None:
                        raise interrupts.take_pending()
                    if len(history_arrays) % 10 == 0:
                        # The bar reads the loss here anyway; the losses before it are ready by now.
                        check_losses()
                        bar.set_postfix(loss=f"{float(metrics['loss']):.3f}")
                    if checkpointer is not None and step % checkpoint_every == 0:
                        save()
                epoch, next_batch = epoch + 1, 0
            save()
    except KeyboardInterrupt as error:
        raise _interrupted(error, save, lambda: int(state.step), checkpoint_dir) from None
    finally:
        if bar is not None:
            bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return finished()


def _interrupted(error: KeyboardInterrupt, save: Callable[[], None], saved_step: Callable[[], int],
                 checkpoint_dir: str | None) -> interrupts.Interrupted:
    """The :class:`Interrupted` to raise for ``error``, once the state is saved: its message says
    where the checkpoint is and how to continue. A signal that came between steps finds the state
    whole; a KeyboardInterrupt raised inside a step (outside the main thread's deferral) may find
    it donated, and the last periodic checkpoint is kept instead."""
    with interrupts.deferred(raise_pending=False):  # a second signal must not stop the save half way
        try:
            save()
            where = (f"a checkpoint at step {saved_step()} is in {checkpoint_dir}" if checkpoint_dir
                     else "checkpoints were off, so nothing is kept")
        except JaxpruneError:  # a diverged run or a full disk: more to the point than the interrupt
            raise
        except Exception:  # noqa: BLE001 - the state may have been donated mid-step
            where = "the last periodic checkpoint is kept"
    interrupted = error if isinstance(error, interrupts.Interrupted) else interrupts.Interrupted()
    return interrupted.with_message(
        f"interrupted; {where}; rerun with the same settings and `resume=True` to continue")


def _check_layer_teacher(model_config: BertConfig, teacher: tuple[Any, BertConfig] | None) -> None:
    if teacher is None:
        raise JaxpruneError("layer distillation computes the teacher's hidden states every step; pass "
                            "teacher=(teacher_params, teacher_config)")
    teacher_config = teacher[1]
    if (teacher_config.num_hidden_layers, teacher_config.hidden_size) != (model_config.num_hidden_layers,
                                                                           model_config.hidden_size):
        raise JaxpruneError(
            f"layer distillation pairs layers of the same size: the teacher has {teacher_config.num_hidden_layers} "
            f"layers of {teacher_config.hidden_size}, the student {model_config.num_hidden_layers} of "
            f"{model_config.hidden_size}; turn it off (layer_weight 0) for this student")


def _to_host(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in jax.device_get(history)]
