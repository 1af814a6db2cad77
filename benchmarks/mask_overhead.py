"""Overhead of block masks on a BERT-base-shaped train step, measured side by side.

Every variant runs jaxprune's own train step (``jaxprune.training.step.make_train_step``,
compiled by ``benchmarks/_train_steps.py``: forward with dropout, cross-entropy, one optax
update of ``(params, scores)``, AdamW on the weights and Adam on the scores) on the same
batch, with the pruner training builds (``PruningConfig.build``: ``bert_rules`` with every
rule weight 1.0, ``--method``, ``--scope``), its keep schedule held at ``--keep-fraction``:

* ``dense``: the identity pruner (no scores);
* ``heads+neurons``: heads and FFN neurons (``attention_blocks="heads"``, training's default);
* ``blocks32``: 32x32 blocks of all six encoder kernels (training scores whole FFN
  neurons, so here the FFN rule alone is swapped for 32x32 blocks);
* ``hybrid``: 32x32 blocks in attention, neurons in the FFN (``attention_blocks="blocks"``;
  off by default).

Steps are compiled ahead of time (compilation excluded), warmed up, then run
round-robin (dense, masked, ..., dense, masked, ...) so machine drift hits all
variants alike. The median step time of each masked variant is divided by the
dense median (and, less sensitive to drift, the median of the per-round
ratios is reported too). Results go to ``benchmarks/results/mask_overhead_<device>.json``.

    python benchmarks/mask_overhead.py                  # BERT-base shape, batch 8 x 64 tokens
    python benchmarks/mask_overhead.py --batch-size 32 --seq-length 128 --repeats 10
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import statistics
import sys
from typing import Any

import jax
import numpy as np

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from jaxprune._extras import exit_without

    exit_without("benchmarks/mask_overhead.py", "train")  # its imports need it: one line, not a traceback

from benchmarks._common import device_slug, unused_stem, versions
from benchmarks._train_steps import compiled_train_step, step_batch, training_pruner
from experiments.cli_args import Parser, fraction_kept, run_script, whole_number
from jaxprune import mask
from jaxprune.errors import JaxpruneError
from jaxprune.evaluation.timing import device_description, time_side_by_side
from jaxprune.models.bert import count_params, init_params
from jaxprune.models.config import BertConfig
from jaxprune.training.config import OptimizerConfig, TrainConfig

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# training_pruner's units per variant (blocks are 32x32, PruningConfig's default block_shape).
VARIANTS = {
    "dense": None,
    "heads+neurons": dict(attention="heads", ffn="neurons"),
    "blocks32": dict(attention="blocks", ffn="blocks"),
    "hybrid": dict(attention="blocks", ffn="neurons"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=whole_number(1), default=8)
    parser.add_argument("--seq-length", type=whole_number(1), default=64, help="at most 512")
    parser.add_argument("--vocab-size", type=whole_number(2), default=30522)
    parser.add_argument("--layers", type=whole_number(1), default=12)
    parser.add_argument("--hidden", type=whole_number(1), default=768)
    parser.add_argument("--heads", type=whole_number(1), default=12)
    parser.add_argument("--ffn", type=whole_number(1), default=3072)
    parser.add_argument("--repeats", type=whole_number(1), default=7, help="timed steps per variant")
    parser.add_argument("--warmup", type=whole_number(0), default=2, help="untimed steps per variant")
    parser.add_argument("--keep-fraction", type=fraction_kept, default=0.5)
    parser.add_argument("--scope", choices=("local", "global"), default="global")
    parser.add_argument("--method", choices=("topk", "soft"), default="topk")
    parser.add_argument("--variants", default="dense,heads+neurons,blocks32", help=f"comma list of {list(VARIANTS)}")
    parser.add_argument("--output", default=None,
                        help="JSON path (default results/mask_overhead_<device>.json, or _runN if taken)")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or "dense" not in names:
        parser.error(f"--variants must include dense and come from {list(VARIANTS)}; got {unknown or names}")
    if args.seq_length > 512:
        parser.error(f"--seq-length {args.seq_length} exceeds the 512 position embeddings")
    if args.hidden % args.heads or any("blocks" in n for n in names) and args.hidden % 32:
        parser.error(f"--hidden {args.hidden} must divide by --heads {args.heads} (and by 32 for the block variants)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    names = args.variants.split(",")
    config = BertConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=args.ffn,
        label_names=tuple(f"L{i}" for i in range(12)),
    )
    rng = np.random.default_rng(0)
    batch = step_batch(rng.integers(1, args.vocab_size, (args.batch_size, args.seq_length)),
                       rng.integers(0, 12, args.batch_size))
    train_config = TrainConfig(batch_size=args.batch_size, optimizer=OptimizerConfig(learning_rate=1e-5))
    base_params = init_params(config, jax.random.key(0))

    runs, info = {}, {}
    for name in names:
        if VARIANTS[name] is None:
            pruner = mask.Pruner.from_rules(base_params, [])
        else:
            pruner = training_pruner(base_params, config, args.keep_fraction, method=args.method, scope=args.scope,
                                     **VARIANTS[name])
        runs[name], compile_s = compiled_train_step(base_params, config, train_config, pruner, batch,
                                                    total_steps=args.warmup + args.repeats)
        info[name] = {
            "compile_s": compile_s,
            "scored_blocks": pruner.layout.num_blocks,
            "scored_weights": pruner.layout.num_weights,
        }
        print(f"{name}: compiled in {info[name]['compile_s']:.1f}s, "
              f"{info[name]['scored_blocks']} scored blocks", flush=True)

    load_before = os.getloadavg()
    # Warm-up rounds, then timed rounds: every variant once per round, in order.
    times = time_side_by_side(runs, repeats=args.repeats, warmup=args.warmup)

    dense = statistics.median(times["dense"])
    results: dict[str, Any] = {}
    for name in names:
        median = statistics.median(times[name])
        # Each round times every variant back to back, so the per-round ratio cancels slow drift.
        paired = statistics.median(t / d for t, d in zip(times[name], times["dense"]))
        results[name] = {
            **info[name],
            "median_s": median,
            "min_s": min(times[name]),
            "ratio_to_dense": median / dense,
            "paired_ratio_median": paired,
            "times_s": times[name],
        }
        print(f"{name:>14}: median {median * 1e3:8.1f} ms/step  ratio {median / dense:.3f}  "
              f"(median of per-round ratios {paired:.3f})")

    out = {
        "benchmark": "mask_overhead",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_description(),
        # Other processes on the machine add noise; the 1-minute load average shows how much.
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "versions": versions(),
        "command": "python benchmarks/mask_overhead.py " + " ".join(
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if v is not None
        ),
        "model": {
            "vocab_size": args.vocab_size,
            "hidden_size": args.hidden,
            "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads,
            "intermediate_size": args.ffn,
            "num_labels": 12,
            "params": count_params(base_params),
        },
        "step": {
            "batch_size": args.batch_size,
            "seq_length": args.seq_length,
            "dtype": "float32",
            "train_step": "jaxprune.training.step.make_train_step (dropout on)",
            "optimizer": "adamw on weights (+ adam on scores when masked), one optax update",
            "pruner": "PruningConfig.build: bert_rules, rule weights 1.0, zero-initialised scores",
            "keep_fraction": args.keep_fraction,
            "method": args.method,
            "scope": args.scope,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "order": "round-robin over variants, compile excluded, median of repeats",
        },
        "results": results,
        "goal": "ratio_to_dense <= 1.15",
    }
    if args.output:
        path = pathlib.Path(args.output)
    else:
        path = RESULTS / (unused_stem(RESULTS, f"mask_overhead_{device_slug()}", (".json",)) + ".json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise JaxpruneError(f"cannot write {path} ({err.strerror}); pass a writable --output") from None
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    raise SystemExit(run_script(main))
