"""benchmarks/onnx_sizes.py on a tiny classifier: float32 > float16 > int8 files, and a full vocabulary
that costs exactly its extra embedding rows."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")  # the `onnx` extra, part of `test`


@pytest.fixture()
def classifier(tmp_path, tiny_bert_params, tiny_bert_config):
    from jaxprune.models.loading import save_pretrained

    folder = tmp_path / "classifier"
    save_pretrained(tiny_bert_params, tiny_bert_config, folder)
    return folder


@pytest.mark.slow  # the script end to end
def test_sizes_per_format_and_vocabulary(classifier, tiny_bert_config, repo_script, tmp_path):
    sizes = repo_script("benchmarks/onnx_sizes.py")
    extra_rows = 5000
    full = tiny_bert_config.vocab_size + extra_rows
    payload = sizes.main([f"tiny={classifier}", "--full-vocab", str(full), "--out", str(tmp_path / "out")])
    pruned, grown = payload["rows"]
    assert (pruned["vocabulary"], grown["vocabulary"], grown["vocab_size"]) == ("pruned", "full", full)
    assert min(pruned[f] for f in ("float32", "float16", "int8")) > 0
    # Where the weights outweigh the graph (the grown table), float16 halves them and int8 quarters them.
    assert grown["float32"] > 1.8 * grown["float16"] and grown["float32"] > 3 * grown["int8"]
    # float32 stores 4 bytes per weight: the grown table costs its rows x hidden x 4 bytes, nothing else.
    added_mb = extra_rows * tiny_bert_config.hidden_size * 4 / 1e6
    assert grown["float32"] - pruned["float32"] == pytest.approx(added_mb, rel=0.01)
    assert grown["params"] - pruned["params"] == extra_rows * tiny_bert_config.hidden_size
    (json_file,) = (tmp_path / "out").glob("onnx_sizes_*.json")
    assert json.loads(json_file.read_text(encoding="utf-8"))["rows"] == payload["rows"]
    table = json_file.with_suffix(".md").read_text(encoding="utf-8")
    assert f"| tiny | full ({full:,}) |" in table and "--full-vocab" in table
    assert not list(tmp_path.glob("**/*.onnx"))  # the scratch files are removed


def test_bad_arguments_are_one_line_errors(classifier, tiny_bert_config, repo_script, tmp_path, capsys):
    sizes = repo_script("benchmarks/onnx_sizes.py")
    with pytest.raises(SystemExit):
        sizes.parse_args([str(classifier)])
    assert "is not NAME=FOLDER" in capsys.readouterr().err
    from experiments.cli_args import run_script

    status = run_script(lambda: sizes.main([f"tiny={classifier}", "--full-vocab", "3", "--out", str(tmp_path)]))
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "--full-vocab 3 is smaller than the model's" in err
