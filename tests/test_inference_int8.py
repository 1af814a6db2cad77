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
