"""Interrupts: Ctrl-C (SIGINT) and SIGTERM stop a run the same way wherever its output goes.

The unit tests send real signals to this process; the run tests start ``experiments/run.py``
on a tiny model, its output going through a pipe to a reader that either lives (this test,
reading to the end) or exits first (the read end is closed, as when ``| tee`` dies with the
Ctrl-C), send the signal in one phase of the run (teacher training, teacher evaluation, student
training, compaction, fine-tuning) and check: the exit status, the message, that a checkpoint
is kept, and that ``--resume`` finishes with the uninterrupted run's results. The stress test
interrupts one run 20 times at seeded random moments.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxprune import interrupts
from jaxprune.models.bert import init_params
from jaxprune.models.config import BertConfig
from jaxprune.models.loading import save_pretrained

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "experiments" / "run.py"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
CRASHES = (-signal.SIGSEGV, -signal.SIGABRT, 128 + signal.SIGSEGV, 128 + signal.SIGABRT)
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


# --- the interrupts module, in this process ---------------------------------------------------------


def test_a_signal_inside_deferred_waits_for_the_holder():
    with interrupts.handle_signals():
        with pytest.raises(interrupts.Interrupted) as raised:
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)  # the handler has run by now, and raised nothing
                assert interrupts.pending() == signal.SIGTERM
                reached = True
    assert reached and raised.value.exit_status == 143 and interrupts.pending() is None


def test_handle_signals_raises_interrupted_with_the_status_of_its_signal():
    for signum, status in STATUS.items():
        with pytest.raises(KeyboardInterrupt) as raised:
            with interrupts.handle_signals():
                os.kill(os.getpid(), signum)
                time.sleep(1)
        assert interrupts.exit_status(raised.value) == status
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_a_signal_swallowed_where_it_landed_still_stops_the_run_at_the_next_safe_point():
    with interrupts.handle_signals():
        try:  # a finalizer or a library's broad except that eats the KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except BaseException:  # noqa: BLE001
            pass
        os.kill(os.getpid(), signal.SIGINT)  # a second one is ignored while stopping
        time.sleep(0.01)
        with pytest.raises(interrupts.Interrupted) as raised:
            with interrupts.deferred():
                pass
        assert raised.value.exit_status == 130
        with pytest.raises(interrupts.Interrupted):
            interrupts.check()


def test_a_broken_pipe_silences_the_script_output_instead_of_raising(repo_script, monkeypatch):
    cli_args = repo_script("experiments/cli_args.py")
    read, write = os.pipe()
    stream = os.fdopen(write, "w", buffering=1)
    os.close(read)  # the reader is gone
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setattr(sys, "stderr", stream)

    def main():
        for _ in range(3):
            print("x" * 10000)  # EPIPE on the first write: dropped
        raise KeyboardInterrupt

    assert cli_args.run_script(main) == 130
    monkeypatch.undo()
    with contextlib.suppress(OSError):
        stream.close()  # its buffer still holds text for the closed pipe


@pytest.mark.slow  # training runs (fit)
def test_fit_saves_between_steps_when_signalled_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from jaxprune.training import loop
    from jaxprune.training.bert import BertClassification
    from jaxprune.training.config import OptimizerConfig, PruningConfig, TrainConfig
    from tests.test_pipeline import keyword_task, tiny_config

    model_config = tiny_config(vocab_size=64)
    params = init_params(model_config, jax.random.key(2))
    train = keyword_task(48, seed=3)  # 6 batches of 8 per epoch
    config = TrainConfig(epochs=2, batch_size=8, optimizer=OptimizerConfig(learning_rate=1e-3),
                         pruning=PruningConfig(sparsity=0.5))
    full = loop.fit(params, BertClassification(model_config), config, train, log=lambda m: None)
    batches, make_batch = [], loop.make_batch

    def signalling_batch(*args, **kwargs):
        batches.append(1)
        if len(batches) == 4:  # SIGTERM arrives while step 4 is being prepared
            os.kill(os.getpid(), signal.SIGTERM)
        return make_batch(*args, **kwargs)

    monkeypatch.setattr(loop, "make_batch", signalling_batch)
    folder = str(tmp_path / "ckpt")
    with pytest.raises(interrupts.Interrupted) as raised:
        loop.fit(params, BertClassification(model_config), config, train, checkpoint_dir=folder, log=lambda m: None)
    assert raised.value.exit_status == 143
    assert "a checkpoint at step 4 is in" in raised.value.message
    monkeypatch.setattr(loop, "make_batch", make_batch)
    lines = []
    resumed = loop.fit(params, BertClassification(model_config), config, train, checkpoint_dir=folder, resume=True,
                       log=lines.append)
    assert resumed.resumed_from_step == 4 and lines == [f"train: resuming from step 4 of 12 ({folder})"]
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- run.py in a subprocess, through pipes -------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def sigint_not_ignored():
    """A child inherits an ignored SIGINT (as in a shell's background job), and then Ctrl-C cannot
    reach it; a handled one is reset to the default when it starts, as from a terminal."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory, minilm_folder) -> Path:
    """A tiny random BERT with MiniLM's tokenizer and 1,200 labelled texts: a run of ~half a minute."""
    root = tmp_path_factory.mktemp("interrupts")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64,
                        label_names=("LABEL_0", "LABEL_1", "LABEL_2"))
    save_pretrained(init_params(config, jax.random.key(0)), config, root / "model")
    for name in TOKENIZER_FILES:
        shutil.copy(Path(minilm_folder) / name, root / "model" / name)
    words = "market bank minister cricket runner record announcement today new big team vote share price".split()
    labels, rng = ("Business", "Politics", "Sports"), random.Random(0)
    with open(root / "train.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(1200):
            text = " ".join(rng.choice(words) for _ in range(8))
            writer.writerow([f"{text} {labels[i % 3].lower()} {i}", labels[i % 3]])
    return root


def _args(task: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--model", str(task / "model"), "--train-file", str(task / "train.csv"), "--output-dir", str(out),
            "--teacher-cache", str(cache), "--epochs", "6", "--teacher-epochs", "6", "--batch-size", "16",
            "--max-length", "32", "--finetune-epochs", "2", *extra]


class Run:
    """run.py in a subprocess, stdout and stderr into one pipe that this test reads."""

    def __init__(self, args: list[str]):
        env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("TQDM_DISABLE", None)  # the bars write the most, so they meet a broken pipe first
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(RUN), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=REPO, env=env)
        self.output = b""

    def read_until(self, marker: str | None = None, timeout: float = 240) -> bool:
        """Read until ``marker`` appears (True) or the output ends (False)."""
        deadline = time.monotonic() + timeout
        while marker is None or marker.encode() not in self.output:
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"no {marker!r} after {timeout} s: {self.text()[-2000:]}")
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return False
                self.output += chunk
        return True

    def interrupt(self, signum: int, reader_exits: bool, after: float = 0.0, marker: str | None = None) -> int:
        """Send ``signum`` ``after`` seconds from the start (or, given a ``marker``, from its first
        appearance; a run that ends before it is not signalled), reading meanwhile; with
        ``reader_exits`` the pipe's read end is closed first. The exit status."""
        start = self.started
        if marker is not None:
            if not self.read_until(marker):
                self.signalled = False
                return self.proc.wait(timeout=240)
            start = time.monotonic()
        while time.monotonic() < start + after and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if ready:
                self.output += os.read(self.proc.stdout.fileno(), 65536)
        self.signalled = self.proc.poll() is None  # False: it had finished before the signal
        if reader_exits:
            self.proc.stdout.close()
        self.proc.send_signal(signum)
        if not reader_exits:
            self.read_until(None)
        return self.proc.wait(timeout=240)

    def finish(self) -> int:
        self.read_until(None)
        return self.proc.wait(timeout=240)

    def text(self) -> str:
        return self.output.decode("utf-8", "replace").replace("\r", "\n")


