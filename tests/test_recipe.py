"""The student recipe's parts: mojibake repair, the transfer set, fine-tuning after compaction."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from jaxprune.data import load_mahanews, read_table
from jaxprune.data._repair import repair_texts
from jaxprune.data.batching import encode_split, join_unlabelled, make_batch
from jaxprune.errors import JaxpruneError
from jaxprune.experiment import ExperimentConfig, train_and_evaluate
from jaxprune.experiment.transfer import load_transfer_set, read_transfer_texts
from jaxprune.training.config import DistillationConfig, OptimizerConfig, PruningConfig, TrainConfig
from tests.test_pipeline import tiny_data_dir, tiny_model_folder  # noqa: F401 - fixtures

MARATHI = ["महिलांना आवडतात असे पुरुष", "जेनिफरने पतीच्या कपड्यांची स्टाईल बदलली", "क्रिकेट संघाने नवा विक्रम केला"]


def mojibake(text: str) -> str:
    """What the SHC file holds for some rows: the UTF-8 bytes read as CP866."""
    return text.encode("utf-8").decode("cp866")


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Text", "Label"])
        writer.writerows(rows)
    return path


# --- mojibake -------------------------------------------------------------------------------------


def test_cp866_mojibake_is_repaired_into_the_dominant_script(tmp_path):
    broken = mojibake(MARATHI[0])
    assert broken != MARATHI[0] and any("\u0400" <= c <= "\u04ff" for c in broken)
    path = write_csv(tmp_path / "data.csv", [(broken, "Fashion"), (MARATHI[1], "Fashion"), (MARATHI[2], "Sports"),
                                             ("OMG : " + mojibake(MARATHI[1]) + " !", "Fashion")])
    raw = read_table(path)
    assert raw.repaired == 2
    assert raw.texts[0] == MARATHI[0] and raw.texts[3] == "OMG : " + MARATHI[1] + " !"
    kept = read_table(path, repair_text=False)
    assert kept.repaired == 0 and kept.texts[0] == broken


def test_real_cyrillic_text_is_left_alone():
    russian = ["Привет, как дела", "Москва большой город", "Погода сегодня хорошая"]
    assert repair_texts(russian) == (russian, 0)
    # Cyrillic in a Marathi dataset that is not mojibake (no valid UTF-8 behind it) stays too.
    assert repair_texts(MARATHI + ["Привет"]) == (MARATHI + ["Привет"], 0)


def test_the_loader_counts_repaired_texts(tmp_path):
    rows = [(f"{MARATHI[i % 3]} {i}", "ab"[i % 2]) for i in range(10)] + [(mojibake(f"{MARATHI[0]} x"), "a")]
    write_csv(tmp_path / "SHC_Valid.csv", rows)
    _, info = load_mahanews(tmp_path)
    assert info.repaired_texts == 1 and any("repaired 1 texts" in m for m in info.messages)
    _, info = load_mahanews(tmp_path, repair_text=False)
    assert info.repaired_texts == 0


# --- the transfer set -----------------------------------------------------------------------------


def test_transfer_texts_drop_eval_and_test_texts_and_repeats(tmp_path):
    path = tmp_path / "transfer.txt"
    path.write_text("a new sentence\n\n  held  out text \nA training text\na new sentence\nanother one\n",
                    encoding="utf-8")
    transfer = load_transfer_set(path, None, held_out=["held out text"], train=["A training text"])
    assert transfer.texts == ["a new sentence", "another one"]
    assert transfer.to_dict() == {"file": str(path), "read": 5, "dropped": 3, "dropped_eval_test": 1,
                                  "duplicates": 2, "repaired": 0, "used": 2}


def test_transfer_csv_reads_its_text_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,sentence\n1,first one\n2,second one\n", encoding="utf-8")
    assert read_transfer_texts(path) == ["first one", "second one"]
    path.write_text("id,body\n1,first one\n", encoding="utf-8")
    assert read_transfer_texts(path, "BODY") == ["first one"]
    with pytest.raises(JaxpruneError, match="no column 'words'"):
        read_transfer_texts(path, "words")


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"", "has no text"),
    (b"\n  \n", "has no text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "is binary"),
    (b"caf\xe9\n", "is not UTF-8"),
])
def test_bad_transfer_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "transfer.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(JaxpruneError, match=message) as error:
        load_transfer_set(path, None, held_out=[])
    assert "\n" not in str(error.value) and "`transfer_file`" in str(error.value)


def test_a_transfer_set_of_only_held_out_texts_is_refused(tmp_path):
    path = tmp_path / "transfer.txt"
    path.write_text("x y\nz\n", encoding="utf-8")
    with pytest.raises(JaxpruneError, match="every text of transfer file"):
        load_transfer_set(path, None, held_out=["x  y", "z"])


def test_joined_unlabelled_rows_carry_no_label_weight(minilm_folder):
    from jaxprune.models.loading import load_tokenizer

    tokenizer = load_tokenizer(minilm_folder)
    labelled = encode_split({"text": ["one", "two", "three"], "label": [2, 1, 2]}, tokenizer, 16)
    unlabelled = encode_split({"text": ["four", "five"], "label": [0, 0]}, tokenizer, 16)
    joined = join_unlabelled(labelled, unlabelled)
    assert len(joined) == 5 and joined.labelled.tolist() == [True, True, True, False, False]
    batch = make_batch(joined, np.array([0, 3, 4, 1]), 6)
    assert batch["weight"].tolist() == [1, 1, 1, 1, 0, 0]
    assert batch["label_weight"].tolist() == [1, 0, 0, 1, 0, 0]
    plain = make_batch(labelled, np.array([0, 1]), 3)
    assert plain["label_weight"].tolist() == plain["weight"].tolist() == [1, 1, 0]
    with pytest.raises(JaxpruneError, match="same max length"):
        join_unlabelled(labelled, encode_split({"text": ["x"], "label": [0]}, tokenizer, 64))


# --- the pipeline: fine-tuning after compaction with a transfer set --------------------------------


def recipe_config(tmp_path, model, data_dir, transfer_file, output="run") -> ExperimentConfig:
    return ExperimentConfig(
        student=TrainConfig(epochs=1, batch_size=8, optimizer=OptimizerConfig(learning_rate=1e-3),
                            pruning=PruningConfig(sparsity=0.5), distillation=DistillationConfig()),
        teacher=TrainConfig(epochs=1, batch_size=8, optimizer=OptimizerConfig(learning_rate=1e-3)),
        model=str(model), dataset="mahanews", data_dir=str(data_dir), max_length=32,
        output_dir=str(tmp_path / output), teacher_cache=str(tmp_path / "teachers"), speed_repeats=1,
        finetune_epochs=2, transfer_file=str(transfer_file),
    )


@pytest.mark.slow  # trains through the pipeline
def test_fine_tuning_after_compaction_with_a_transfer_set(tmp_path, tiny_model_folder, tiny_data_dir):
    splits, _ = load_mahanews(tiny_data_dir)
    eval_text = splits["eval"]["text"][0]
    transfer_file = tmp_path / "transfer.txt"
    new_texts = [f"मुख्यमंत्र्यांनी नवी घोषणा {i}" for i in range(11)]
    transfer_file.write_text("\n".join(new_texts + [eval_text, splits["train"]["text"][0]]), encoding="utf-8")
    config = recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file)
    results = train_and_evaluate(config, log=lambda message: None)

    assert results.data["transfer"] == {"file": str(transfer_file), "read": 13, "dropped": 2,
                                        "dropped_eval_test": 1, "duplicates": 1, "repaired": 0, "used": 11}
    finetune = results.finetune
    # 18 training texts + 11 transfer texts, one bucket, batches of 8: 4 steps an epoch.
    assert finetune.examples_per_epoch == 29 and finetune.steps == 2 * 4
    assert finetune.transfer_logits_reused is False and Path(finetune.transfer_logits_file).is_file()
    assert np.load(finetune.transfer_logits_file).shape == (11, 3)
    assert 0.0 <= finetune.accuracy_before <= 1.0
    assert results.training.steps == 3  # the pruning phase saw the labelled texts only
    # Fine-tuning and the transfer logits are timed inside the run, after the pruning.
    timing = results.timing
    assert 0 <= timing.transfer_logits_seconds and 0 < timing.finetune_seconds
    assert timing.train_seconds + timing.finetune_seconds + timing.transfer_logits_seconds < timing.run_seconds
    assert not (tmp_path / "run" / "checkpoints-finetune").exists()
    written = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert written["finetune"]["steps"] == 8
    from jaxprune.experiment.summary import summary_table

    summary = summary_table(results)
    assert "11 texts used of 13 read (1 equal to eval/test texts and 1 repeats dropped)" in summary
    after = results.metrics.eval.student.accuracy
    assert f"eval accuracy {finetune.accuracy_before:.4f} before, {after:.4f} after" in summary

    # The compacted folder holds the fine-tuned student: it differs from the masked one before it.
    from jaxprune.models.loading import from_pretrained

    compacted, compact_config = from_pretrained(results.compacted_dir)
    pruned, _ = from_pretrained(results.pruned_dir)
    assert compact_config.num_labels == 3
    head = "classifier"
    assert not np.allclose(np.asarray(compacted[head]["kernel"]), np.asarray(pruned[head]["kernel"]))

    # Another run of the same teacher and texts reuses the cached transfer logits.
    again = train_and_evaluate(recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file, "again"),
                               log=lambda message: None)
    assert again.finetune.transfer_logits_reused is True
    assert again.finetune.transfer_logits_file == finetune.transfer_logits_file


@pytest.mark.slow  # trains through the pipeline
def test_a_pruned_student_is_fine_tuned_again_without_pruning(tmp_path, tiny_model_folder, tiny_data_dir):
    transfer_file = tmp_path / "transfer.txt"
    transfer_file.write_text("\n".join(f"पावसाने शेती वाचली {i}" for i in range(7)), encoding="utf-8")
    first = train_and_evaluate(recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file, "first"),
                               log=lambda message: None)
    lines = []
    config = recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file, "again")
    again = train_and_evaluate(config.replace(student_from=first.pruned_dir), log=lines.append)
    assert any(line.startswith(f"student: the pruned student in {first.pruned_dir}") for line in lines)
    assert again.training.steps == 0 and again.config.student_from == first.pruned_dir
    # The same student, fine-tuned the same way: the same figures, bit for bit.
    assert again.metrics.eval.student == first.metrics.eval.student
    assert (again.finetune.accuracy_before, again.finetune.macro_f1_before) == (first.finetune.accuracy_before,
                                                                              first.finetune.macro_f1_before)
    assert again.compaction.params_nonzero == first.compaction.params_nonzero
    assert again.compaction.params_after == first.compaction.params_after
    assert again.finetune.final_loss == first.finetune.final_loss
    # Other fine-tuning settings from the same student: the same start, another end.
    other = recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file, "other").replace(
        student_from=first.pruned_dir, finetune_epochs=1)
    changed = train_and_evaluate(other, log=lambda message: None)
    assert changed.finetune.accuracy_before == first.finetune.accuracy_before
    assert changed.finetune.steps == first.finetune.steps // 2

    # A student of another shape or sparsity is refused before anything is trained.
    for folder, sparsity, fragment in ((first.compacted_dir, 0.5, "was not pruned from this run's teacher"),
                                       (first.pruned_dir, 0.9, "sparse but this run's sparsity is 0.9")):
        bad = config.replace(student_from=folder, output_dir=str(tmp_path / "bad"),
                             student=config.student.replace(pruning=PruningConfig(sparsity=sparsity)))
        with pytest.raises(JaxpruneError, match=fragment):
            train_and_evaluate(bad, log=lambda message: None)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(JaxpruneError, match="needs|only fine-tuning is left"):
        config.replace(student_from=first.pruned_dir, finetune_epochs=0)


@pytest.mark.slow  # the default model: converts e5-small on a fresh clone
def test_run_py_says_what_is_wrong_with_student_from(tmp_path, repo_script, capsys):
    run = repo_script("experiments/run.py")
    assert run.main(["--student-from", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "--student-from" in line and "add --finetune-epochs N" in line
    code = run.main(["--student-from", str(tmp_path), "--finetune-epochs", "1", "--output-dir", str(tmp_path / "out")])
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 2 and f"--student-from {tmp_path} has no config.json" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # trains through the pipeline
def test_the_fine_tuning_rule_skips_fine_tuning_and_the_transfer_set_below_its_sparsity(
        tmp_path, tiny_model_folder, tiny_data_dir):  # noqa: F811
    transfer_file = tmp_path / "transfer.txt"
    transfer_file.write_text("\n".join(f"नदीला पूर आला {i}" for i in range(5)), encoding="utf-8")
    config = recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file).replace(
        finetune_from_sparsity=0.6)  # the student is pruned to 0.5
    lines = []
    results = train_and_evaluate(config, log=lines.append)
    assert "fine-tuning after compaction: off at sparsity 0.5 and no transfer set" in "\n".join(lines)
    assert results.finetune is None and results.timing.finetune_seconds is None
    assert results.config.finetune_epochs == 0 and results.data["transfer"] is None
    assert not any(line.startswith("transfer set:") for line in lines)  # not even read
    # At or above it the run fine-tunes, with the transfer set.
    at = config.replace(finetune_from_sparsity=0.5, output_dir=str(tmp_path / "at"))
    assert at.with_finetune_rule() == at
    assert config.with_finetune_rule().replace(finetune_epochs=2, transfer_file=str(transfer_file)) == config


def test_run_py_fine_tunes_by_the_preset_rule_unless_epochs_are_given(repo_script):
    from jaxprune.experiment import presets

    run = repo_script("experiments/run.py")
    low = run.build_config(run.parse_args(["--data-dir", "d", "--sparsity", "0.25", "--precision", "fp32"]))
    assert low.finetune_epochs == presets.experiment().finetune_epochs > 0
    assert low.with_finetune_rule().finetune_epochs == 0
    high = run.build_config(run.parse_args(["--data-dir", "d", "--sparsity", "0.75", "--precision", "fp32"]))
    assert high.with_finetune_rule() == high
    asked = run.build_config(run.parse_args(["--data-dir", "d", "--sparsity", "0.25", "--finetune-epochs", "3",
                                             "--precision", "fp32"]))
    assert asked.with_finetune_rule().finetune_epochs == 3
    assert presets.demo().with_finetune_rule().finetune_epochs == 0


def test_run_py_refuses_a_transfer_file_it_would_not_use(tmp_path, repo_script, capsys):
    run = repo_script("experiments/run.py")
    transfer = tmp_path / "t.txt"
    transfer.write_text("a text\n", encoding="utf-8")
    assert run.main(["--transfer-file", str(transfer), "--output-dir", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "--transfer-file" in line and "--finetune-epochs" in line and "--distill" in line
    assert run.main(["--distill-layers", "--output-dir", str(tmp_path / "out")]) == 2
    assert "add --distill" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, fragment", [(None, "does not exist"), (b"\x00\x01\x02", "is binary")])
def test_run_py_rejects_a_bad_transfer_file_before_training(tmp_path, tiny_model_folder, tiny_data_dir,  # noqa: F811
                                                            repo_script, capsys, content, fragment):
    transfer = tmp_path / "transfer.txt"
    if content is not None:
        transfer.write_bytes(content)
    run = repo_script("experiments/run.py")
    code = run.main(["--model", str(tiny_model_folder), "--data-dir", str(tiny_data_dir), "--distill",
                     "--finetune-epochs", "1", "--transfer-file", str(transfer), "--max-length", "32",
                     "--output-dir", str(tmp_path / "out"), "--teacher-cache", str(tmp_path / "teachers")])
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert fragment in line and "--transfer-file" in line and str(transfer) in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "teachers").exists()


@pytest.mark.slow  # trains through the pipeline
def test_layer_distillation_through_pruning_and_fine_tuning(tmp_path, tiny_model_folder, tiny_data_dir):  # noqa: F811
    import dataclasses

    transfer_file = tmp_path / "transfer.txt"
    transfer_file.write_text("\n".join(f"बँकेने नवी योजना {i}" for i in range(5)), encoding="utf-8")
    config = recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file)
    config = config.replace(student=config.student.replace(
        distillation=dataclasses.replace(config.student.distillation, layer_weight=1.0)))
    results = train_and_evaluate(config, log=lambda message: None)
    assert results.config.student.distillation.layer_weight == 1.0
    # Both phases ran; the compacted (narrower) student distilled its layers from the full teacher.
    assert results.training.steps == 3 and results.finetune.steps == 2 * 3  # 18 + 5 texts, batches of 8
    assert results.finetune.final_loss is not None and np.isfinite(results.finetune.final_loss)
    from jaxprune.models.loading import from_pretrained

    params, _ = from_pretrained(results.compacted_dir)
    assert set(params) == {"classifier", "embeddings", "encoder", "pooler"}  # no layer maps in the model


@pytest.mark.slow  # trains through the pipeline
def test_an_interrupted_fine_tuning_resumes_to_the_uninterrupted_result(tmp_path, tiny_model_folder,  # noqa: F811
                                                                         tiny_data_dir, monkeypatch):
    import jaxprune.experiment.finetune as finetune_lib

    transfer_file = tmp_path / "transfer.txt"
    transfer_file.write_text("\n".join(f"शेअर बाजाराने उसळी घेतली {i}" for i in range(6)), encoding="utf-8")
    clean = train_and_evaluate(recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file, "clean"),
                               log=lambda message: None)

    real_fit = finetune_lib.fit

    def interrupted_fit(*args, **kwargs):  # Ctrl-C after 3 fine-tuning steps, as the loop reports it
        real_fit(*args, stop_after_steps=3, **kwargs)
        raise KeyboardInterrupt

    config = recipe_config(tmp_path, tiny_model_folder, tiny_data_dir, transfer_file, "cut")
    monkeypatch.setattr(finetune_lib, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config, log=lambda message: None)
    assert any((tmp_path / "cut" / "checkpoints-finetune").iterdir())  # kept for --resume
    monkeypatch.setattr(finetune_lib, "fit", real_fit)
    resumed = train_and_evaluate(config.replace(resume=True), log=lambda message: None)
    assert resumed.finetune.resumed_from_step == 3
    assert resumed.finetune.accuracy_before == clean.finetune.accuracy_before
    assert resumed.metrics.eval.student == clean.metrics.eval.student
    assert resumed.finetune.final_loss == pytest.approx(clean.finetune.final_loss, abs=0)


@pytest.mark.slow  # trains through the pipeline
def test_a_compacted_model_with_empty_layers_checkpoints_and_resumes_exactly(tmp_path):
    """A layer left with no heads and no neurons has zero-size arrays, which orbax cannot write:
    fine-tuning such a student must still checkpoint, and resume bit for bit."""
    import jax

    import jaxprune.training.loop as fit_lib
    from jaxprune.models.bert import init_params
    from jaxprune.training.bert import BertClassification
    from tests.test_pipeline import keyword_task, leaves_equal, tiny_config

    config = tiny_config(vocab_size=64).replace(heads_per_layer=(3, 0), intermediate_sizes=(40, 0))
    params = init_params(config, jax.random.key(1))
    assert params["encoder"]["layer_1"]["attention"]["key"]["bias"].size == 0
    train, teacher_logits = keyword_task(24), np.random.default_rng(0).normal(size=(24, 3)).astype(np.float32)
    settings = TrainConfig(epochs=2, batch_size=8, optimizer=OptimizerConfig(learning_rate=1e-3),
                           distillation=DistillationConfig())
    common = dict(teacher_logits=teacher_logits, fingerprint="ft", checkpoint_every=2)
    clean = fit_lib.fit(params, BertClassification(config), settings, train, **common)
    folder = str(tmp_path / "checkpoints")
    fit_lib.fit(params, BertClassification(config), settings, train, checkpoint_dir=folder, stop_after_steps=3, **common)
    resumed = fit_lib.fit(params, BertClassification(config), settings, train, checkpoint_dir=folder, resume=True, **common)
    assert resumed.resumed_from_step == 3 and resumed.params["encoder"]["layer_1"]["attention"]["key"]["bias"].shape == (0,)
    assert leaves_equal(resumed.state.params, clean.state.params)
    assert leaves_equal(resumed.state.opt_state, clean.state.opt_state)
