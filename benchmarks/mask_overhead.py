"""Overhead of block masks on a BERT-base-shaped train step, measured side by side.

Every variant runs the same train step (forward, backward, Adam on the
weights; plus Adam on the scores when masked) on the same batch:

* ``dense``: no mask;
* ``heads+neurons``: top-k over head and FFN-neuron scores (``bert_rules`` default);
* ``blocks32``: top-k over 32x32 blocks of all six encoder kernels;
* ``hybrid``: 32x32 blocks in attention, neurons in the FFN (off by default).

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
import functools
import json
import os
import pathlib
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import mask
from jaxprune.models.bert import BertForSequenceClassification, count_params, init_params
from jaxprune.models.bert_rules import bert_rules
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError
from jaxprune.evaluation.timing import device_description, device_slug, unused_stem, versions

from experiments.cli_args import Parser, fraction_kept, run_script, whole_number

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
VARIANTS = {
    "dense": None,
    "heads+neurons": dict(attention="heads", ffn="neurons"),
    "blocks32": dict(attention="blocks", ffn="blocks", block_shape=(32, 32)),
    "hybrid": dict(attention="blocks", ffn="neurons", block_shape=(32, 32)),
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


def _loss(params, batch, model):
    logits = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"], deterministic=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()


def train_step(state, batch, keep_fraction, *, model, layout, mask_config, weight_tx, score_tx):
    """One step; ``layout=None`` is the dense baseline (scores empty and untouched)."""
    params, scores, weight_state, score_state = state
    if layout is None:
        loss, grads = jax.value_and_grad(_loss)(params, batch, model)
        score_grads = scores
    else:
        def masked_loss(params, scores):
            return _loss(mask.apply_masks(params, scores, keep_fraction, layout, mask_config), batch, model)

        loss, (grads, score_grads) = jax.value_and_grad(masked_loss, argnums=(0, 1))(params, scores)
        score_updates, score_state = score_tx.update(score_grads, score_state)
        scores = optax.apply_updates(scores, score_updates)
    updates, weight_state = weight_tx.update(grads, weight_state)
    params = optax.apply_updates(params, updates)
    return (params, scores, weight_state, score_state), loss


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
    model = BertForSequenceClassification(config, dtype=jnp.float32)
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": jnp.asarray(rng.integers(1, args.vocab_size, (args.batch_size, args.seq_length)), jnp.int32),
        "attention_mask": jnp.ones((args.batch_size, args.seq_length), jnp.int32),
        "labels": jnp.asarray(rng.integers(0, 12, args.batch_size), jnp.int32),
    }
    keep = jnp.float32(args.keep_fraction)
    weight_tx, score_tx = optax.adam(1e-5), optax.adam(1e-2)
    mask_config = mask.MaskConfig(method=args.method, scope=args.scope)
    base_params = init_params(config, jax.random.key(0))

    steps, states, info = {}, {}, {}
    for name in names:
        layout = None if VARIANTS[name] is None else mask.build_layout(base_params, bert_rules(config, **VARIANTS[name]))
        params = jax.tree.map(jnp.copy, base_params)
        scores = {} if layout is None else mask.init_scores(layout, jax.nn.initializers.normal(1.0), jax.random.key(1))
        state = (params, scores, weight_tx.init(params), score_tx.init(scores))
        step = functools.partial(
            train_step, model=model, layout=layout, mask_config=mask_config, weight_tx=weight_tx, score_tx=score_tx
        )
        start = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=0).lower(state, batch, keep).compile()
        info[name] = {
            "compile_s": time.perf_counter() - start,
            "scored_blocks": 0 if layout is None else layout.num_blocks,
            "scored_weights": 0 if layout is None else layout.num_weights,
        }
        for _ in range(args.warmup):
            state, loss = compiled(state, batch, keep)
        jax.block_until_ready(loss)
        steps[name], states[name] = compiled, state
        print(f"{name}: compiled in {info[name]['compile_s']:.1f}s, "
              f"{info[name]['scored_blocks']} scored blocks", flush=True)

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            start = time.perf_counter()
            states[name], loss = steps[name](states[name], batch, keep)
            jax.block_until_ready((states[name], loss))
            times[name].append(time.perf_counter() - start)

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
            "optimizer": "adam on weights (+ adam on scores when masked)",
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
