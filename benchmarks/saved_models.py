"""Re-time finished runs: each run's compacted model against its dense (pruned, uncompacted) model.

A run folder written by ``experiments/run.py`` or ``experiments/table1.py``
holds ``pruned/`` (the student at full shape, pruned weights zero) and
``compacted/`` (the same function with the pruned heads and neurons removed).
For every run given, both are loaded and timed side by side
(``jaxprune.evaluation.timing.compare_inference``: jitted, compilation excluded, runs
alternated, median) at the batch shape and precision asked for, on whatever
device is present; so the speed column of a results table can be re-measured
after a code change or on another machine without training again.

    python benchmarks/saved_models.py results/table1/s25/seed0 results/table1/s50/seed0
    python benchmarks/saved_models.py results/table1/*/seed0 --batch-size 32 --length 96 --dtype bfloat16

Results go to ``benchmarks/results/saved_models_<device>_<date>.{json,md}``.

:func:`time_models` times any number of saved models together (loaded and compiled first,
then timed in interleaved rounds): ``experiments/table1.py`` times the teacher and every
row's compacted model with it, so all of Table I's times come from one side-by-side run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def time_models(models: Mapping[str, str | os.PathLike], *, batch_size: int, seq_length: int,
                dtype: str = "float32", repeats: int = 10, warmup: int = 2,
                log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Time saved models side by side: each loaded (``from_pretrained``) and compiled first, then
    ``warmup`` untimed rounds and ``repeats`` timed rounds, each round calling every model once in
    order (A B C, A B C, ...), so drift of the machine hits them all alike.

    Args:
      models: a name for each model folder (or hub id).
      batch_size / seq_length: the random ``input_ids`` (B, T) int32 every model reads.
      dtype: compute dtype name (params stay float32).

    Returns:
      JSON-ready dict: ``device``, ``batch_size``, ``seq_length``, ``dtype``, ``repeats``,
      ``warmup`` and ``models``: for each name its ``path``, ``params``, ``compile_s``,
      ``median_s``, ``min_s``, ``max_s``, ``sequences_per_s`` and ``times_s`` (seconds per batch).
    """
    import jax.numpy as jnp

    from jaxprune.evaluation.timing import compiled_forward, device_description, summarize, time_side_by_side
    from jaxprune.models.bert import count_params
    from jaxprune.models.loading import from_pretrained

    runs, loaded = {}, {}
    for name, folder in models.items():
        log(f"[saved_models] compiling {name}: {folder}")
        params, config = from_pretrained(folder)
        runs[name], compile_s = compiled_forward(params, config, batch_size, seq_length, jnp.dtype(dtype))
        loaded[name] = {"path": str(folder), "params": count_params(params), "compile_s": compile_s}
    log(f"[saved_models] timing {len(runs)} models side by side, {repeats} rounds")
    times = time_side_by_side(runs, repeats=repeats, warmup=warmup)
    return {"device": device_description(), "batch_size": batch_size, "seq_length": seq_length,
            "dtype": jnp.dtype(dtype).name, "repeats": repeats, "warmup": warmup,
            "models": {name: {**loaded[name], **summarize(times[name], batch_size), "times_s": times[name]}
                       for name in runs}}


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
