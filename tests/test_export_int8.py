"""int8 ONNX export and ONNX evaluation: export_onnx.py --quantize int8 writes a smaller file beside
the float32 one and reports how often int8 and float32 predict the same class; evaluate.py scores
an exported file with the metrics it gives for the jaxprune folder."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest


ort = pytest.importorskip("onnxruntime")  # the `onnx` extra, part of `test`
from jaxprune.export import onnx_precision, onnx_session  # noqa: E402
from jaxprune.export_int8 import compare_logits  # noqa: E402
from tests.conftest import CLASSIFIER_LABELS as LABELS  # noqa: E402

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SUBJECTS = {"Business": ("शेअर बाजाराने", "बँकेने"), "Politics": ("मुख्यमंत्र्यांनी", "आमदारांनी"),
            "Sports": ("क्रिकेट संघाने", "धावपटूने")}
EVENTS = ("नवा विक्रम केला", "आज मोठी घोषणा केली", "पुन्हा बैठक घेतली")


@pytest.fixture(scope="module")
def classifier(random_classifier) -> Path:
    return random_classifier


@pytest.fixture(scope="module")
def headlines(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("int8-data") / "SHC_Valid.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Text", "Label"])
        writer.writerows((f"{subject} {event}", label) for label, subjects in SUBJECTS.items()
                         for subject in subjects for event in EVENTS)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, classifier, headlines, repo_script) -> tuple[Path, str]:
    """``(model.onnx, what the script printed)``: the float32 export with its int8 twin."""
    import contextlib
    import io

    output = tmp_path_factory.mktemp("int8-export") / "onnx" / "model.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert repo_script("experiments/export_onnx.py").main(
            ["--model", str(classifier), "--output", str(output), "--quantize", "int8", "--check-file", str(headlines),
             "--check-count", "12", "--max-length", "32"]) == 0
    return output, printed.getvalue()


@pytest.mark.slow  # the scripts end to end
def test_int8_export_is_smaller_and_reports_argmax_agreement(exported):
    output, printed = exported
    int8 = output.with_name("model.int8.onnx")
    assert int8.is_file() and int8.stat().st_size < 0.35 * output.stat().st_size
    assert not [p.name for p in output.parent.iterdir() if p.name.startswith(".")]  # no scratch left
    assert (onnx_precision(output), onnx_precision(int8)) == ("float32", "int8")
    match = re.search(r"int8 vs float32 in ONNX Runtime on 12 texts: argmax agreement (\S+)% \((\d+)/12\), "
                      r"max \|logit difference\| (\S+)", printed)
    assert match, printed
    assert 0 <= float(match.group(1)) <= 100 and float(match.group(3)) > 0  # int8 is not float32
    assert f"wrote {int8} (7-bit weights, per channel, word embeddings rows" in printed


@pytest.mark.slow  # the scripts end to end
def test_int8_logits_stay_close_to_float32(exported, classifier):
    from jaxprune.export import encode_texts

    output, _ = exported
    ids, mask = encode_texts(classifier, [f"{s} {e}" for subjects in SUBJECTS.values() for s in subjects
                                          for e in EVENTS], 32)
    feeds = {"input_ids": ids, "attention_mask": mask}
    fp32 = onnx_session(output).run(["logits"], feeds)[0]
    int8 = onnx_session(output.with_name("model.int8.onnx")).run(["logits"], feeds)[0]
    assert compare_logits(int8, fp32).max_abs_diff < 0.05 * np.abs(fp32).max() + 1e-3


@pytest.mark.slow  # the scripts end to end
def test_evaluate_scores_an_onnx_file_as_it_scores_the_jaxprune_folder(exported, classifier, headlines, repo_script,
                                                                       capsys, tmp_path):
    evaluate = repo_script("experiments/evaluate.py")
    output, _ = exported
    assert evaluate.main(["--model", str(classifier), "--data-file", str(headlines),
                          "--output", str(tmp_path / "jax.json")]) == 0
    assert evaluate.main(["--model", str(output), "--data-file", str(headlines)]) == 0  # the default output
    assert evaluate.main(["--model", str(output.with_name("model.int8.onnx")), "--data-file", str(headlines),
                          "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "ONNX Runtime" in printed
    jax_report = json.loads((tmp_path / "jax.json").read_text(encoding="utf-8"))
    onnx_report = json.loads((output.parent / "eval_model_SHC_Valid.json").read_text(encoding="utf-8"))
    int8_report = json.loads((output.parent / "eval_model.int8_SHC_Valid.json").read_text(encoding="utf-8"))
    assert set(onnx_report) == set(jax_report) == set(int8_report)
    for key in ("n", "accuracy", "macro_f1", "per_class_f1", "label_names", "max_length"):
        assert onnx_report[key] == jax_report[key], key
    assert (jax_report["precision"], onnx_report["precision"], int8_report["precision"]) == (
        "float32", "float32", "int8")
    assert int8_report["n"] == jax_report["n"] and 0 <= int8_report["accuracy"] <= 1


@pytest.mark.slow  # the scripts end to end
def test_a_float16_file_is_scored_too(classifier, headlines, repo_script, tmp_path):
    export, evaluate = repo_script("experiments/export_onnx.py"), repo_script("experiments/evaluate.py")
    half = tmp_path / "half" / "model.onnx"
    assert export.main(["--model", str(classifier), "--output", str(half), "--dtype", "float16",
                        "--check-count", "0"]) == 0
    assert evaluate.main(["--model", str(half), "--data-file", str(headlines), "--output",
                          str(tmp_path / "half.json")]) == 0
    report = json.loads((tmp_path / "half.json").read_text(encoding="utf-8"))
    assert report["precision"] == "float16" and report["n"] == 18


def test_bad_onnx_input_is_a_one_line_error(classifier, headlines, repo_script, capsys, tmp_path):
    export, evaluate = repo_script("experiments/export_onnx.py"), repo_script("experiments/evaluate.py")

    def error(main, argv) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err, err
        return err

    half_int8 = ["--model", str(classifier), "--output", str(tmp_path / "m.onnx"), "--dtype", "float16",
                 "--quantize", "int8"]
    assert "--quantize int8 quantises a float32 export; drop --dtype float16" in error(export.main, half_int8)
    assert error(evaluate.main, ["--model", str(tmp_path / "missing.onnx"), "--data-file", str(headlines)]) == (
        f"error: --model {tmp_path / 'missing.onnx'} does not exist; pass an .onnx file written by "
        f"experiments/export_onnx.py")
    alone = tmp_path / "alone" / "model.onnx"
    alone.parent.mkdir()
    alone.write_bytes(b"")
    assert "has no config.json beside it" in error(evaluate.main, ["--model", str(alone), "--data-file",
                                                                   str(headlines)])
    shutil.copy(classifier / "config.json", alone.parent / "config.json")
    for name in TOKENIZER_FILES:
        shutil.copy(classifier / name, alone.parent / name)
    assert "ONNX Runtime cannot load" in error(evaluate.main, ["--model", str(alone), "--data-file", str(headlines)])
    assert "--precision bf16 does not apply to an ONNX file" in error(
        evaluate.main, ["--model", str(alone), "--data-file", str(headlines), "--precision", "bf16"])
    assert not list(alone.parent.glob("eval_*.json"))


def _tiny_fp32_file(tmp_path, vocab_size: int = 300) -> tuple[Path, np.ndarray]:
    """A float32 export of a random 1-layer BERT (ORT's fusions on) and its word-embedding table,
    whose rows are scaled over three orders of magnitude (rare pieces have small rows)."""
    import jax
    import onnx

    from jaxprune.export import to_onnx
    from jaxprune.models.bert import init_params
    from jaxprune.models.config import BertConfig

    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32, label_names=("a", "b", "c"))
    params = init_params(config, jax.random.key(0))
    table = np.asarray(params["embeddings"]["word_embeddings"]["embedding"], np.float32)
    table = table * np.logspace(-3, 0, vocab_size, dtype=np.float32)[:, None]
    params = {**params, "embeddings": {**params["embeddings"], "word_embeddings": {"embedding": table}}}
    path = tmp_path / "model.onnx"
    onnx.save_model(to_onnx(params, config), str(path))
    return path, table


def _lookup_output(path: Path, ids: np.ndarray) -> np.ndarray:
    """What the file's word-embedding lookup gives for ``ids`` (the graph cut after it)."""
    import onnx

    from jaxprune.export_int8 import word_embedding_lookup

    model = onnx.load(path)
    fp32_model = onnx.load(path.with_name("model.onnx"))
    name = word_embedding_lookup(fp32_model).output[0]
    model.graph.output.extend([onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([name], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]


def test_word_embeddings_are_quantised_row_by_row(tmp_path):
    import onnx

    from jaxprune.export_int8 import quantize_int8

    fp32, table = _tiny_fp32_file(tmp_path)
    ids = np.arange(table.shape[0], dtype=np.int64).reshape(-1, 20)  # within the 32 positions
    rows = quantize_int8(fp32, tmp_path / "rows.onnx")  # the default
    looked_up = _lookup_output(rows, ids).reshape(-1, table.shape[1])
    step = np.abs(table).max(axis=1, keepdims=True) / 127  # each row's own quantisation step
    assert np.all(np.abs(looked_up - table) <= step / 2 * (1 + 1e-5))
    model = onnx.load(rows)
    tables = {t.name: t for t in model.graph.initializer}
    assert "embeddings/word_embeddings" not in tables  # no float table left
    assert tables["embeddings/word_embeddings/int8_rows"].data_type == onnx.TensorProto.INT8
    # ORT's own quantisation: one scale for the whole table, so the small rows lose most of their levels.
    tensor = quantize_int8(fp32, tmp_path / "tensor.onnx", embeddings="tensor")
    tensor_error = np.abs(_lookup_output(tensor, ids).reshape(-1, table.shape[1]) - table)
    assert np.median(tensor_error / step) > 3  # per row: at most half a step
    kept = quantize_int8(fp32, tmp_path / "float.onnx", embeddings="float")
    np.testing.assert_array_equal(_lookup_output(kept, ids).reshape(-1, table.shape[1]), table)
    sizes = {p.name: p.stat().st_size for p in (rows, tensor, kept)}
    assert sizes["rows.onnx"] < sizes["float.onnx"] and abs(sizes["rows.onnx"] - sizes["tensor.onnx"]) < 0.05 * sizes[
        "rows.onnx"]


def test_an_unknown_embedding_storage_is_refused(tmp_path):
    from jaxprune.export_int8 import quantize_int8

    with pytest.raises(ValueError, match="`embeddings` must be one of rows, tensor, float, got 'int4'"):
        quantize_int8(tmp_path / "model.onnx", tmp_path / "q.onnx", embeddings="int4")
