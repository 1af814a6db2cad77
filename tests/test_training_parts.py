"""The parts of training, each on its own: the divergence guard, the checkpoint restore policy,
the progress bar, the interruption, and the generic step and fit on a model that is not a BERT."""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import signal
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import interrupts, mask
from jaxprune.errors import JaxpruneError
from jaxprune.training import loop
from jaxprune.training import step as train_lib
from jaxprune.training.checkpoint import RunCheckpoints
from jaxprune.training.config import DistillationConfig, OptimizerConfig, PruningConfig, TrainConfig
from jaxprune.training.divergence import DivergenceGuard
from jaxprune.training.losses import cross_entropy, distillation_loss
from jaxprune.training.progress import Progress
from test_pipeline import keyword_task, leaves_equal

# --- the divergence guard ------------------------------------------------------------------------


def _rows(*losses: float) -> list[dict[str, jax.Array]]:
    return [{"loss": jnp.float32(loss), "ce": jnp.float32(2 * loss)} for loss in losses]


def test_the_guard_names_the_step_of_the_first_bad_loss_and_what_is_kept():
    guard = DivergenceGuard(first_step=10, description="student", kept=lambda: "the checkpoint of step 8 is kept")
    for row in _rows(1.0, 0.5):
        guard.append(row)
    guard.check()
    for row in _rows(0.4, np.inf, np.nan):
        guard.append(row)
    with pytest.raises(JaxpruneError) as caught:
        guard.check()
    # Steps 11 and 12 were finite; the first bad loss (inf) is the fourth after step 10.
    assert str(caught.value) == ("the training loss became inf at step 14 (student); the checkpoint of step 8 is "
                                 "kept; lower the learning rate and start a new run (resuming would diverge again)")


def test_the_guard_suggests_float32_only_below_float32_and_reads_each_loss_once():
    guard = DivergenceGuard(first_step=0, description="train", compute_dtype="bfloat16")
    message = str(guard.diverged("the weights held nan", 3))
    assert message.startswith("the weights held nan at step 3 (train); checkpoints were off, so none is kept; ")
    assert 'lower the learning rate or use `compute_dtype="float32"` and start a new run' in message
    for row in _rows(1.0, 2.0):
        guard.append(row)
    guard.check()
    guard.history[0]["loss"] = jnp.float32(np.nan)  # already checked: not read again
    guard.check()
    guard.append(_rows(np.nan)[0])
    with pytest.raises(JaxpruneError, match="at step 3 "):
        guard.check()


def test_the_guard_keeps_the_history_and_the_last_loss():
    guard = DivergenceGuard(first_step=4, description="train", restored_loss=0.75)
    assert guard.last_loss() == 0.75  # a resumed run before its first step
    for row in _rows(0.5, 0.25):
        guard.append(row)
    assert guard.last_loss() == 0.25
    assert guard.host_history() == [{"loss": 0.5, "ce": 1.0}, {"loss": 0.25, "ce": 0.5}]
    assert all(type(v) is float for row in guard.host_history() for v in row.values())


# --- checkpoints: the restore policy -------------------------------------------------------------


def _tiny_state(step: int = 0, value: float = 1.0) -> train_lib.TrainState:
    params = {"dense": {"kernel": jnp.full((2, 3), value), "bias": jnp.zeros(3)}}
    pruner = mask.Pruner.from_rules(params, [])
    state = train_lib.create_train_state(params, pruner, train_lib.make_optimizer(TrainConfig(), pruner, 10), seed=0)
    return state.replace(step=jnp.int32(step))


def test_checkpoints_off_restore_nothing_and_save_nothing(tmp_path):
    checkpoints = RunCheckpoints(None)
    state = _tiny_state()
    restored, meta = checkpoints.restore(state, resume=True)
    assert restored is state and meta is None
    assert not checkpoints.due(100)
    checkpoints.save(state, 1.0)
    assert checkpoints.kept() == "checkpoints were off, so none is kept"
    checkpoints.close()


