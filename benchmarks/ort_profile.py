"""Where ONNX Runtime spends a forward pass: the share of each operator type, float32 and int8.

    python benchmarks/ort_profile.py --model e5-small --sparsities 0 0.75 --batch-size 32 --length 128

Each model (random weights of the named shape; ``sNN`` sliced as ``benchmarks/inference.py`` slices
it) is exported by ``jaxprune.export.to_onnx`` and quantised by ``jaxprune.export_int8.quantize_int8``
(the settings of ``experiments/export_onnx.py --quantize int8``), loaded as
``jaxprune.export.onnx_session`` loads it, with ONNX Runtime's profiler on, and run ``--repeats``
times after ``--warmup`` untimed runs. The table gives the median time of a run (the profiler on)
and the share of the kernels' time that each operator type took (the profiler's
``*_kernel_time`` events), with the count of such nodes in the optimised graph. Shares, not times, are the figures to compare across
machines: they say what a smaller encoder does not make cheaper.

Results go to ``benchmarks/results/ort_profile_<device>_<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import MODELS
from experiments.cli_args import Parser, fraction_pruned, run_script, whole_number

RESULTS = Path(__file__).resolve().parent / "results"
SHOWN = 6  # operator types per row; the rest are summed as "other"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODELS, default="e5-small",
                        help="the shape profiled, with random weights")
    parser.add_argument("--sparsities", nargs="+", type=fraction_pruned, default=[0.0, 0.75],
                        help="encoder sparsities (0: the dense model)")
    parser.add_argument("--batch-size", type=whole_number(1), default=32, help="texts per run")
    parser.add_argument("--length", type=whole_number(1), default=128, help="tokens per text")
    parser.add_argument("--repeats", type=whole_number(1), default=5, help="profiled runs")
    parser.add_argument("--warmup", type=whole_number(0), default=2, help="untimed runs first")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import jax
    import numpy as np
    import onnx

    from benchmarks._common import device_slug, model_config, versions, write_results
    from benchmarks.inference import keep_uniform
    from jaxprune.export import to_onnx
    from jaxprune.export_int8 import quantize_int8
    from jaxprune.models.bert import init_params

    args = parse_args(argv)
    config = model_config(args.model)
    dense = init_params(config, jax.random.key(0))
    ids = np.random.default_rng(0).integers(5, 1000, size=(args.batch_size, args.length)).astype(np.int64)
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxprune_profile_") as folder:
        for sparsity in args.sparsities:
            params, cfg = (dense, config) if sparsity == 0 else keep_uniform(dense, config, 1.0 - sparsity)
            name = "dense" if sparsity == 0 else f"s{round(100 * sparsity)}"
            path = Path(folder) / f"{name}.onnx"
            onnx.save_model(to_onnx(params, cfg), os.fspath(path))
            int8 = quantize_int8(path, Path(folder) / f"{name}.int8.onnx")
            for variant, file in ((f"{name} float32", path), (f"{name} int8", int8)):
                rows.append(profile(variant, file, ids, args.repeats, args.warmup, Path(folder)))
                print(f"{variant}: {rows[-1]['median_ms']:.1f} ms", flush=True)
    payload = {"model": args.model, "batch_size": args.batch_size, "length": args.length, "repeats": args.repeats,
               "device": device_slug(), "versions": versions(), "rows": rows,
               "command": "python benchmarks/ort_profile.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    stem = f"ort_profile_{device_slug()}_{datetime.date.today().isoformat()}"
    write_results(args.out, stem, payload, report(payload))
    return payload


def profile(variant: str, path: Path, ids: Any, repeats: int, warmup: int, folder: Path) -> dict[str, Any]:
    """Median time of a run of ``path`` on ``ids`` and each operator type's share of the kernel time."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = os.fspath(folder / f"{path.stem}.optimised.onnx")
    options.log_severity_level = 3  # ORT warns that an ENABLE_ALL graph is saved for this machine only
    options.enable_profiling = True
    options.profile_file_prefix = os.fspath(folder / path.stem)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    times = []
    for _ in range(warmup + repeats):
        start = time.perf_counter()
        session.run(["logits"], feeds)
        times.append(time.perf_counter() - start)
    with open(session.end_profiling(), encoding="utf-8") as file:
        events = json.load(file)
    # Only the timed runs: the kernels inside the last `repeats` model_run events.
    runs = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run"][-repeats:]
    kernel_us: collections.Counter = collections.Counter()
    for event in events:
        if (event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
                and any(start <= event["ts"] <= end for start, end in runs)):
            kernel_us[event["args"]["op_name"]] += event["dur"]
    times = times[warmup:]
    nodes = collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    total = sum(kernel_us.values())
    return {"variant": variant, "median_ms": 1000 * float(np.median(times)), "times_s": times,
            "share": {op: us / total for op, us in kernel_us.most_common()}, "nodes": dict(nodes)}


def report(payload: dict[str, Any]) -> str:
    lines = [f"# ONNX Runtime profile: {payload['model']}, {payload['batch_size']} x {payload['length']} tokens, "
             f"{payload['device']}", "", f"`{payload['command']}`", "",
             "| variant | median (ms) | kernel time by operator type (nodes in the optimised graph) |",
             "|---|---|---|"]
    for row in payload["rows"]:
        shares = list(row["share"].items())
        shown = [f"{op} {share:.0%} ({row['nodes'].get(op, 0)})" for op, share in shares[:SHOWN]]
        rest = sum(share for _, share in shares[SHOWN:])
        lines.append(f"| {row['variant']} | {row['median_ms']:.1f} | {', '.join(shown)}"
                     f"{f', other {rest:.0%}' if rest else ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(run_script(main, interrupted="interrupted; nothing was written"))
