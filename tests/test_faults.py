"""Faults: a diverging loss, a folder already in use, a disk that fills up while checkpointing.

Each must end the run with one JaxpruneError line and leave the newest complete checkpoint usable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import subprocess
import sys
import json
import textwrap
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

import jaxprune.training.loop as fit_lib
from jaxprune.data.batching import epoch_plan
from jaxprune.training.checkpoint import STATE_FORMAT, Checkpointer, NonFiniteStateError, tree_is_finite
from jaxprune.errors import JaxpruneError
from jaxprune.experiment.runlock import LOCK_NAME, hold_folder_lock
from jaxprune.training.step import create_train_state, make_optimizer, make_pruner
from test_pipeline import _resume_setup, leaves_equal


def _step_dirs(folder: Path) -> list[str]:
    """Every entry of a checkpoint folder that orbax made for a step, complete or not."""
    return sorted(p.name for p in folder.iterdir() if p.name[0].isdigit())


# --- nan and inf ---------------------------------------------------------------------------------


@pytest.mark.slow  # training runs (fit)
def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    params, task, config, train, teacher_logits = _resume_setup()  # 3 steps an epoch, 6 in all
    # A nan teacher logit for one row of the third batch makes the distillation loss of step 3 nan
    # (and, through the gradients, every weight after it).
    poisoned = teacher_logits.copy()
    poisoned[epoch_plan(train, config.batch_size, seed=config.seed, epoch=0)[2][0], 1] = np.nan
    folder = tmp_path / "checkpoints"

    with pytest.raises(JaxpruneError) as caught:
        fit_lib.fit(params, task, config, train, teacher_logits=poisoned, checkpoint_dir=str(folder),
                    fingerprint="run-a", checkpoint_every=2, description="student")

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("the training loss became nan at step 3 (student); ")
    assert f"the last good checkpoint (step 2) is kept in {folder}; lower the learning rate" in message
    # The saves at step 4 (after the nan) and at the end were refused: step 2 is all there is.
    assert _step_dirs(folder) == ["2"]
    checkpointer = Checkpointer(folder, "run-a")
    try:
        pruner = make_pruner(params, task, config, 6)
        like = create_train_state(params, pruner, make_optimizer(config, pruner, 6), config.seed)
        state, meta = checkpointer.restore_latest(like)
    finally:
        checkpointer.close()
    assert int(state.step) == 2 and (meta["epoch"], meta["batch"]) == (0, 2)
    assert tree_is_finite(state)
    # ... and it is the state a clean run had at step 2.
    clean = fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits, stop_after_steps=2)
    assert leaves_equal(state, clean.state)


@pytest.mark.slow  # training runs (fit)
def test_weights_that_overflow_under_a_finite_loss_are_not_saved(tmp_path):
    params, task, config, train, teacher_logits = _resume_setup()
    # inf * 0 in the warm-up schedule: the first update turns the weights into nan, while the
    # loss of that step (computed before the update) is still finite.
    config = config.replace(optimizer=dataclasses.replace(config.optimizer, learning_rate=float("inf")))
    folder = tmp_path / "checkpoints"

    with pytest.raises(JaxpruneError) as caught:
        fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits, checkpoint_dir=str(folder),
                    fingerprint="run-a", checkpoint_every=1, description="student")

    assert str(caught.value).startswith(
        f"the weights or optimizer state held nan or inf at step 1 (student); {folder} holds no complete "
        "checkpoint; "
    )
    assert _step_dirs(folder) == []


@pytest.mark.slow  # training runs (fit)
def test_a_nan_loss_without_checkpoints_still_stops_the_run():
    params, task, config, train, teacher_logits = _resume_setup()
    config = dataclasses.replace(config, epochs=1)  # 3 steps: only the final check sees them
    poisoned = teacher_logits.copy()
    poisoned[epoch_plan(train, config.batch_size, seed=config.seed, epoch=0)[1][0], 0] = np.inf

    with pytest.raises(JaxpruneError, match=r"^the training loss became nan at step 2 \(train\); checkpoints were "
                                            r"off, so none is kept; "):
        fit_lib.fit(params, task, config, train, teacher_logits=poisoned)


def test_the_checkpointer_refuses_a_state_holding_nan(tmp_path):
    checkpointer = Checkpointer(tmp_path, "run-a")
    try:
        with pytest.raises(NonFiniteStateError, match=r"^the training state of step 5 holds nan or inf"):
            checkpointer.save(5, {"w": np.array([1.0, np.inf], np.float32), "step": np.int32(5)}, {})
    finally:
        checkpointer.close()
    assert _step_dirs(tmp_path) == []


# --- one run per folder --------------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys
    from jaxprune.experiment.runlock import hold_folder_lock
    try:
        with hold_folder_lock(sys.argv[1]):
            print("held", flush=True)
            sys.stdin.readline()
            raise RuntimeError("leave the block by an exception")
    except RuntimeError:
        print("released", flush=True)
    sys.stdin.readline()
""")

_CONTENDER = textwrap.dedent("""
    import sys
    from jaxprune.errors import JaxpruneError
    from jaxprune.experiment.runlock import hold_folder_lock
    try:
        with hold_folder_lock(sys.argv[1]):
            print("held")
    except JaxpruneError as error:
        sys.exit(f"error: {error}")
""")