def _results(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    scores = results["metrics"]["eval"]
    return {"teacher_accuracy": scores["teacher"]["accuracy"], "accuracy": scores["student"]["accuracy"],
            "macro_f1": scores["student"]["macro_f1"], "accuracy_before_finetune": results["finetune"]["accuracy_before"],
            "final_loss": results["training"]["final_loss"], "finetune_loss": results["finetune"]["final_loss"]}


def _newest_checkpoint(out: Path, cache: Path) -> tuple[int, int, int]:
    """The newest checkpoint step of the teacher (in the cache), the student and the fine-tuning."""
    def newest(folder: Path) -> int:
        steps = [int(p.name) for p in folder.glob("*") if p.name.isdigit()] if folder.is_dir() else []
        return max(steps, default=-1)

    teacher = max((newest(p / "checkpoints") for p in cache.glob("*.partial")), default=-1)
    if any((p / "config.json").is_file() for p in cache.glob("*") if not p.name.endswith(".partial")):
        teacher = 10**9  # the teacher is finished and cached
    return teacher, newest(out / "checkpoints"), newest(out / "checkpoints-finetune")


@pytest.fixture(scope="module")
def reference(tiny_task, tmp_path_factory) -> tuple[dict, Path]:
    """The uninterrupted run's results, and its teacher cache (to copy, so runs skip the teacher)."""
    root = tmp_path_factory.mktemp("reference")
    run = Run(_args(tiny_task, root / "out", root / "cache"))
    assert run.finish() == 0, run.text()[-3000:]
    return _results(root / "out"), root / "cache"


# The phase, the line that starts it, the signal, whether the reader exits, and what is kept.
PHASES = [
    ("teacher training", "teacher:   0%|", signal.SIGINT, True, "teacher"),
    ("teacher evaluation", "evaluate teacher", signal.SIGTERM, False, None),
    ("student training", "student:", signal.SIGINT, False, "student"),
    ("compaction", "evaluate student", signal.SIGTERM, True, "student"),
]


@pytest.mark.slow  # run.py in subprocesses
@pytest.mark.parametrize("phase, marker, signum, reader_exits, kept", PHASES, ids=[p[0] for p in PHASES])
def test_an_interrupt_through_a_pipe_keeps_a_checkpoint_and_resume_finishes_the_run(
        tiny_task, reference, tmp_path, phase, marker, signum, reader_exits, kept):
    expected, teacher_cache = reference
    out, cache = tmp_path / "out", tmp_path / "cache"
    if kept != "teacher":
        shutil.copytree(teacher_cache, cache)  # the teacher is reused: the other phases come sooner
    run = Run(_args(tiny_task, out, cache))
    assert run.read_until(marker), run.text()[-3000:]
    status = run.interrupt(signum, reader_exits)
    assert status == STATUS[signum], (status, run.text()[-3000:])
    if not reader_exits:
        last = run.text().strip().splitlines()[-1]
        assert last.startswith("error: interrupted") and "--resume" in last, last
        assert "Traceback" not in run.text()
    teacher, student, finetune = _newest_checkpoint(out, cache)
    assert {"teacher": teacher >= 0, "student": student >= 0, "finetune": finetune >= 0}.get(kept, True), \
        (kept, teacher, student, finetune)
    assert not (out / "results.json").exists()
    assert not (out / ".jaxprune.lock").exists() or _lock_is_free(out / ".jaxprune.lock")

    resumed = Run(_args(tiny_task, out, cache, "--resume"))
    assert resumed.finish() == 0, resumed.text()[-3000:]
    if kept == "student":
        assert "student: resuming from step" in resumed.text()
    assert _results(out) == expected


def _lock_is_free(path: Path) -> bool:
    import filelock

    lock = filelock.FileLock(str(path))
    lock.acquire(timeout=0)  # raises filelock.Timeout when the interrupted run still held it
    lock.release()
    return True


@pytest.mark.slow  # run.py in subprocesses
def test_twenty_interrupts_at_random_moments_lose_nothing(tiny_task, reference, tmp_path):
    """A seeded stress test: runs interrupted 20 times in all (SIGINT or SIGTERM, the reader
    exiting or not, at a random moment of start-up or 0-3 s into a random phase: teacher training,
    teacher evaluation, student training, compaction and evaluation, fine-tuning),
    each resumed by the next; no crash, every exit status 130 or 143, no checkpoint ever lost, and
    every run that finishes (the last one by a final resume) ends with the uninterrupted results."""
    expected, _ = reference
    rng = random.Random(20261205)
    cache, chain, statuses = tmp_path / "cache", 0, []
    out, newest = tmp_path / "out0", (-1, -1, -1)
    while len(statuses) < 20:
        signum, reader_exits = rng.choice([signal.SIGINT, signal.SIGTERM]), rng.random() < 0.5
        run = Run(_args(tiny_task, out, cache, "--resume"))
        marker = rng.choice([None, *MARKERS])  # None: during start-up
        status = run.interrupt(signum, reader_exits, marker=marker,
                               after=rng.uniform(0.5, 6.0) if marker is None else rng.uniform(0.0, 3.0))
        assert status not in CRASHES, (status, run.text()[-3000:])
        if status == 0:  # it finished before the signal: check it, and start another run
            assert not run.signalled, f"the signal was lost: {run.text()[-3000:]}"
            assert _results(out) == expected
            chain += 1
            out, newest = tmp_path / f"out{chain}", (-1, -1, -1)
            continue
        assert status == STATUS[signum], (status, signum, run.text()[-3000:])
        statuses.append((status, _phase(run.text())))
        now = _newest_checkpoint(out, cache)
        assert all(a >= b for a, b in zip(now, newest)), (newest, now)  # no checkpoint lost
        newest = now
    final = Run(_args(tiny_task, out, cache, "--resume"))
    assert final.finish() == 0, final.text()[-3000:]
    assert _results(out) == expected
    print(f"20 interrupts (status, phase reached): {statuses}; runs finished between them: {chain}")


# The line that starts each phase of a run.
MARKERS = {"teacher:   0%|": "teacher", "evaluate teacher": "teacher evaluation", "student:   0%|": "student",
           "evaluate student": "compaction", "fine-tune compacted": "fine-tuning"}


def _phase(output: str) -> str:
    """The last phase a run's output reached."""
    marks = {"start-up": 0, **{phase: output.rfind(marker) for marker, phase in MARKERS.items()}}
    return max(marks, key=marks.get)
