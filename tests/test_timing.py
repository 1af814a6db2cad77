"""jaxprune.evaluation.timing on a tiny BERT: sane fields, no speed assertions; and the
benchmarks' results writer (benchmarks/_common.py)."""

import dataclasses
import json
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks._common import versions, write_results
from jaxprune.models.compaction import compact
from jaxprune.errors import JaxpruneError
from jaxprune.evaluation import timing
from jaxprune.evaluation.timing import (
    TimingResult,
    compare_inference,
    compiled_forward,
    device_description,
    summarize,
    time_calls,
    time_forward,
    time_side_by_side,
)


class FakeClock:
    """The timing module's ``time.perf_counter``, moved on only by the fake runs of a test."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def check_result(result: TimingResult, batch_size: int, seq_length: int, repeats: int, dtype: str, wall_s: float):
    """``wall_s``: the seconds the call that made ``result`` took, which its compile and timed runs fit in."""
    assert 0 < result.min_s <= result.median_s <= result.max_s
    assert result.repeats == repeats == len(result.times_s)
    assert result.median_s == pytest.approx(float(np.median(result.times_s)))
    assert result.sequences_per_s == pytest.approx(batch_size / result.median_s)
    assert (result.batch_size, result.seq_length, result.dtype) == (batch_size, seq_length, dtype)
    assert 0 < result.compile_s and result.compile_s + sum(result.times_s) <= wall_s
    assert result.device == device_description()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_time_forward_fields(tiny_bert_params, tiny_bert_config, dtype):
    start = time.perf_counter()
    result = time_forward(tiny_bert_params, tiny_bert_config, batch_size=3, seq_length=8, dtype=dtype, repeats=4,
                          warmup=1)
    check_result(result, 3, 8, 4, jnp.dtype(dtype).name, time.perf_counter() - start)
    as_dict = json.loads(json.dumps(result.to_dict()))
    assert as_dict["times_s"] == list(result.times_s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.median_s = 0.0


def test_compiled_forward_returns_logits(tiny_bert_params, tiny_bert_config):
    start = time.perf_counter()
    run, compile_s = compiled_forward(tiny_bert_params, tiny_bert_config, 2, 5)
    assert 0 < compile_s <= time.perf_counter() - start
    logits = run()
    assert logits.shape == (2, tiny_bert_config.num_labels) and logits.dtype == jnp.float32


def test_time_calls_times_each_run_after_the_warmup(clock):
    durations = iter([4.0, 0.5, 0.25, 2.0])

    def run():
        clock.now += next(durations)

    assert time_calls(run, repeats=3, warmup=1) == [0.5, 0.25, 2.0]


def test_compare_inference_with_compacted_model(tiny_bert_params, tiny_bert_config):
    # Zero heads 1-3 of layer 0 (value columns and output rows) and half the
    # neurons of layer 1, then compact: a genuinely smaller per-layer model.
    params = jax.tree.map(np.array, tiny_bert_params)
    d = tiny_bert_config.head_dim
    layer0, layer1 = params["encoder"]["layer_0"], params["encoder"]["layer_1"]
    layer0["attention"]["output"]["kernel"][d:, :] = 0.0
    layer1["output"]["kernel"][12:, :] = 0.0
    small_params, small_config, _ = compact(params, tiny_bert_config)
    assert small_config.heads_per_layer == (1, 4) and small_config.intermediate_sizes == (24, 12)

    out = compare_inference((tiny_bert_params, tiny_bert_config), (small_params, small_config),
                            batch_size=2, seq_length=8, dtype=jnp.float32, repeats=3, warmup=1)
    json.dumps(out)
    assert out["speedup"] == pytest.approx(out["dense_median_s"] / out["compacted_median_s"])
    assert out["dense_median_s"] == out["dense"]["median_s"] > 0
    assert out["compacted_median_s"] == out["compacted"]["median_s"] > 0
    for name in ("dense", "compacted"):
        assert out[name]["min_s"] <= out[name]["median_s"] <= out[name]["max_s"]
        assert len(out[name]["times_s"]) == 3
    assert (out["batch_size"], out["seq_length"], out["dtype"], out["repeats"]) == (2, 8, "float32", 3)
    assert out["device"] == device_description()


def test_side_by_side_alternates(clock):
    order = []

    def run(name: str, seconds_per_call: float):
        def call():  # the n-th call of a run takes n times its seconds
            order.append(name)
            clock.now += seconds_per_call * order.count(name)
        return call

    times = time_side_by_side({"a": run("a", 0.25), "b": run("b", 0.125)}, repeats=2, warmup=1)
    assert order == ["a", "b"] * 3
    assert times == {"a": [0.5, 0.75], "b": [0.25, 0.375]}
    # Settled: each timed call right after an untimed one of its own.
    order.clear()
    times = time_side_by_side({"a": run("a", 0.25), "b": run("b", 0.125)}, repeats=2, warmup=1, settle=1)
    assert order == ["a", "b"] + ["a", "a", "b", "b"] * 2
    assert times == {"a": [0.75, 1.25], "b": [0.375, 0.625]}
    stats = summarize([3.0, 1.0, 2.0], batch_size=4)
    assert (stats["median_s"], stats["min_s"], stats["max_s"], stats["sequences_per_s"]) == (2.0, 1.0, 3.0, 2.0)


def test_bad_arguments(tiny_bert_params, tiny_bert_config):
    with pytest.raises(JaxpruneError):
        time_forward(tiny_bert_params, tiny_bert_config, batch_size=1, seq_length=8, repeats=0)
    with pytest.raises(JaxpruneError):
        time_forward(tiny_bert_params, tiny_bert_config, batch_size=1,
                     seq_length=tiny_bert_config.max_position_embeddings + 1)


def test_versions_and_device():
    info = versions()
    assert info["jax"] == jax.__version__ and info["python"].count(".") == 2
    assert device_description().startswith(jax.devices()[0].platform)


def test_write_results_never_overwrites(tmp_path, capsys):
    first = write_results(tmp_path / "res", "bench_cpu_day", {"run": 1}, "| one |\n")
    second = write_results(tmp_path / "res", "bench_cpu_day", {"run": 2}, "| two |\n")
    (tmp_path / "res" / "bench_cpu_day_run3.md").write_text("made by hand")  # a .md alone also takes the name
    fourth = write_results(tmp_path / "res", "bench_cpu_day", {"run": 4}, "| four |\n")
    assert [Path(p).name for p in (first, second, fourth)] == ["bench_cpu_day", "bench_cpu_day_run2",
                                                                "bench_cpu_day_run4"]
    assert [json.loads(Path(p + ".json").read_text())["run"] for p in (first, second, fourth)] == [1, 2, 4]
    assert Path(first + ".md").read_text() == "| one |\n"
    assert "| four |" in capsys.readouterr().out


def test_write_results_reports_an_unwritable_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(JaxpruneError, match="cannot write results to .*pass a writable --out"):
        write_results(tmp_path / "file" / "res", "bench", {}, "")
