"""Attention alone: jaxprune.models.bert.attend by query block vs jax.nn.dot_product_attention and PyTorch SDPA.

For each shape (batch B, heads N, length T, head dim 32, float32, no padding)
every variant is compiled, warmed up and then timed round after round
(``jaxprune.evaluation.timing.time_side_by_side``):

* ``attend/all``: ``attend`` with every query at once (``query_block=T``);
* ``attend/qNNN``: ``attend`` a block of NNN queries at a time (``lax.map``);
* ``jax.nn.dpa``: ``jax.nn.dot_product_attention`` on (B, T, N, D), what the
  model used before ``attend``;
* ``torch_sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` on
  (B, N, T, D) with an additive mask, the kernel transformers' BERT calls.

This is the measurement behind ``jaxprune.models.bert.CPU_HEAD_SCORE_BYTES``, which
sets the query block the model uses on CPU (on GPUs it attends all queries at
once); the table names the variant the model would use. Results go
to ``benchmarks/results/attention_<device>_<date>.{json,md}``.

    python benchmarks/attention.py            # ~1 minute on 2 CPU cores
    python benchmarks/attention.py --quick    # two small shapes
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, run_script, whole_number

RESULTS = Path(__file__).resolve().parent / "results"
# (batch, heads, length): the inference benchmark's cells (12 heads) and compacted widths.
SHAPES = ((1, 12, 128), (32, 12, 128), (32, 3, 128), (8, 12, 512), (8, 6, 512), (8, 3, 512), (16, 12, 512),
          (8, 12, 384))
QUICK_SHAPES = ((2, 12, 128), (2, 12, 256))
BLOCKS = (256, 192, 128, 64)
HEAD_DIM = 32


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=whole_number(1), default=7, help="timed rounds")
    parser.add_argument("--warmup", type=whole_number(0), default=2, help="untimed rounds after compiling")
    parser.add_argument("--quick", action="store_true", help="two small shapes, 3 rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return parser.parse_args(argv)




def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxprune.models.bert import attend, default_query_block, equal_blocks
    from benchmarks._common import device_slug, versions, write_results
    from jaxprune.evaluation.timing import device_description, summarize, time_side_by_side

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    repeats = 3 if args.quick else args.repeats
    started, load_before = time.time(), os.getloadavg()
    rows = []
    for batch, heads, length in shapes:
        print(f"[attention] {batch}x{heads}x{length}", flush=True)
        rng = np.random.default_rng(0)
        q, k, v = (rng.normal(size=(batch, heads, length, HEAD_DIM)).astype(np.float32) for _ in range(3))
        key_mask = jnp.ones((batch, length), bool)
        qj, kj, vj = (jnp.asarray(a) for a in (q, k, v))
        runs = {}

        def jax_run(fn, *arrays):
            compiled = jax.jit(fn).lower(*arrays).compile()
            return lambda: compiled(*arrays).block_until_ready()

        scaled_q = qj * HEAD_DIM**-0.5
        runs["attend/all"] = jax_run(lambda a, b, c: attend(a, b, c, key_mask, query_block=length), scaled_q, kj, vj)
        # The block sizes attend really uses (equal blocks) for the ones asked for and the default.
        asked = (*BLOCKS, default_query_block(length) or length)
        effective = {equal_blocks(length, b)[1] for b in asked}
        default = equal_blocks(length, asked[-1])[1]
        for block in sorted(effective, reverse=True):
            if block < length:
                runs[f"attend/q{block}"] = jax_run(
                    lambda a, b, c, block=block: attend(a, b, c, key_mask, query_block=block), scaled_q, kj, vj
                )
        token_major = [jnp.swapaxes(a, 1, 2) for a in (qj, kj, vj)]
        runs["jax.nn.dpa"] = jax_run(
            lambda a, b, c: jax.nn.dot_product_attention(a, b, c, mask=key_mask[:, None, None, :]), *token_major
        )
        if torch is not None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            tq, tk, tv = (torch.from_numpy(a).to(device) for a in (q, k, v))
            bias = torch.zeros(batch, 1, 1, length, device=device)

            def torch_run():
                with torch.inference_mode():
                    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=bias)
                if device == "cuda":
                    torch.cuda.synchronize()
                return out

            runs["torch_sdpa"] = torch_run
        times = time_side_by_side(runs, repeats=repeats, warmup=args.warmup)
        medians = {name: statistics.median(t) for name, t in times.items()}
        rows.append({"batch": batch, "heads": heads, "length": length, "head_dim": HEAD_DIM,
                     "times_s": times, "stats": {name: summarize(t, batch) for name, t in times.items()},
                     "best_attend": min((n for n in medians if n.startswith("attend")), key=medians.get),
                     "model_default": "attend/all" if default >= length else f"attend/q{default}"})
    blocks = sorted({int(n.split("/q")[1]) for row in rows for n in row["stats"] if "/q" in n}, reverse=True)
    columns = ["attend/all", *(f"attend/q{b}" for b in blocks), "jax.nn.dpa", "torch_sdpa"]
    lines = [
        f"# Attention benchmark, {datetime.date.today().isoformat()}",
        "",
        f"- device: {device_description()}",
        f"- command: `python benchmarks/attention.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(),
        f"- versions: {versions()}",
        f"- float32, head dim {HEAD_DIM}, no padding; {repeats} rounds (median ms), warmup {args.warmup}",
        f"- load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}; "
        f"wall {time.time() - started:.0f} s",
        "",
        "| B x N x T | " + " | ".join(columns) + " | best attend | model's attend vs torch SDPA |",
        "|---" * (len(columns) + 3) + "|",
    ]
    for row in rows:
        med = {name: s["median_s"] for name, s in row["stats"].items()}
        cells = [f"{med[c] * 1e3:.1f}" if c in med else "-" for c in columns]
        ratio = f"{med['torch_sdpa'] / med[row['model_default']]:.2f}x" if "torch_sdpa" in med else "-"
        lines.append(f"| {row['batch']}x{row['heads']}x{row['length']} | " + " | ".join(cells)
                     + f" | {row['best_attend']} | {ratio} |")
    payload = {"device": device_description(), "versions": versions(), "date": datetime.date.today().isoformat(),
               "argv": argv if argv is not None else sys.argv[1:], "repeats": repeats, "warmup": args.warmup,
               "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_before": load_before,
               "load_after": os.getloadavg(), "rows": rows}
    stem = f"attention_{device_slug()}_{datetime.date.today().isoformat()}"
    write_results(args.out, stem, payload, "\n".join(lines) + "\n")
    return payload


if __name__ == "__main__":
    raise SystemExit(run_script(main))
