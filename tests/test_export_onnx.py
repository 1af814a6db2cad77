"""ONNX export: ONNX Runtime computes jaxprune's logits for dense and compacted models, at any
batch and length, with and without its fusions, in a graph it fuses; and the serving example of
docs/library.md runs on an exported e5-small."""

from __future__ import annotations

import pathlib
import re

import jax
import numpy as np
import pytest

from benchmarks.inference import keep_first  # a compacted model's params: the first units of each layer
from jaxprune.errors import JaxpruneError
from jaxprune.models.bert import BertForSequenceClassification, init_params

ort = pytest.importorskip("onnxruntime")  # the `onnx` extra, part of `test`
from jaxprune.export import onnx_session, to_onnx  # noqa: E402

LIBRARY_DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "library.md"
SECTION = "## Serving with ONNX Runtime"


def jax_logits(params, config, ids, mask):
    model = BertForSequenceClassification(config)
    forward = jax.jit(lambda params, ids, mask: model.apply({"params": params}, ids, mask))
    return np.asarray(forward(params, ids.astype(np.int32), mask.astype(np.int32)))


def ort_logits(session, ids, mask):
    return session.run(["logits"], {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})[0]


def compacted_tiny(config):
    """Uneven layers, one without heads and one without neurons."""
    config = config.replace(num_hidden_layers=3)
    params = init_params(config, jax.random.key(1))
    return keep_first(params, config, heads=[3, 0, 1], neurons=[24, 5, 0])


# Two cases in the fast lane between them cover both shapes, both poolings and both graphs.
FAST_CASES = {("dense", "cls", True), ("compacted", "mean", False)}


