"""experiments/run.py on a user's own CSVs: another task, other column names, integer labels, a test
file; and the run's guards: an early error leaves no folder, one run per output folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_pipeline import save_tiny_model

# A sentiment task: star ratings -1/0/1 in a column named "stars", texts in "comment".
WORDS = {"-1": ("awful", "broken", "terrible"), "0": ("ordinary", "average", "plain"), "1": ("great", "lovely", "superb")}
THINGS = ("phone", "film", "meal", "hotel", "book", "game")


def _write(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "comment", "stars"])
        writer.writerows((i, text, stars) for i, (text, stars) in enumerate(rows))
    return path


@pytest.fixture(scope="module")
def sentiment_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sentiment")
    rows = [(f"a {word} {thing}", stars) for stars, words in WORDS.items() for word in words for thing in THINGS]
    train = rows[::2] + [rows[0], (rows[2][0] + "  ", rows[2][1])]  # two duplicates, one with other spacing
    evals = rows[1::4] + [rows[0]]  # one text that is also in training
    test = rows[3::4]
    return {"train": _write(folder / "reviews_train.csv", train), "eval": _write(folder / "reviews_dev.csv", evals),
            "test": _write(folder / "reviews_test.csv", test)}


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory, minilm_folder) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), minilm_folder)


def _flags(model: Path, files: dict[str, Path], out: Path) -> list[str]:
    return ["--model", str(model), "--train-file", str(files["train"]), "--eval-file", str(files["eval"]),
            "--test-file", str(files["test"]), "--text-column", "comment", "--label-column", "stars",
            "--epochs", "1", "--teacher-epochs", "1", "--batch-size", "8", "--max-length", "16",
            "--output-dir", str(out / "run"), "--teacher-cache", str(out / "teachers")]


@pytest.mark.slow  # run.py end to end
def test_own_csvs_with_integer_labels_run_with_flags_only(tmp_path, tiny_model_folder, sentiment_files, repo_script, capsys):
    run = repo_script("experiments/run.py")
    assert run.main([*_flags(tiny_model_folder, sentiment_files, tmp_path), "--sparsity", "0.5", "--distill",
                     "--resume"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    data, test = results["data"], results["metrics"]["test"]
    assert data["label_names"] == ["-1", "0", "1"]  # integer labels in numeric order
    assert data["duplicate_rows"] == 2 and data["overlap"] == {"eval": 1, "test": 0}
    assert data["split_sizes"] == {"train": 27, "eval": 14, "test": 13}
    for value in (test["student"]["accuracy"], test["student"]["macro_f1"], test["teacher"]["accuracy"],
                  test["teacher"]["macro_f1"], test["majority_class_accuracy"]):
        assert 0.0 <= value <= 1.0
    assert set(test["student"]["per_class_f1"]) == set(test["teacher"]["per_class_f1"]) == {"-1", "0", "1"}
    assert "no checkpoint to resume from; starting a new run" in printed
    assert "accuracy (test)" in printed and "always the majority class" in printed
    assert any(line.startswith("compacted model") and results["compacted_dir"] in line for line in printed.splitlines())
    assert "next: python experiments/evaluate.py --model" in printed
    assert not (tmp_path / "run" / "checkpoints").exists()  # a finished run keeps results and models only
    assert (tmp_path / "run" / "compacted" / "config.json").is_file()

    # evaluate.py reads the same file with the same column flags, and writes next to the model.
    evaluate = repo_script("experiments/evaluate.py")
    assert evaluate.main(["--model", results["compacted_dir"], "--data-file", str(sentiment_files["test"]),
                          "--text-column", "comment", "--label-column", "stars", "--max-length", "16"]) == 0
    scored = json.loads((Path(results["compacted_dir"]) / "eval_reviews_test.json").read_text(encoding="utf-8"))
    assert scored["n"] == 13 and scored["accuracy"] == pytest.approx(test["student"]["accuracy"])
    assert evaluate.main(["--model", results["compacted_dir"], "--data-file", str(sentiment_files["test"])]) == 2
    assert "--text-column" in capsys.readouterr().err  # "comment" is no usual text column name


def test_an_early_error_leaves_no_folder_it_created(tmp_path, tiny_model_folder, sentiment_files, repo_script, capsys):
    run = repo_script("experiments/run.py")
    flags = _flags(tiny_model_folder, sentiment_files, tmp_path / "new")
    flags[flags.index("comment")] = "body"
    assert run.main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "no column 'body'" in err and "--text-column" in err
    assert not (tmp_path / "new").exists()
    assert run.main([*_flags(tiny_model_folder, sentiment_files, tmp_path / "other"), "--country", "XYZ"]) == 2
    assert "--country" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


@pytest.mark.slow  # a second process holds the folder
def test_a_second_run_on_a_busy_output_folder_is_refused(tmp_path, tiny_model_folder, sentiment_files, repo_script, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jaxprune.experiment.runlock import hold_folder_lock\n"
                               "with hold_folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run = repo_script("experiments/run.py")
        assert run.main(_flags(tiny_model_folder, sentiment_files, tmp_path)) == 2
        err = capsys.readouterr().err
        assert "another run is using the output folder" in err and "--output-dir" in err
        assert out.is_dir() and not (out / "results.json").exists()  # the folder it did not create is kept
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)


def test_column_flag_help_names_the_columns_the_loader_finds(repo_script):
    import argparse

    from jaxprune import data

    cli_args = repo_script("experiments/cli_args.py")
    parser = argparse.ArgumentParser()
    cli_args.add_column_arguments(parser)
    helps = {action.dest: action.help for action in parser._actions}
    for dest, names in (("text_column", data.TEXT_COLUMNS), ("label_column", data.LABEL_COLUMNS)):
        listed = helps[dest].split("(default: ")[1].rstrip(")").replace(" or ", ", ").split(", ")
        assert tuple(listed) == names


@pytest.mark.slow  # the default model: converts e5-small on a fresh clone
def test_resume_refuses_a_run_of_another_version_in_one_line(tmp_path):
    from jaxprune.errors import JaxpruneError
    from jaxprune.experiment import ExperimentConfig, train_and_evaluate

    config = ExperimentConfig(output_dir=str(tmp_path / "run"), teacher_cache=str(tmp_path / "teachers"), resume=True)
    results = tmp_path / "run" / "results.json"
    results.parent.mkdir()
    other = {**config.to_dict(), "split": "rows"}  # a setting this version does not have
    results.write_text(json.dumps({"config": other}), encoding="utf-8")
    with pytest.raises(JaxpruneError, match=r"other settings \(split: 'rows' -> None\)") as refused:
        train_and_evaluate(config, log=lambda message: None)
    # The same settings, but not this version's record (its scores at the top): not passed off as this run.
    results.write_text(json.dumps({"config": config.to_dict(), "accuracy": 0.9}), encoding="utf-8")
    with pytest.raises(JaxpruneError, match="is not the results.json of a run of this jaxprune version") as unread:
        train_and_evaluate(config, log=lambda message: None)
    assert "\n" not in str(refused.value) + str(unread.value)


def test_toy_sentiment_task_loads_with_its_duplicates_and_overlap(tmp_path, repo_script, capsys):
    from jaxprune import data

    assert repo_script("experiments/toy_sentiment.py").main([str(tmp_path)]) == 0
    splits, info = data.load_files(tmp_path / "reviews_train.csv", tmp_path / "reviews_dev.csv",
                                   tmp_path / "reviews_test.csv", text_column="comment", label_column="stars")
    assert info.label_names == ("-1", "0", "1") and info.duplicate_rows == 5
    assert info.overlap == {"eval": 3, "test": 0} and info.split_sizes == {"train": 108, "eval": 36, "test": 36}
