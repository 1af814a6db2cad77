"""Re-time finished runs: each run's compacted model against its dense (pruned, uncompacted) model.

A run folder written by ``experiments/run.py`` or ``experiments/table1.py``
holds ``pruned/`` (the student at full shape, pruned weights zero) and
``compacted/`` (the same function with the pruned heads and neurons removed).
For every run given, both are loaded and timed side by side
(``jaxprune.evaluation.timing.compare_inference``: jitted, compilation excluded, runs
alternated, median) at the batch shape and precision asked for, on whatever
device is present; so the speed column of a results table can be re-measured
after a code change or on another machine without training again.

    python benchmarks/saved_models.py results/table1/s25 results/table1/s50 results/table1/s75
    python benchmarks/saved_models.py results/table1/* --batch-size 32 --length 96 --dtype bfloat16

Results go to ``benchmarks/results/saved_models_<device>_<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

from experiments.cli_args import Parser, run_script, whole_number

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders, each with pruned/ and compacted/")
    parser.add_argument("--batch-size", type=whole_number(1), default=32)
    parser.add_argument("--length", type=whole_number(1), default=96, help="sequence length (Table I used 96)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=whole_number(1), default=10, help="timed rounds per model")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    runs = [run for run in args.runs if run.is_dir() and (run / "compacted").is_dir()]
    skipped = [str(run) for run in args.runs if run not in runs]
    import jax.numpy as jnp

    from jaxprune.models.bert import count_params
    from jaxprune.errors import JaxpruneError
    from jaxprune.models.loading import from_pretrained
    from benchmarks._common import device_slug, versions, write_results
    from jaxprune.evaluation.timing import compare_inference, device_description

    if not runs:
        raise JaxpruneError(f"none of {[str(r) for r in args.runs]} has a compacted/ folder; "
                            "give run folders written by experiments/run.py or experiments/table1.py")

    started, load_before = time.time(), os.getloadavg()
    rows = []
    for run in runs:
        print(f"[saved_models] {run}", flush=True)
        dense = from_pretrained(run / "pruned")
        compacted = from_pretrained(run / "compacted")
        timing = compare_inference(dense, compacted, batch_size=args.batch_size, seq_length=args.length,
                                   dtype=jnp.dtype(args.dtype), repeats=args.repeats)
        rows.append({"run": str(run), "dense_params": count_params(dense[0]),
                     "compacted_params": count_params(compacted[0]), **timing})
    command = "python benchmarks/saved_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"# Saved models re-timed, {datetime.date.today().isoformat()}",
        "",
        f"- device: {device_description()}",
        f"- command: `{command}`",
        f"- versions: {versions()}",
        f"- batch {args.batch_size} x length {args.length}, {args.dtype}, {args.repeats} alternated rounds "
        f"(median); load average before/after {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}; "
        f"wall {time.time() - started:.0f} s",
        *([f"- skipped (no compacted/ folder): {', '.join(skipped)}"] if skipped else []),
        "",
        "| run | params dense (M) | params compacted (M) | dense ms | compacted ms | speedup |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['run']} | {row['dense_params'] / 1e6:.2f} | {row['compacted_params'] / 1e6:.2f} | "
                     f"{row['dense_median_s'] * 1e3:.1f} | {row['compacted_median_s'] * 1e3:.1f} | "
                     f"{row['speedup']:.2f}x |")
    payload = {"device": device_description(), "versions": versions(), "date": datetime.date.today().isoformat(),
               "command": command, "load_before": load_before, "load_after": os.getloadavg(), "rows": rows,
               "skipped": skipped}
    write_results(args.out, f"saved_models_{device_slug()}_{datetime.date.today().isoformat()}", payload,
                  "\n".join(lines) + "\n")
    return payload


if __name__ == "__main__":
    raise SystemExit(run_script(main))