@pytest.mark.parametrize("shape, pooling, fusion", [
    pytest.param(shape, pooling, fusion, id=f"{shape}-{pooling}-{'ort-fusion' if fusion else 'standard-ops'}",
                 marks=() if (shape, pooling, fusion) in FAST_CASES else pytest.mark.slow)
    for shape in ("dense", "compacted") for pooling in ("cls", "mean") for fusion in (True, False)
])
def test_onnx_runtime_matches_jaxprune_at_any_batch_and_length(tiny_bert_config, tiny_bert_params, pooling, shape,
                                                               fusion):
    config = tiny_bert_config.replace(classifier_pooling=pooling)
    params = tiny_bert_params
    if shape == "compacted":
        params, config = compacted_tiny(config)
    session = ort.InferenceSession(to_onnx(params, config, ort_fusion=fusion).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    ids_input, mask_input = session.get_inputs()
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert ids_input.type == mask_input.type == "tensor(int64)"
    assert [o.name for o in session.get_outputs()] == ["logits"]
    rng = np.random.default_rng(0)
    for batch, length in [(1, 4), (3, 11), (5, 32)]:
        ids = rng.integers(0, config.vocab_size, (batch, length))
        mask = np.ones_like(ids)
        mask[0, length // 2:] = 0  # padding is masked out as in jaxprune
        expected = jax_logits(params, config, ids, mask)
        np.testing.assert_allclose(ort_logits(session, ids, mask), expected, atol=1e-5, rtol=0)
    # float16 weights and matmuls: ONNX Runtime's CPU provider runs them, close to float32.
    half = ort.InferenceSession(to_onnx(params, config, dtype="float16", ort_fusion=fusion).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    half_logits = ort_logits(half, ids, mask)
    assert half_logits.dtype == np.float32
    np.testing.assert_allclose(half_logits, expected, atol=2e-2, rtol=0)


@pytest.mark.parametrize("hidden_act", [pytest.param("gelu_new", marks=pytest.mark.slow), "relu"])
def test_every_activation_exports(tiny_bert_config, hidden_act):
    from jaxprune.models.activations import ACTIVATIONS
    from jaxprune.onnx_graph import ONNX_ACTIVATIONS

    assert set(ONNX_ACTIVATIONS) == set(ACTIVATIONS)
    params, config = compacted_tiny(tiny_bert_config.replace(hidden_act=hidden_act))
    session = ort.InferenceSession(to_onnx(params, config).SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(0, config.vocab_size, (3, 9))
    mask = np.ones_like(ids)
    mask[1, 4:] = 0
    np.testing.assert_allclose(ort_logits(session, ids, mask), jax_logits(params, config, ids, mask), atol=1e-5, rtol=0)


def test_the_graph_is_what_onnx_runtime_fuses(tiny_bert_config):
    """Native LayerNormalization and MatMul/Softmax attention, no Einsum; with ORT's fusions, one
    Attention node per layer that has heads, and every residual LayerNorm a SkipLayerNormalization."""
    import collections

    params, config = compacted_tiny(tiny_bert_config)  # heads 3, 0, 1
    standard = collections.Counter(n.op_type for n in to_onnx(params, config, ort_fusion=False).graph.node)
    assert standard["LayerNormalization"] == 1 + 2 * 3 and standard["Softmax"] == 2
    assert not {"Einsum", "ReduceMean", "Sqrt", "Pow"} & set(standard)
    fused = collections.Counter(n.op_type for n in to_onnx(params, config).graph.node)
    assert fused["Attention"] == 2 and "Softmax" not in fused
    assert fused["SkipLayerNormalization"] + fused["LayerNormalization"] == 1 + 2 * 3
    assert sum(fused.values()) < 0.5 * sum(standard.values())


def test_to_onnx_refuses_an_unknown_dtype(tiny_bert_config, tiny_bert_params):
    with pytest.raises(JaxpruneError, match="`dtype` must be one of float32, float16"):
        to_onnx(tiny_bert_params, tiny_bert_config, dtype="bfloat16")


def serving_example() -> str:
    text = LIBRARY_DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"docs/library.md lost its {SECTION!r} section"
    section = text.split(SECTION, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def compacted_e5_folder(tmp_path_factory, e5_folder) -> pathlib.Path:
    """e5-small compacted unevenly (12..0 heads, 1536..0 neurons per layer) with a 12-label head."""
    from jaxprune.models.loading import from_pretrained, load_tokenizer, save_pretrained

    labels = tuple(f"topic_{i}" for i in range(12))
    params, config = from_pretrained(e5_folder, labels)
    heads = [12, 9, 6, 3, 0, 12, 1, 5, 7, 11, 2, 4]
    neurons = [1536, 0, 768, 384, 1152, 1, 1536, 100, 0, 1000, 200, 50]
    params, config = keep_first(params, config, heads, neurons)
    folder = tmp_path_factory.mktemp("e5-compacted")
    save_pretrained(params, config, folder, tokenizer=load_tokenizer(e5_folder))
    return folder


def test_export_cli_checks_real_headlines_and_the_docs_serve_the_file(
    compacted_e5_folder, tmp_path, repo_script, shared_data_dir, capsys
):
    from jaxprune.models.loading import from_pretrained, load_tokenizer

    export = repo_script("experiments/export_onnx.py")
    out_file = tmp_path / "served" / "model.onnx"
    shc = shared_data_dir / "SHC_Valid.csv"
    assert export.main(["--model", str(compacted_e5_folder), "--output", str(out_file), "--check-file", str(shc),
                        "--check-count", "48"]) == 0
    printed = capsys.readouterr().out
    difference = float(re.search(r"max \|logit difference\| (\S+) ", printed).group(1))
    assert difference <= 1e-4 and "on 48 texts" in printed
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out_file.parent / name).is_file(), name
    assert not [p.name for p in out_file.parent.iterdir() if p.name.startswith(".")]  # no scratch left

    # The docs' serving example, verbatim but for the folder: the labels it prints are jaxprune's.
    example = serving_example()
    assert 'folder = "onnx/s25"' in example
    namespace: dict = {}
    exec(example.replace('folder = "onnx/s25"', f'folder = "{out_file.parent}"'), namespace)  # noqa: S102
    printed = capsys.readouterr().out
    params, config = from_pretrained(compacted_e5_folder)
    encoded = load_tokenizer(compacted_e5_folder)(namespace["texts"], padding=True, return_tensors="np")
    expected = jax_logits(params, config, encoded["input_ids"], encoded["attention_mask"])
    np.testing.assert_allclose(namespace["logits"], expected, atol=1e-4, rtol=0)
    assert printed.strip() == str([config.label_names[i] for i in expected.argmax(axis=1)])


def test_export_cli_errors_are_one_line(tmp_path, repo_script, capsys, tiny_bert_config):
    export = repo_script("experiments/export_onnx.py")
    assert export.main(["--model", str(tmp_path / "missing"), "--output", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: model folder")
    assert export.main(["--model", str(tmp_path), "--output", str(tmp_path / "model.bin")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the output must be an .onnx file") and "\n" not in err


@pytest.mark.slow  # the script end to end
def test_float16_export_writes_a_smaller_file(tmp_path, tiny_bert_config, repo_script, capsys):
    from jaxprune.models.loading import save_pretrained

    config = tiny_bert_config.replace(vocab_size=2000, hidden_size=64, intermediate_size=128)  # weights dominate
    save_pretrained(init_params(config, jax.random.key(0)), config, tmp_path / "model")
    export = repo_script("experiments/export_onnx.py")
    sizes = {}
    for dtype in ("float32", "float16"):
        path = tmp_path / dtype / "model.onnx"
        assert export.main(["--model", str(tmp_path / "model"), "--output", str(path), "--dtype", dtype,
                            "--check-count", "0"]) == 0
        sizes[dtype] = path.stat().st_size
        assert onnx_session(path).get_outputs()[0].name == "logits"
    assert "no logit check" in capsys.readouterr().out
    assert sizes["float16"] < 0.6 * sizes["float32"]


@pytest.mark.slow  # the script end to end
def test_a_logit_difference_over_the_tolerance_is_a_one_line_error(tmp_path, tiny_bert_config, tiny_bert_params,
                                                                  repo_script, capsys, monkeypatch):
    import jaxprune.export
    from jaxprune.models.loading import save_pretrained

    save_pretrained(tiny_bert_params, tiny_bert_config, tmp_path / "model")
    monkeypatch.setattr(jaxprune.export, "max_logit_difference", lambda *args, **kwargs: 0.5)
    export = repo_script("experiments/export_onnx.py")
    assert export.main(["--model", str(tmp_path / "model"), "--output", str(tmp_path / "out" / "model.onnx"),
                        "--check-count", "4", "--max-length", "16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "differ from jaxprune's by 5.00e-01 on 4 texts, more than --tolerance 0.0001" in err
