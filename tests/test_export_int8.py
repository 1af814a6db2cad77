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
    assert f"wrote {int8} (7-bit weights, per channel, " in printed


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


@pytest.mark.parametrize("reduce_range, largest", [(True, 64), (False, 127)])
def test_weight_bits(tmp_path, tiny_bert_params, tiny_bert_config, reduce_range, largest):
    """7-bit weights (the default) stay within [-64, 64], so that ONNX Runtime's 16-bit pair sums of
    uint8 x int8 products cannot overflow on CPUs without VNNI; 8-bit ones use all of [-127, 127]."""
    import onnx
    from onnx import numpy_helper

    from jaxprune.export import to_onnx
    from jaxprune.export_int8 import quantize_int8

    fp32 = tmp_path / "model.onnx"
    onnx.save_model(to_onnx(tiny_bert_params, tiny_bert_config), str(fp32))
    quantized = onnx.load(quantize_int8(fp32, tmp_path / "model.int8.onnx", reduce_range=reduce_range))
    weights = [numpy_helper.to_array(t) for t in quantized.graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("_quantized")]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == largest
