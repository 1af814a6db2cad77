"""A run killed outright (SIGKILL: no handler runs, nothing is saved on the way out) resumes
from its last periodic checkpoint and ends exactly as a run that was never killed.

experiments/run.py runs in a subprocess on a tiny random BERT with MiniLM's tokenizer;
SIGINT and SIGTERM, which save a checkpoint before stopping, are tests/test_interrupts.py's."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from jaxprune.models.bert import init_params
from jaxprune.models.config import BertConfig
from jaxprune.models.loading import save_pretrained

pytestmark = pytest.mark.slow  # three runs of run.py in subprocesses

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "experiments" / "run.py"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# What differs between two runs of the same settings: seconds, energy, and whether they resumed.
VARYING = ("timing", "emissions", "resumed_from_step", "resume")


@pytest.fixture(scope="module")
def task(tmp_path_factory, minilm_folder) -> Path:
    """A tiny random BERT and 1,000 labelled texts: 50 student steps an epoch at batch size 16."""
    root = tmp_path_factory.mktemp("kill")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, label_names=("Business", "Politics", "Sports"))
    save_pretrained(init_params(config, jax.random.key(0)), config, root / "model")
    for name in TOKENIZER_FILES:
        shutil.copy(Path(minilm_folder) / name, root / "model" / name)
    words = "market bank minister cricket runner record announcement today new big team vote share price".split()
    rng = random.Random(1)
    with open(root / "train.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(1000):
            label = config.label_names[i % 3]
            writer.writerow([f"{' '.join(rng.choice(words) for _ in range(8))} {label.lower()} {i}", label])
    return root


STEPS = 150


def _run_py(task: Path, out: Path, cache: Path, *extra: str) -> subprocess.Popen:
    """run.py training a 50%-sparse student for 3 epochs of 50 steps (a periodic checkpoint at
    step 100), output and errors into one pipe."""
    args = ["--model", str(task / "model"), "--train-file", str(task / "train.csv"), "--output-dir", str(out),
            "--teacher-cache", str(cache), "--sparsity", "0.5", "--epochs", "3", "--batch-size", "16",
            "--max-length", "32", "--learning-rate", "2e-3", "--finetune-epochs", "0", *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    return subprocess.Popen([sys.executable, str(RUN), *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(run: subprocess.Popen) -> str:
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-3000:]
    return output


def _results(out: Path) -> dict:
    """results.json without what varies from run to run, the output folder written as OUT."""
    def without_varying(value):
        if isinstance(value, dict):
            return {key: without_varying(item) for key, item in value.items() if key not in VARYING}
        return [without_varying(item) for item in value] if isinstance(value, list) else value

    text = (out / "results.json").read_text(encoding="utf-8").replace(json.dumps(str(out))[1:-1], "OUT")
    return without_varying(json.loads(text))


def _saved_steps(folder: Path) -> list[int]:
    """Steps of the complete checkpoints in ``folder`` (orbax renames a checkpoint to its step
    once every file of it is written)."""
    return sorted(int(p.name) for p in folder.glob("*") if p.name.isdigit()) if folder.is_dir() else []


def test_a_run_killed_after_its_first_checkpoint_resumes_to_the_uninterrupted_results(task, tmp_path):
    reference_out, cache = tmp_path / "reference", tmp_path / "cache"
    _finish(_run_py(task, reference_out, cache))
    expected = _results(reference_out)
    assert expected["training"]["steps"] == STEPS and expected["metrics"]["eval"]["student"]["accuracy"] > 0.5

    out = tmp_path / "killed"
    run = _run_py(task, out, cache)
    deadline = time.monotonic() + 600
    while not _saved_steps(out / "checkpoints") and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL, f"it ended before the kill ({run.returncode}): {output[-3000:]}"
    steps = _saved_steps(out / "checkpoints")
    assert steps and steps[-1] < STEPS and not (out / "results.json").exists(), (steps, output[-3000:])

    resumed = _finish(_run_py(task, out, cache, "--resume"))
    assert f"student: resuming from step {steps[-1]} of {STEPS}" in resumed, resumed[-3000:]
    assert _results(out) == expected
