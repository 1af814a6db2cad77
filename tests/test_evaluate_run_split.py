"""evaluate.py --eval-split-of RUN_FOLDER: a model is scored on the eval split its run recorded,
rebuilt from results.json (the run's data folder read from where the run started, its teacher seed,
its max length), with the metrics --data-file gives on a CSV of exactly those texts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from jaxprune.experiment.baseline import load_data
from jaxprune.experiment.config import ExperimentConfig
from jaxprune.training.config import TrainConfig

from tests.conftest import CLASSIFIER_LABELS as LABELS
SUBJECTS = {"Business": ("शेअर बाजाराने", "बँकेने", "कंपनीने"), "Politics": ("मुख्यमंत्र्यांनी", "आमदारांनी", "मंत्र्यांनी"),
            "Sports": ("क्रिकेट संघाने", "धावपटूने", "खेळाडूने")}
EVENTS = ("नवा विक्रम केला", "आज मोठी घोषणा केली", "पुन्हा बैठक घेतली", "काल निर्णय जाहीर केला")
RUN = "results/recipe/s75/seed0"  # the run's output_dir, relative to where it started


@pytest.fixture(scope="module")
def classifier(random_classifier) -> Path:
    return random_classifier


def _config(data_dir: str, teacher_seed: int = 1) -> ExperimentConfig:
    # The teacher's seed splits the data; the student's (other) must not.
    return ExperimentConfig(dataset="mahanews", data_dir=data_dir, max_length=24, output_dir=RUN,
                            teacher=TrainConfig(seed=teacher_seed), student=TrainConfig(seed=7))


@pytest.fixture()
def finished_run(tmp_path) -> tuple[Path, ExperimentConfig]:
    """``(run folder, its config with the data folder absolute)``: a results.json as run.py writes
    it, made in ``tmp_path/code`` with the data in ``tmp_path/data/shc`` given as ``../data/shc``."""
    data = tmp_path / "data" / "shc"
    data.mkdir(parents=True)
    with open(data / "SHC_Valid.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["headline", "label"])
        rows = [(f"{subject} {event}", label) for label, subjects in SUBJECTS.items() for subject in subjects
                for event in EVENTS]
        writer.writerows(rows + rows[:5])  # duplicates, collapsed before the split
    config = _config("../data/shc")
    splits, info = load_data(_config(str(data)), None)
    run = tmp_path / "code" / RUN
    run.mkdir(parents=True)
    results = {"config": config.to_dict(), "data": info.to_dict()}  # what --eval-split-of reads of results.json
    (run / "results.json").write_text(json.dumps(results, default=str), encoding="utf-8")
    return run, _config(str(data))


def test_the_rebuilt_split_is_the_runs_eval_split(finished_run, repo_script, monkeypatch, tmp_path):
    evaluate_script = repo_script("experiments/evaluate.py")
    run, config = finished_run
    monkeypatch.chdir(tmp_path)  # not where the run started: its ../data/shc is found from the run folder
    dataset, info, max_length = evaluate_script.run_eval_split(run, LABELS)
    expected = load_data(config, None)[0]["eval"]
    assert list(dataset["text"]) == list(expected["text"]) and list(dataset["label"]) == list(expected["label"])
    assert max_length == 24 and "seed 1" in info.split
    other_seed = load_data(_config(config.data_dir, teacher_seed=0), None)[0]["eval"]
    assert list(other_seed["text"]) != list(expected["text"])  # so the seed is the teacher's, not a default


@pytest.mark.slow  # evaluate.py's main end to end
def test_evaluate_on_the_run_split_equals_evaluate_on_those_texts(finished_run, classifier, repo_script, tmp_path,
                                                                  capsys):
    evaluate = repo_script("experiments/evaluate.py")
    run, config = finished_run
    eval_split = load_data(config, None)[0]["eval"]
    texts_csv = tmp_path / "eval_texts.csv"
    with open(texts_csv, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *((text, LABELS[label]) for text, label in
                                                      zip(eval_split["text"], eval_split["label"]))])
    assert evaluate.main(["--model", str(classifier), "--eval-split-of", str(run),
                          "--output", str(tmp_path / "run.json")]) == 0
    assert evaluate.main(["--model", str(classifier), "--data-file", str(texts_csv), "--max-length", "24",
                          "--output", str(tmp_path / "csv.json")]) == 0
    assert f"on the eval split of {run}" in capsys.readouterr().out
    on_run, on_csv = (json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8")) for name in ("run", "csv"))
    assert on_run["n"] == len(eval_split) and on_run["max_length"] == 24
    for key in ("n", "accuracy", "macro_f1", "per_class_f1"):
        assert on_run[key] == on_csv[key], key
    assert on_run["eval_split_of"] == str(run) and on_csv["eval_split_of"] is None


def _error(main, argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_a_run_split_that_cannot_be_rebuilt_is_a_one_line_error(finished_run, classifier, repo_script, capsys,
                                                                 tmp_path, monkeypatch):
    main = repo_script("experiments/evaluate.py").main
    run, _ = finished_run
    model = ["--model", str(classifier), "--output", str(tmp_path / "out.json")]
    (run / "compacted").mkdir()
    assert f"pass {run}, the run's folder" in _error(main, [*model, "--eval-split-of", str(run / "compacted")], capsys)
    with pytest.raises(SystemExit):  # argparse's own exit, status 2
        main(model)
    assert "one of the arguments --data-file --eval-split-of is required" in capsys.readouterr().err

    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    results["data"]["split_sizes"]["eval"] += 1
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    assert "the run recorded" in _error(main, [*model, "--eval-split-of", str(run)], capsys)

    results["data"]["label_names"] = ["Auto", "Crime", "Tech"]
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    assert "are not the run's ['Auto', 'Crime', 'Tech']" in _error(main, [*model, "--eval-split-of", str(run)], capsys)

    results["data"]["label_names"] = list(LABELS)
    results["data"]["split_sizes"]["eval"] -= 1
    results["config"]["split"] = "rows"  # a run of another version: a setting this one does not have
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    error = _error(main, [*model, "--eval-split-of", str(run)], capsys)
    assert "another version of jaxprune" in error and "cannot be rebuilt" in error

    del results["config"]["split"]
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    shutil.rmtree(tmp_path / "data")
    assert "the run's data_dir ../data/shc is not at" in _error(main, [*model, "--eval-split-of", str(run)], capsys)
    assert not (tmp_path / "out.json").exists()
