"""benchmarks/ort_profile.py on a small shape: every variant profiled, shares that sum to one, and
an int8 graph whose matrix products are int8."""

from __future__ import annotations

import json
import statistics

import pytest

pytest.importorskip("onnxruntime")  # the `onnx` extra, part of `test`


@pytest.mark.slow  # the script end to end (four exports and profiled sessions)
def test_profile_names_where_the_time_goes(repo_script, tmp_path):
    profile = repo_script("benchmarks/ort_profile.py")
    payload = profile.main(["--model", "minilm", "--sparsities", "0", "0.75", "--batch-size", "2", "--length", "16",
                            "--repeats", "2", "--warmup", "1", "--out", str(tmp_path)])
    rows = {row["variant"]: row for row in payload["rows"]}
    assert list(rows) == ["dense float32", "dense int8", "s75 float32", "s75 int8"]
    for row in rows.values():
        assert sum(row["share"].values()) == pytest.approx(1.0) and len(row["times_s"]) == 2
        assert row["median_ms"] == pytest.approx(1000 * statistics.median(row["times_s"]))
    assert "MatMul" in rows["dense float32"]["share"] and "MatMul" not in rows["dense int8"]["share"]
    assert rows["s75 int8"]["nodes"]["DynamicQuantizeMatMul"] > 0
    (saved,) = tmp_path.glob("ort_profile_*.json")
    assert json.loads(saved.read_text(encoding="utf-8"))["rows"] == payload["rows"]
    table = saved.with_suffix(".md").read_text(encoding="utf-8")
    assert "| s75 int8 |" in table and "--sparsities 0 0.75" in table
