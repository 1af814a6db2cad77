"""Samples/s of the dense and the masked BERT train step, fp32 and bf16, side by side.

Both steps are jaxprune's own train step (``jaxprune.training.step.make_train_step``,
compiled by ``benchmarks/_train_steps.py``), the one training runs: forward with dropout
on, softmax cross-entropy, one optax update of ``(params, scores)`` (AdamW on the params,
Adam on the scores), the state donated.

* dense: the identity pruner (``jaxprune.mask.Pruner.from_rules(params, [])``), as when
  fine-tuning a teacher;
* masked: the pruner training builds (``PruningConfig.build``: heads and FFN neurons,
  every rule weight 1.0, global top-k), its keep schedule held at ``--keep-fraction``.

Every variant is compiled first, then the variants are timed alternately round after
round. On a GPU of a known kind the model FLOPs utilisation is reported: ``(6 *
non-embedding params * tokens + 12 * layers * batch * length^2 * hidden) / step time /
datasheet peak`` (the dense model's FLOPs also for the masked step: masking removes no
compute). ``null`` on CPU.

Results go to ``benchmarks/results/train_step_<device>_<date>.{json,md}``.
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

from experiments.cli_args import Parser, fraction_kept, run_script, whole_number

RESULTS = Path(__file__).resolve().parent / "results"
MAX_LENGTH = 512  # max_position_embeddings of both model shapes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("minilm", "mahabert", "e5-small"),
                        help="default: mahabert on GPU, minilm on CPU")
    parser.add_argument("--batch-size", type=whole_number(1), help="default: 32 on GPU, 8 on CPU")
    parser.add_argument("--length", type=whole_number(1), default=128, help=f"at most {MAX_LENGTH}")
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"), default=["float32", "bfloat16"])
    parser.add_argument("--keep-fraction", type=fraction_kept, default=0.5, help="masked step: fraction of the encoder's scored weights kept (global top-k "
                        "over heads and FFN neurons, as trained)")
    parser.add_argument("--repeats", type=whole_number(1), help="timed rounds (default 20 on GPU, 5 on CPU)")
    parser.add_argument("--warmup", type=whole_number(0), default=2)
    parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before JAX starts")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    if args.length > MAX_LENGTH:
        parser.error(f"--length {args.length} exceeds the models' {MAX_LENGTH} position embeddings")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    import jax

    from benchmarks._common import device_slug, model_config, peak_flops_per_s, versions, write_results
    from benchmarks._train_steps import compiled_train_step, step_batch, training_pruner
    from jaxprune import mask
    from jaxprune.evaluation.timing import device_description, summarize, time_side_by_side
    from jaxprune.models.bert import count_params, init_params
    from jaxprune.training.config import OptimizerConfig, TrainConfig

    on_gpu = jax.devices()[0].platform != "cpu"
    model_name = args.model or ("mahabert" if on_gpu and not args.quick else "minilm")
    batch_size = args.batch_size or (2 if args.quick else 32 if on_gpu else 8)
    length = 32 if args.quick else args.length
    repeats = args.repeats or (2 if args.quick else 20 if on_gpu else 5)
    warmup = 1 if args.quick else args.warmup
    config = model_config(model_name)
    if args.quick:
        config = config.replace(num_hidden_layers=2)

    # Three keys, so the params and the batch stay those of the results already committed.
    params_key, data_key, _ = jax.random.split(jax.random.key(0), 3)
    params = init_params(config, params_key)
    ids_key, label_key = jax.random.split(data_key)
    batch = step_batch(jax.random.randint(ids_key, (batch_size, length), 0, config.vocab_size),
                       jax.random.randint(label_key, (batch_size,), 0, config.num_labels))
    pruners = {"dense": mask.Pruner.from_rules(params, []),
               "masked": training_pruner(params, config, args.keep_fraction)}

    runs, compile_s = {}, {}
    for dtype in args.dtypes:
        train_config = TrainConfig(batch_size=batch_size, compute_dtype=dtype,
                                   optimizer=OptimizerConfig(learning_rate=2e-5))
        for variant, pruner in pruners.items():
            name = f"{dtype}/{variant}"
            runs[name], compile_s[name] = compiled_train_step(params, config, train_config, pruner, batch,
                                                              total_steps=warmup + repeats)
            print(f"[train_step] compiled {name} in {compile_s[name]:.1f} s", flush=True)

    started, load_before = time.time(), os.getloadavg()
    times = time_side_by_side(runs, repeats=repeats, warmup=warmup)
    non_embedding = count_params(params) - count_params(params["embeddings"])
    tokens = batch_size * length
    flops = 6 * non_embedding * tokens + 12 * config.num_hidden_layers * batch_size * length**2 * config.hidden_size
    rows = []
    for name, seconds in times.items():
        dtype, variant = name.split("/")
        stats = summarize(seconds, batch_size)
        peak = peak_flops_per_s(dtype)
        rows.append({
            "dtype": dtype, "variant": variant, "step": stats, "samples_per_s": stats["sequences_per_s"],
            "tokens_per_s": tokens / stats["median_s"], "compile_s": compile_s[name], "times_s": seconds,
            "model_flops_per_step": flops,
            "mfu": None if peak is None else flops / stats["median_s"] / peak,
            "slowdown_vs_dense": stats["median_s"] / summarize(times[f"{dtype}/dense"], batch_size)["median_s"],
        })
    date = datetime.date.today().isoformat()
    payload = {
        "benchmark": "train_step", "date": date,
        "command": ("python benchmarks/train_step.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "device": device_description(), "versions": versions(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "model": model_name, "num_hidden_layers": config.num_hidden_layers, "batch_size": batch_size,
        "seq_length": length, "keep_fraction": args.keep_fraction, "repeats": repeats, "warmup": warmup,
        "params": count_params(params), "non_embedding_params": non_embedding,
        "train_step": "jaxprune.training.step.make_train_step",
        "masked_pruner": {"method": "topk", "scope": "global", "units": "heads and FFN neurons",
                          "rule_weights": 1.0, "scored_blocks": pruners["masked"].layout.num_blocks},
        "scored_units": {"heads": config.num_attention_heads * config.num_hidden_layers,
                         "neurons": config.intermediate_size * config.num_hidden_layers},
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "timed_wall_s": time.time() - started, "rows": rows,
    }
    write_results(args.out, f"train_step_{device_slug()}_{date}{'_quick' if args.quick else ''}", payload,
                  markdown(payload))
    return payload


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"# Train step benchmark, {payload['date']}",
        "",
        f"- device: {payload['device']}",
        f"- command: `{payload['command']}`",
        f"- versions: {payload['versions']}",
        f"- model {payload['model']} ({payload['num_hidden_layers']} layers, {payload['params']:,} params, "
        f"{payload['non_embedding_params']:,} non-embedding), batch {payload['batch_size']} x "
        f"{payload['seq_length']}, masked keep {payload['keep_fraction']} (jaxprune's train step; the masked one "
        f"prunes as training does: global top-k over heads and FFN neurons)",
        f"- repeats {payload['repeats']} (median shown), warmup {payload['warmup']}; load average before/after "
        f"{payload['load_average_before'][0]:.1f} / {payload['load_average_after'][0]:.1f}",
        "",
        "| dtype | step | ms/step | samples/s | tokens/s | vs dense (time) | MFU | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        mfu = "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        lines.append(
            f"| {row['dtype']} | {row['variant']} | {1000 * row['step']['median_s']:.1f} | "
            f"{row['samples_per_s']:.2f} | {row['tokens_per_s']:.0f} | {row['slowdown_vs_dense']:.2f}x | {mfu} | "
            f"{row['compile_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(run_script(main))
