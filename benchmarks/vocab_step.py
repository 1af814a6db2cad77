"""Teacher fine-tuning step with the full and the pruned vocabulary, side by side.

    python benchmarks/vocab_step.py --data-dir ../shared/data/mahanews-shc

Both steps are jaxprune's own (``jaxprune.training.step.make_train_step``, compiled by
``benchmarks/_train_steps.py``: forward with dropout, cross-entropy, AdamW on every
parameter, no pruning), for the same texts: the first ``--batch-size`` training headlines,
each tokenized by its model's tokenizer and padded to each of ``--lengths``. The pruned
vocabulary is built from the training split, as ``run.py --prune-vocab`` builds it. Both
steps are compiled first, then timed alternately, round after round. The AdamW update
touches every embedding row whether a batch uses it or not, which is why the full
vocabulary costs so much more than its share of the FLOPs.

Results go to ``benchmarks/results/vocab_step_<device>_<date>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, run_script, whole_number

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="e5-small", help="e5-small (default), minilm or a BERT folder")
    parser.add_argument("--data-dir", default=None, help="MahaNews folder (default: the embedded corpus)")
    parser.add_argument("--batch-size", type=whole_number(1), default=32)
    parser.add_argument("--lengths", type=whole_number(8), nargs="+", default=[32, 64, 96],
                        help="tokens per text (padded); the pipeline buckets SHC headlines into 32, 64 and 96")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=whole_number(1), default=10, help="timed rounds (median shown)")
    parser.add_argument("--warmup", type=whole_number(0), default=2)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return parser.parse_args(argv)


def _batch(tokenizer, texts: list[str], labels, length: int) -> dict[str, Any]:
    import jax.numpy as jnp
    import numpy as np

    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="np")
    return {
        "input_ids": jnp.asarray(encoded["input_ids"], jnp.int32),
        "attention_mask": jnp.asarray(encoded["attention_mask"], jnp.int32),
        "token_type_ids": jnp.zeros(encoded["input_ids"].shape, jnp.int32),
        "labels": jnp.asarray(np.asarray(labels), jnp.int32),
        "weight": jnp.ones((len(texts),), jnp.float32),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import tempfile

    from jaxprune.models.bert import count_params
    from jaxprune.data import load_mahanews, load_offline_corpus
    from jaxprune.models.loading import from_pretrained, load_tokenizer
    from jaxprune.models.sources import describe, model_folder
    from benchmarks._common import device_slug, versions, write_results
    from benchmarks._train_steps import compiled_train_step
    from jaxprune.evaluation.timing import device_description, summarize, time_side_by_side
    from jaxprune.mask import Pruner
    from jaxprune.training.config import OptimizerConfig, TrainConfig
    from jaxprune.vocab import prune_model_folder

    if args.data_dir:
        splits, info = load_mahanews(args.data_dir, variant="SHC", label_names=None, eval_fraction=0.2, seed=0)
    else:
        splits, info = load_offline_corpus(label_names=None, eval_fraction=0.2, seed=0)
    train_texts = list(splits["train"]["text"])
    texts, labels = train_texts[: args.batch_size], list(splits["train"]["label"][: args.batch_size])
    folder = model_folder(args.model)
    config = TrainConfig(epochs=1, optimizer=OptimizerConfig(learning_rate=1e-4), batch_size=args.batch_size,
                         compute_dtype=args.dtype)

    runs, compile_s, params_count = {}, {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        pruned_folder = os.path.join(scratch, "pruned")
        started = time.perf_counter()
        vocabulary = prune_model_folder(folder, pruned_folder, train_texts)
        prune_s = time.perf_counter() - started
        for variant, source in (("full vocabulary", folder), ("pruned vocabulary", pruned_folder)):
            params, model_config = from_pretrained(source, label_names=info.label_names)
            pruner = Pruner.from_rules(params, [])  # plain fine-tuning: nothing scored
            for length in args.lengths:
                name = f"{variant}/{length}"
                batch = _batch(load_tokenizer(source), texts, labels, length)
                runs[name], compile_s[name] = compiled_train_step(params, model_config, config, pruner, batch,
                                                                  total_steps=1000)
                params_count[name] = count_params(params)
                print(f"[vocab_step] compiled the {variant} step at length {length} in {compile_s[name]:.1f} s",
                      flush=True)
            del params

    load_before, started = os.getloadavg(), time.time()
    times = time_side_by_side(runs, repeats=args.repeats, warmup=args.warmup)
    rows = []
    for name, seconds in times.items():
        variant, length = name.split("/")
        full = summarize(times[f"full vocabulary/{length}"], args.batch_size)["median_s"]
        rows.append({"variant": variant, "seq_length": int(length), "params": params_count[name],
                     "step": summarize(seconds, args.batch_size), "compile_s": compile_s[name], "times_s": seconds,
                     "speedup_vs_full": full / summarize(seconds, args.batch_size)["median_s"]})
    rows.sort(key=lambda row: (row["seq_length"], row["variant"]))
    date = datetime.date.today().isoformat()
    payload = {
        "benchmark": "vocab_step", "date": date,
        "command": ("python benchmarks/vocab_step.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "device": device_description(), "versions": versions(), "model": describe(args.model),
        "data": info.source, "train_texts": len(train_texts), "batch_size": args.batch_size,
        "seq_lengths": args.lengths, "dtype": args.dtype, "repeats": args.repeats, "warmup": args.warmup,
        "vocabulary": vocabulary.summary(), "prune_seconds": prune_s,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "timed_wall_s": time.time() - started, "rows": rows,
    }
    write_results(args.out, f"vocab_step_{device_slug()}_{date}", payload, markdown(payload))
    return payload



def markdown(payload: dict[str, Any]) -> str:
    vocabulary = payload["vocabulary"]
    lines = [
        f"# Teacher fine-tuning step, full vs pruned vocabulary, {payload['date']}",
        "",
        f"- device: {payload['device']}",
        f"- command: `{payload['command']}`",
        f"- versions: {payload['versions']}",
        f"- model {payload['model']}; data {payload['data']} ({payload['train_texts']} training texts); "
        f"batch {payload['batch_size']} x {payload['seq_lengths']} tokens, {payload['dtype']}",
        f"- vocabulary: {vocabulary['kept_pieces']:,} of {vocabulary['original_pieces']:,} pieces kept "
        f"(built in {payload['prune_seconds']:.1f} s)",
        f"- repeats {payload['repeats']} (median shown), warmup {payload['warmup']}, alternated; load average "
        f"before/after {payload['load_average_before'][0]:.1f} / {payload['load_average_after'][0]:.1f}",
        "",
        "| length | variant | params | ms/step (median) | min | max | samples/s | speedup vs full | compile s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        step = row["step"]
        lines.append(
            f"| {row['seq_length']} | {row['variant']} | {row['params']:,} | {1000 * step['median_s']:.0f} | {1000 * step['min_s']:.0f} | "
            f"{1000 * step['max_s']:.0f} | {step['sequences_per_s']:.1f} | {row['speedup_vs_full']:.2f}x | "
            f"{row['compile_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(run_script(main))
