"""Inputs are checked before the output folder is touched (issue 25): a bad input is reported as
itself, never as a clash with a finished run; every model error names --model; default output
folders differ by model and data; a small training set gets the steps the demo's teacher has."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxprune.experiment import check_inputs, presets
from jaxprune.experiment.config import settings
from tests.test_pipeline import save_tiny_model, tiny_data_dir, tiny_model_folder  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "experiments" / "run.py"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(RUN), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


@pytest.mark.slow  # run.py in a subprocess
def test_a_bad_data_folder_is_reported_even_where_a_finished_run_is(tmp_path, tiny_model_folder, repo_script):
    """The default folder of these flags already holds a finished run: the error is still the
    data's, and the finished run is left exactly as it was."""
    args = ["--model", str(tiny_model_folder), "--data-dir", str(tmp_path / "no-such-data"), "--sparsity", "0.25",
            "--max-length", "32", "--precision", "fp32", "--teacher-cache", str(tmp_path / "teachers")]
    run = repo_script(RUN)
    finished = tmp_path / run.build_config(run.parse_args(args)).output_dir
    finished.mkdir(parents=True)
    (finished / "results.json").write_text('{"accuracy": 0.9}', encoding="utf-8")

    error = _one_error_line(_run(args, tmp_path))
    assert "does not exist" in error and "--data-dir" in error and "finished run" not in error
    assert sorted(p.name for p in finished.iterdir()) == ["results.json"]
    assert (finished / "results.json").read_text(encoding="utf-8") == '{"accuracy": 0.9}'
    assert not (tmp_path / "teachers").exists()


@pytest.mark.slow  # run.py in a subprocess
@pytest.mark.parametrize("case", ["missing folder", "no config", "no weights", "broken tokenizer"])
def test_every_model_error_names_the_model_flag(tmp_path, tiny_model_folder, tiny_data_dir, case):
    model = tmp_path / "model"
    if case != "missing folder":
        shutil.copytree(tiny_model_folder, model)
        if case == "broken tokenizer":
            (model / "tokenizer.json").write_text("not json", encoding="utf-8")
        else:
            (model / {"no config": "config.json", "no weights": "model.safetensors"}[case]).unlink()
    out = tmp_path / "out"
    error = _one_error_line(_run(["--model", str(model), "--data-dir", str(tiny_data_dir), "--output-dir", str(out),
                                  "--max-length", "32", "--teacher-cache", str(tmp_path / "teachers")], tmp_path))
    fragment = {"missing folder": "does not exist", "no config": "has no config.json",
                "no weights": "has no model.safetensors", "broken tokenizer": "has no usable tokenizer"}[case]
    assert error.startswith(f"error: --model {model}") and fragment in error, error
    assert not out.exists() and not (tmp_path / "teachers").exists()


def test_default_output_folders_differ_by_model_and_data(repo_script):
    run = repo_script(RUN)

    def folder(*flags: str) -> str:
        return run.build_config(run.parse_args([*flags, "--precision", "fp32"])).output_dir

    demo = folder()
    assert demo == os.path.join("runs", "e5-small-embedded-s0.25-topk-fp32")
    others = [
        folder("--model", "minilm"),
        folder("--data-dir", "data/mahanews-shc/"),
        folder("--data-dir", "data/mahanews-shc", "--variant", "LDC"),
        folder("--train-file", "/somewhere/reviews_train.csv"),
        folder("--model", "l3cube-pune/marathi-topic-all-doc-v2", "--train-file", "reviews_train.csv"),
        folder("--preset", "paper"),
    ]
    assert others == [os.path.join("runs", name) for name in (
        "minilm-embedded-s0.25-topk-fp32", "e5-small-mahanews-shc-s0.25-topk-fp32",
        "e5-small-mahanews-shc-ldc-s0.25-topk-fp32", "e5-small-reviews_train-s0.25-topk-fp32",
        "marathi-topic-all-doc-v2-reviews_train-s0.25-topk-fp32",
        "marathi-topic-all-doc-v2-mahanews-shc-s0.25-topk-fp32",
    )]
    # Characters outside [A-Za-z0-9._-] do not reach the folder's name.
    assert folder("--model", "my models/bert (v2)", "--train-file", "बातम्या.csv") == os.path.join(
        "runs", "bert-v2-data-s0.25-topk-fp32")


def test_min_steps_raises_the_epochs_of_a_small_training_set_only():
    experiment = presets.experiment()
    assert (experiment.min_steps, experiment.teacher.epochs, experiment.student.batch_size) == (120, 4, 32)
    small = experiment.with_min_steps(240)  # 8 steps an epoch at batch 32
    assert (small.teacher.epochs, small.student.epochs) == (15, 15)
    assert small.replace(teacher=experiment.teacher, student=experiment.student) == experiment
    assert experiment.with_min_steps(257).student.epochs == 14  # 9 steps an epoch: 126 steps
    assert experiment.with_min_steps(240, teacher=False).teacher == experiment.teacher
    assert presets.demo().with_min_steps(10) == presets.demo()  # min_steps 0: off

    # Enough data (MahaNews SHC: 1,913 training texts, 60 steps an epoch): nothing changes, so the
    # teacher's cache key (made of config.teacher) and the run's fingerprint stay as they were.
    assert experiment.with_min_steps(1913) == experiment
    assert experiment.fingerprint() == experiment.replace(min_steps=0).fingerprint()
    assert small.fingerprint() != experiment.fingerprint()
    # min_steps is not a setting (the epochs it resolves to are); the epochs are.
    assert "min_steps" not in settings(experiment.to_dict())
    assert settings(small.to_dict())["student"]["epochs"] == 15


def test_run_py_keeps_epochs_given_as_given(repo_script):
    run = repo_script(RUN)
    for flags, min_steps in (([], 120), (["--epochs", "2"], 0), (["--teacher-epochs", "2"], 0)):
        config = run.build_config(run.parse_args(["--data-dir", "d", "--precision", "fp32", *flags]))
        assert config.min_steps == min_steps


def test_check_inputs_reads_everything_and_resolves_the_epochs(tmp_path, tiny_model_folder, tiny_data_dir):
    config = presets.experiment(model=str(tiny_model_folder), data_dir=str(tiny_data_dir), max_length=32,
                                output_dir=str(tmp_path / "out"), teacher_cache=str(tmp_path / "teachers"))
    lines = []
    inputs = check_inputs(config, lines.append)
    assert len(inputs.splits["train"]) == 18 and inputs.model_labels is None
    assert inputs.tokenizer is not None and inputs.folder == str(tiny_model_folder)
    # 18 texts at batch 32: one step an epoch, so 120 epochs of one step each.
    assert (inputs.config.teacher.epochs, inputs.config.student.epochs) == (120, 120)
    # The preset's 25% student is not fine-tuned after compaction (finetune_from_sparsity), said first.
    assert config.finetune_epochs > 0 and inputs.config.finetune_epochs == 0
    assert inputs.config.replace(teacher=config.teacher, student=config.student,
                                 finetune_epochs=config.finetune_epochs) == config
    assert lines[0].startswith("fine-tuning after compaction: off at sparsity 0.25 (the preset fine-tunes students "
                               "of 0.5 or more")
    assert lines[-1] == ("small training set (18 texts): teacher 4 -> 120 epochs, student 4 -> 120 epochs, so that "
                         "each trains at least 120 steps (min_steps)")
    assert sum(line.startswith("data: ") for line in lines) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "teachers").exists()
