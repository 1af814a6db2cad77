"""The inference benchmark's int8 peers: every ORT file is also timed quantised, the float32
parity check still guards the float32 sessions, and the report states the int8 goals."""

from __future__ import annotations

import types

import jax
import pytest

from benchmarks import _inference_report, _ort_peer


@pytest.fixture
def tiny_model():
    from jaxprune.models.bert import init_params
    from jaxprune.models.config import BertConfig

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32)
    params = init_params(config, jax.random.key(0))
    return types.SimpleNamespace(name="tiny", config=config, variants={"dense": (params, config, 0.0)}, torch=None)


@pytest.mark.slow  # a benchmark's ONNX Runtime peer
def test_every_ort_file_gets_an_int8_twin_checked_loosely(tiny_model):
    if _ort_peer.import_ort() is None:
        pytest.skip("onnxruntime or onnx is not installed")
    notes: list[str] = []
    sessions, export_s = _ort_peer.ort_sessions(tiny_model, notes, int8=True)
    assert set(sessions) == {"dense", "dense-int8"} and export_s["dense-int8"] > export_s["dense"] > 0
    parity = _ort_peer.ort_parity(tiny_model, sessions, notes)
    assert parity["dense"] <= _ort_peer.PARITY_TOLERANCE < parity["dense-int8"]  # int8 differs, and is not refused


def test_the_report_states_the_int8_goals():
    def row(variant, **fields):
        timed = {"median_s": 0.01}
        return {"model": "e5-small", "batch_size": 32, "seq_length": 128, "dtype": "float32", "variant": variant,
                "sparsity": 0.75 if variant == "s75" else 0.0, "ort_int8": timed, **fields}

    rows = [row("dense", ort_speedup_vs_ort_dense=1.25),
            row("s75", ort_int8_speedup_vs_ort_dense=9.5, ort_int8_speedup_vs_ort_dense_int8=3.25)]
    lines = _inference_report.int8_goals(rows, "s75")
    assert lines[-1] == "| e5-small | 32x128 | 9.50x | 3.25x | 1.25x |"
    assert _inference_report.int8_goals([row("dense")], "s75") == []


def test_the_mahabert_shape_is_bert_base():
    from jaxprune.models.config import mahabert_config

    config = mahabert_config()
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        12, 768, 12, 3072)


@pytest.mark.slow  # the script end to end
def test_the_benchmark_times_the_mahabert_shape_in_int8_at_90_percent(tmp_path, repo_script, monkeypatch):
    """The MahaBERT cells, with every peer the final CPU run times, on a tiny shape of the same kind
    (12 heads, FFN 4x hidden, CLS pooling): the real one takes minutes to build and export."""
    if _ort_peer.import_ort() is None:
        pytest.skip("onnxruntime or onnx is not installed")
    import jaxprune.models.config as model_configs

    tiny = model_configs.mahabert_config().replace(vocab_size=500, hidden_size=48, num_hidden_layers=2,
                                                   intermediate_size=192, max_position_embeddings=512)
    monkeypatch.setattr(model_configs, "mahabert_config", lambda: tiny)
    inference = repo_script("benchmarks/inference.py")
    payload = inference.main(["--models", "mahabert", "--batch-sizes", "1", "--lengths", "16", "--dtypes", "float32",
                              "--sparsities", "0.75", "0.9", "--repeats", "1", "--warmup", "0",
                              "--torch-compile", "off", "--out", str(tmp_path)])
    rows = {row["variant"]: row for row in payload["rows"]}
    assert list(rows) == ["dense", "s75", "s90"] and {row["model"] for row in rows.values()} == {"mahabert"}
    assert [(rows[v]["heads_per_layer"], rows[v]["intermediate_size"]) for v in rows] == [(12, 192), (3, 48), (1, 19)]
    for row in rows.values():
        assert all(row[peer] is not None for peer in ("ort", "ort_int8", "torch_eager")), row  # every peer timed
        assert row["ort_int8_speedup_vs_ort_dense_int8"] == pytest.approx(
            rows["dense"]["ort_dense_torch_int8"]["median_s"] / row["ort_int8"]["median_s"])


def test_the_goals_are_read_at_75_percent_when_it_was_timed():
    def row(variant, sparsity):
        return {"model": "e5-small", "batch_size": 32, "seq_length": 128, "dtype": "float32", "variant": variant,
                "sparsity": sparsity, "ort_int8": {"median_s": 0.01}, "ort_int8_speedup_vs_ort_dense": sparsity * 10}

    rows = [row("dense", 0.0), row("s75", 0.75), row("s90", 0.9)]
    assert _inference_report.goal_variant(rows) == "s75"
    text = "\n".join(_inference_report.goals(rows))
    assert "Goals (s75: the goals' sparsity;" in text and "| e5-small | 32x128 | 7.50x |" in text
    assert _inference_report.goal_variant([row("dense", 0.0), row("s50", 0.5)]) == "s50"