def test_a_saved_step_records_its_data_position_and_resumes_only_when_asked(tmp_path):
    folder = str(tmp_path / "ckpt")
    checkpoints = RunCheckpoints(folder, "run-a", every=2, steps_per_epoch=3)
    fresh, meta = checkpoints.restore(_tiny_state(), resume=False)  # an empty folder starts afresh
    assert meta is None and int(fresh.step) == 0
    assert [checkpoints.due(step) for step in range(1, 5)] == [False, True, False, True]
    saved = _tiny_state(step=7, value=2.0)
    checkpoints.save(saved, 0.5)
    checkpoints.save(_tiny_state(step=7, value=3.0), 0.1)  # the newest checkpoint already: not written again
    assert checkpoints.kept() == f"the last good checkpoint (step 7) is kept in {tmp_path / 'ckpt'}"
    checkpoints.close()

    again = RunCheckpoints(folder, "run-a", steps_per_epoch=3)
    with pytest.raises(JaxpruneError, match=r"already holds a checkpoint; pass `resume=True` to continue it"):
        again.restore(_tiny_state(), resume=False)
    again = RunCheckpoints(folder, "run-a", steps_per_epoch=3)
    restored, meta = again.restore(_tiny_state(), resume=True)
    again.close()
    assert (meta["epoch"], meta["batch"], meta["loss"]) == (2, 1, 0.5)  # step 7 = 2 epochs of 3 and 1 batch
    assert leaves_equal(restored, saved)

    other = RunCheckpoints(folder, "run-b")
    with pytest.raises(JaxpruneError, match="belongs to a run with other settings"):
        other.restore(_tiny_state(), resume=True)


# --- progress ------------------------------------------------------------------------------------


def test_the_progress_bar_counts_from_a_resumed_step_and_shows_the_loss():
    out = io.StringIO()
    with Progress(total=5, initial=2, description="student", file=out) as progress:
        progress.advance()
        progress.show_loss(jnp.float32(0.25))
        progress.advance()
        assert progress.done == 4
    text = out.getvalue()
    assert "student" in text and "4/5" in text and "loss=0.250" in text


# --- interruption --------------------------------------------------------------------------------


def test_an_interrupted_run_is_saved_whole_before_it_stops():
    saved = []

    def save() -> str:
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C during the save
        time.sleep(0.01)
        saved.append(True)
        return "a checkpoint at step 4 is in ckpt"

    with interrupts.handle_signals():
        stopped = interrupts.stopped_after(interrupts.Interrupted(signal.SIGTERM), save)
    assert saved == [True] and stopped.exit_status == 143
    assert stopped.message == "interrupted; a checkpoint at step 4 is in ckpt"
    assert interrupts.stopped_after(KeyboardInterrupt(), lambda: "x").exit_status == 130


def test_a_save_that_fails_for_a_reason_of_its_own_says_so_instead_of_the_interrupt():
    def full_disk() -> str:
        raise JaxpruneError("no space left on device while saving")

    with pytest.raises(JaxpruneError, match="no space left"):
        interrupts.stopped_after(KeyboardInterrupt(), full_disk)


def test_raise_pending_raises_the_signal_held_back_once():
    interrupts.raise_pending()  # nothing pending: nothing raised
    with interrupts.handle_signals():
        with pytest.raises(interrupts.Interrupted) as raised:
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)
                interrupts.raise_pending()
    assert raised.value.exit_status == 143 and interrupts.pending() is None


def test_a_state_donated_mid_step_keeps_the_last_periodic_checkpoint(tmp_path):
    state = _tiny_state(step=3)
    jax.tree_util.tree_map(lambda leaf: leaf.delete(), state)  # what a step that was cut off leaves
    checkpoints = RunCheckpoints(str(tmp_path / "ckpt"), "run-a")
    said = loop._save_stopped(checkpoints, DivergenceGuard(3, "train"), state)
    checkpoints.close()
    assert said == "the last periodic checkpoint is kept; rerun with the same settings and `resume=True` to continue"
    whole = RunCheckpoints(str(tmp_path / "other"), "run-a")
    assert loop._save_stopped(whole, DivergenceGuard(3, "train"), _tiny_state(step=3)).startswith(
        f"a checkpoint at step 3 is in {tmp_path / 'other'};")
    whole.close()


# --- a model that is not a BERT, through the generic step and fit ---------------------------------


class BagOfWords(nn.Module):
    """Mean of the token embeddings, one hidden layer, logits: nothing of BERT."""

    vocab_size: int = 64
    hidden: int = 16
    classes: int = 3

    @nn.compact
    def __call__(self, input_ids, attention_mask, *, deterministic: bool = True):
        real = attention_mask[..., None].astype(jnp.float32)
        pooled = (nn.Embed(self.vocab_size, 8, name="embed")(input_ids) * real).sum(1) / real.sum(1)
        hidden = nn.relu(nn.Dense(self.hidden, name="hidden")(pooled))
        hidden = nn.Dropout(0.1, deterministic=deterministic)(hidden)
        return nn.Dense(self.classes, name="out")(hidden)


def bag_of_words_loss(params, maps, batch, dropout_key, *, model, distillation):
    logits = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"], deterministic=False,
                         rngs={"dropout": dropout_key})
    ce = cross_entropy(logits, batch["labels"], batch["weight"])
    if distillation is None:
        return ce, {"ce": ce}
    kd = distillation_loss(logits, batch["teacher_logits"], distillation.temperature, batch["weight"])
    return distillation.alpha_ce * ce + distillation.alpha_kd * kd, {"ce": ce, "kd": kd}