def _start_holder(folder: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


@pytest.mark.slow  # other processes
def test_a_second_process_is_refused_until_the_holder_releases_the_lock(tmp_path):
    folder = tmp_path / "run"
    holder = _start_holder(folder)
    try:
        contender = subprocess.run([sys.executable, "-c", _CONTENDER, str(folder)], capture_output=True, text=True,
                                   timeout=120)
        assert contender.returncode == 1 and contender.stdout == ""
        assert contender.stderr == (
            f"error: another run is using the output folder {folder} (lock file {folder / LOCK_NAME}); wait for it "
            "to finish or pass another `output_dir`\n"
        )
        with pytest.raises(JaxpruneError, match=r"another run is using the teacher cache .*`teacher_cache`$"):
            with hold_folder_lock(folder, what="teacher cache", argument="teacher_cache"):
                pass

        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "released\n"  # by the exception, and the holder lives on
        with hold_folder_lock(folder) as lock_file:
            assert lock_file == folder / LOCK_NAME
    finally:
        holder.kill()
        holder.wait()
    # The lock file stays behind; an empty folder apart from it is taken as often as needed.
    assert os.listdir(folder) == [LOCK_NAME]


@pytest.mark.slow  # other processes
def test_a_lock_held_by_a_killed_process_is_free_again(tmp_path):
    folder = tmp_path / "run"
    holder = _start_holder(folder)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert holder.returncode == -signal.SIGKILL
    with hold_folder_lock(folder):
        with pytest.raises(JaxpruneError, match="another run is using"):  # and held once more, by us
            with hold_folder_lock(folder):
                pass


# --- a full disk while checkpointing -------------------------------------------------------------

_TENSORSTORE_NO_SPACE = (
    'RESOURCE_EXHAUSTED: Error writing local file "{dir}/state.orbax-checkpoint-tmp/_sharding": Failed writing: '
    '"{dir}/state.orbax-checkpoint-tmp/_sharding.__lock": Failed to write 20439 bytes to file 7: No space left on '
    "device [os_error_code='28']"
)  # what tensorstore raised when a tmpfs filled up during a save of the array part


def _state(step: int) -> dict:
    return {"params": {"w": np.arange(12, dtype=np.float32).reshape(3, 4) * step, "b": np.full(3, step, np.float32)},
            "step": np.int32(step)}


@pytest.mark.parametrize("fault", ["python", "tensorstore"])
def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fault):
    folder = tmp_path / "checkpoints"
    checkpointer = Checkpointer(folder, "run-a")
    checkpointer.save(0, _state(0), {"epoch": 0, "batch": 0})
    checkpointer.save(3, _state(3), {"epoch": 1, "batch": 0})

    # orbax writes the JSON record in a background thread while tensorstore writes the arrays:
    # half the record goes to disk, then the disk is full.
    async def write_half_then_fail(self, item, directory):
        text = '{"epoch": 2, "batch": 0, "fingerprint": "run-a"}'
        (Path(directory) / "metadata").write_text(text[: len(text) // 2])
        if fault == "python":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise ValueError(_TENSORSTORE_NO_SPACE.format(dir=directory))

    with monkeypatch.context() as patch:
        patch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", write_half_then_fail)
        with pytest.raises(JaxpruneError) as caught:
            checkpointer.save(6, _state(6), {"epoch": 2, "batch": 0})
        checkpointer.close()  # the failed save is not raised a second time

    assert str(caught.value) == (
        f"no space left on device while saving the checkpoint of step 6 in {folder}; the checkpoint of step 3 is "
        "kept: free some space and rerun with `resume=True`"
    )
    # Nothing was deleted early (step 0 would have gone once 6 had committed).
    assert _step_dirs(folder) == ["0", "3", "6.orbax-checkpoint-tmp"]

    again = Checkpointer(folder, "run-a")  # a rerun with --resume
    try:
        assert again.latest_step() == 3
        state, meta = again.restore_latest(_state(0))
        assert leaves_equal(state, _state(3)) and (meta["epoch"], meta["batch"]) == (1, 0)
        # The rerun's next save clears the half-written folder, whichever step it saves.
        again.save(9, _state(9), {"epoch": 3, "batch": 0})
    finally:
        again.close()
    assert _step_dirs(folder) == ["3", "9"]


def test_an_error_that_is_not_the_file_system_is_not_reworded(tmp_path, monkeypatch):
    checkpointer = Checkpointer(tmp_path, "run-a")

    async def fail(self, item, directory):
        raise ValueError("a bug, not a full disk")

    monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", fail)
    with pytest.raises(ValueError, match="a bug, not a full disk"):
        checkpointer.save(1, _state(1), {})
    with contextlib.suppress(ValueError):  # orbax may raise it again on close
        checkpointer.close()


def test_write_json_on_a_full_disk_leaves_neither_file(tmp_path, monkeypatch):
    """results.json is written aside and renamed: a full disk mid-write leaves no half-written file."""
    import pathlib

    from jaxprune.experiment.folders import write_json

    real_write_text = pathlib.Path.write_text

    def half_then_full(self, *args, **kwargs):
        real_write_text(self, '{"half', encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    with pytest.raises(JaxpruneError, match=r"cannot write .*results.json \(No space left on device\)"):
        write_json(tmp_path / "results.json", {"accuracy": 0.9})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # training runs (fit)
def test_a_checkpoint_without_a_state_format_is_refused_in_one_line(tmp_path):
    """A checkpoint whose meta names no ``state_format`` cannot be restored into today's state:
    the resume says so instead of an orbax traceback."""
    params, task, config, train, teacher_logits = _resume_setup()
    folder = tmp_path / "checkpoints"
    fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits, checkpoint_dir=str(folder),
                fingerprint="run-a", stop_after_steps=0)
    meta_file = folder / "0" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    assert meta["state_format"] == STATE_FORMAT
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "state_format"}))

    with pytest.raises(JaxpruneError, match=r"^the checkpoint in .* was written by another jaxprune .* cannot be "
                                            r"resumed; start the run again in a new `checkpoint_dir`$"):
        fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits, checkpoint_dir=str(folder),
                    fingerprint="run-a", resume=True)
