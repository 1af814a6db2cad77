"""Splits without leakage and CSVs of any shape: duplicates, overlap, columns, integer labels."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from jaxprune import data
from jaxprune.errors import JaxpruneError


def _write(path: Path, header, rows, delimiter=",", encoding="utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _pairs(split) -> list[tuple[str, str]]:
    names = split.features["label"].names
    return [(text, names[label]) for text, label in zip(split["text"], split["label"])]


def _error(call, pattern) -> str:
    with pytest.raises(JaxpruneError, match=pattern) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_duplicates_collapse_after_whitespace_normalisation_and_keep_the_majority_label(tmp_path):
    rows = [("good  film", "pos"), ("good film ", "pos"), (" good\tfilm", "neg"),  # 2 pos, 1 neg
            ("bad film", "neg"), ("bad  film", "pos"),  # a tie: the first label seen wins
            ("fine film", "pos")]  # fmt: skip
    raw = data.read_table(_write(tmp_path / "t.csv", ["text", "label"], rows))
    assert raw.texts == ["good  film", "bad film", "fine film"]  # the first spelling of each text
    assert raw.labels == ["pos", "neg", "pos"]
    assert (raw.duplicate_rows, raw.conflicts) == (3, 2)


def test_a_lone_file_is_split_over_distinct_texts(tmp_path):
    rows = [(f"text {i % 40}", "a" if i % 40 < 20 else "b") for i in range(120)]  # every text 3 times
    splits, info = data.load_files(_write(tmp_path / "all.csv", ["text", "label"], rows), seed=3)
    train, evals = set(splits["train"]["text"]), set(splits["eval"]["text"])
    assert not train & evals and len(train | evals) == 40
    assert Counter(splits["eval"]["label"]) == {0: 4, 1: 4}
    assert info.duplicate_rows == 80 and info.overlap == {"eval": 0}


def test_eval_and_test_texts_found_in_training_are_left_out_unless_kept(tmp_path):
    train = _write(tmp_path / "train.csv", ["text", "label"], [(f"t{i}", "ab"[i % 2]) for i in range(10)])
    evals = _write(tmp_path / "valid.csv", ["text", "label"], [("t1", "b"), (" t2 ", "a"), ("e1", "a"), ("e2", "b")])
    test = _write(tmp_path / "test.csv", ["text", "label"], [("t3", "b"), ("x1", "a"), ("x2", "b")])
    splits, info = data.load_files(train, evals, test)
    assert _pairs(splits["eval"]) == [("e1", "a"), ("e2", "b")]
    assert _pairs(splits["test"]) == [("x1", "a"), ("x2", "b")]
    assert info.overlap == {"eval": 2, "test": 1} and info.overlap_removed == {"eval": 2, "test": 0 + 1}
    assert info.split == "files" and info.split_sizes == {"train": 10, "eval": 2, "test": 2}
    assert any("left out 2 of its 4 texts" in m for m in info.messages)
    kept, info = data.load_files(train, evals, test, keep_overlap=True)
    assert len(kept["eval"]) == 4 and len(kept["test"]) == 3
    assert info.overlap == {"eval": 2, "test": 1} and info.overlap_removed == {"eval": 0, "test": 0}
    only_copies = _write(tmp_path / "copies.csv", ["text", "label"], [("t1", "b")])
    _error(lambda: data.load_files(train, only_copies), r"every text of .*copies.csv also occurs in the training")


def test_other_columns_and_integer_labels_sorted_numerically(tmp_path):
    rows = [(str(i), f"review {i}", ["-1", "0", "+1", "1.0"][i % 4]) for i in range(40)]
    path = _write(tmp_path / "reviews.tsv", ["id", "Review", "Sentiment"], rows, delimiter="\t")
    splits, info = data.load_files(path, text_column="review", label_column="sentiment")
    assert info.label_names == ("-1", "0", "1")  # "+1" and "1.0" are the integer 1
    assert Counter(splits["train"]["label"]) + Counter(splits["eval"]["label"]) == {0: 10, 1: 10, 2: 20}
    assert ("review 3", "1") in _pairs(splits["train"]) + _pairs(splits["eval"])
    # Found without naming them: "review" and "sentiment" are known column names.
    _, found = data.load_files(path)
    assert found.label_names == info.label_names


def test_label_names_come_from_training_data_and_eval_cannot_add_one(tmp_path):
    train = _write(tmp_path / "train.csv", ["text", "label"], [(f"t{i}", "zb"[i % 2]) for i in range(6)])
    evals = _write(tmp_path / "valid.csv", ["text", "label"], [("e1", "z"), ("e2", "new")])
    _error(lambda: data.load_files(train, evals), r"valid.csv has label 'new' outside the labels of the training")
    ok = _write(tmp_path / "ok.csv", ["text", "label"], [("e1", "z")])
    splits, info = data.load_files(train, ok)
    assert info.label_names == ("b", "z") and splits["eval"].features["label"].names == ["b", "z"]


def test_labels_with_one_example_are_refused_for_a_split_and_reported_otherwise(tmp_path):
    rows = [(f"t{i}", "a") for i in range(8)] + [("lonely", "b")]
    lone = _write(tmp_path / "all.csv", ["text", "label"], rows)
    message = _error(lambda: data.load_files(lone), r"fewer than 2 examples \('b' \(1\)\)")
    assert "`eval_file`" in message
    evals = _write(tmp_path / "valid.csv", ["text", "label"], [("e1", "a"), ("e2", "b")])
    _, info = data.load_files(lone, evals)
    assert info.rare_labels == {"b": 1} and any("fewer than 2 training examples" in m for m in info.messages)


def test_folder_of_own_files_by_name(tmp_path):
    _write(tmp_path / "sentiment_train.csv", ["sentence", "target"], [(f"t{i}", str(i % 3)) for i in range(30)])
    _write(tmp_path / "sentiment_dev.csv", ["sentence", "target"], [(f"d{i}", str(i % 3)) for i in range(6)])
    _write(tmp_path / "sentiment_test.csv", ["sentence", "target"], [(f"x{i}", str(i % 3)) for i in range(9)])
    (tmp_path / "notes.txt").write_text("not data")
    splits, info = data.load_folder(tmp_path)
    assert info.files == {"train": "sentiment_train.csv", "eval": "sentiment_dev.csv", "test": "sentiment_test.csv"}
    assert info.split_sizes == {"train": 30, "eval": 6, "test": 9} and info.label_names == ("0", "1", "2")


def test_train_and_test_without_valid_split_eval_off_train(tmp_path):
    _write(tmp_path / "train.csv", ["text", "label"], [(f"t{i}", "ab"[i % 2]) for i in range(20)])
    _write(tmp_path / "test.csv", ["text", "label"], [(f"x{i}", "ab"[i % 2]) for i in range(4)])
    splits, info = data.load_folder(tmp_path)
    assert info.split_sizes == {"train": 16, "eval": 4, "test": 4}
    assert all(text.startswith("t") for text in splits["eval"]["text"])


def test_utf16_with_bom_and_rows_without_a_label(tmp_path):
    path = _write(tmp_path / "train.csv", ["Text", "Label"], [("अ", "x"), ("ब", ""), ("क", "y"), ("ड", "x"),
                                                              ("इ", "y")], encoding="utf-16")
    raw = data.read_table(path)
    assert raw.texts == ["अ", "क", "ड", "इ"] and raw.unlabelled_rows == 1


def test_files_that_are_not_there_name_their_flag(tmp_path):
    _error(lambda: data.load_files(tmp_path / "none.csv"), r"`train_file` .*none.csv does not exist")
    train = _write(tmp_path / "train.csv", ["text", "label"], [(f"t{i}", "ab"[i % 2]) for i in range(6)])
    _error(lambda: data.load_files(train, tmp_path), r"`eval_file` .* is a folder")
    _error(lambda: data.load_files(train, test_file=tmp_path / "t.csv"), r"`test_file` .*t.csv does not exist")
    _error(lambda: data.load_files(train, text_column="label", label_column="label"), r"both 'label'")