@dataclasses.dataclass(frozen=True)
class BagOfWordsTask:
    """The five methods a model needs to be trained and pruned: hidden units are pruned whole."""

    model: BagOfWords = BagOfWords()

    def loss_fn(self, config):
        return functools.partial(bag_of_words_loss, model=self.model, distillation=config.distillation)

    def pruning_rules(self, pruning):
        members = (mask.GroupMember(r"hidden/kernel$", 1), mask.GroupMember(r"hidden/bias$", 0),
                   mask.GroupMember(r"out/kernel$", 0))
        return [mask.GroupRule(members, name="hidden units")]

    def layer_maps(self, config):
        return {}

    def teacher_fn(self, config):
        return jax.jit(lambda params, batch: {
            "teacher_logits": self.model.apply({"params": params}, batch["input_ids"], batch["attention_mask"])})

    def check_layer_teacher(self, teacher):
        raise JaxpruneError("this model has no layers to distil")


def _bag_of_words_params(seed: int):
    ids = jnp.ones((1, 8), jnp.int32)
    return BagOfWords().init(jax.random.key(seed), ids, jnp.ones_like(ids))["params"]


@pytest.mark.slow  # a training run (fit)
def test_fit_trains_and_prunes_a_model_that_is_not_a_bert():
    params, task = _bag_of_words_params(0), BagOfWordsTask()
    config = TrainConfig(epochs=6, batch_size=8, optimizer=OptimizerConfig(learning_rate=3e-2, warmup_fraction=0.0),
                         pruning=PruningConfig(sparsity=0.5, warmup_fraction=0.0, cooldown_fraction=0.2),
                         distillation=DistillationConfig())
    teacher = (_bag_of_words_params(1), task)
    result = loop.fit(params, task, config, keyword_task(48, seed=1), teacher=teacher, log=lambda m: None)

    losses = [row["loss"] for row in result.history]
    assert len(losses) == result.total_steps == 36 and np.all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
    assert result.history[-1]["keep_fraction"] == pytest.approx(0.5) and result.history[0]["kd"] > 0
    # Half the hidden units are gone: their kernel columns, biases and output rows are zero.
    dead = np.all(np.asarray(result.params["hidden"]["kernel"]) == 0, axis=0)
    assert dead.sum() == 8
    assert not np.any(np.asarray(result.params["out"]["kernel"])[dead])
    assert np.all(np.asarray(result.params["out"]["kernel"])[~dead].any(axis=1))
    assert leaves_equal(result.params["embed"], result.state.params["embed"])  # unpruned leaves unmasked


def test_the_step_adds_the_pruners_penalty_to_the_models_loss():
    params, task = _bag_of_words_params(0), BagOfWordsTask()
    config = TrainConfig(batch_size=8, pruning=PruningConfig(method="soft", soft_penalty=0.5))
    pruner = train_lib.make_pruner(params, task, config, 4)
    tx = train_lib.make_optimizer(config, pruner, 4)
    state = train_lib.create_train_state(params, pruner, tx, config.seed)
    batch = {name: jnp.asarray(value) for name, value in
             loop.make_batch(keyword_task(8), np.arange(8), 8).items() if name != "index"}
    step_fn = train_lib.make_train_step(task.loss_fn(config), pruner, tx)
    new_state, metrics = step_fn(jax.tree_util.tree_map(jnp.copy, state), batch)

    dropout_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), 0)
    model_loss, _ = task.loss_fn(config)(pruner.apply(state.params, state.scores, 0), {}, batch, dropout_key)
    penalty = pruner.penalty(state.scores)
    assert float(metrics["penalty"]) == pytest.approx(float(penalty), rel=1e-6) and float(penalty) > 0
    assert float(metrics["loss"]) == pytest.approx(float(model_loss + penalty), rel=1e-6)
    new_state, _ = step_fn(new_state, batch)  # the first step's learning rate is 0 (warm-up)
    assert int(new_state.step) == 2 and not leaves_equal(new_state.scores, state.scores)


def test_layer_distillation_asks_the_model_whether_the_teacher_fits():
    params, task = _bag_of_words_params(0), BagOfWordsTask()
    config = TrainConfig(batch_size=8, distillation=DistillationConfig(layer_weight=1.0))
    with pytest.raises(JaxpruneError, match="no layers to distil"):
        loop.fit(params, task, config, keyword_task(8), teacher=(params, task))
    with pytest.raises(JaxpruneError, match=r"pass teacher=\(teacher_params, teacher_task\)"):
        loop.fit(params, task, config, keyword_task(8), teacher_logits=np.zeros((8, 3), np.float32))
