"""fp32 vs bf16 fine-tuning on MahaNews SHC: the same steps, the same seed, both accuracies.

    python benchmarks/gpu_train.py --model .gpu/model --data-dir .gpu/data

Fine-tunes the model (by default what ``benchmarks/gpu_prepare.py`` wrote: e5-small with the
SHC vocabulary) with jaxprune's own ``fit`` (AdamW, the library's train step, no pruning) once
in float32 and once in bfloat16 compute (params and optimizer state float32 in both), on the
80% training split of the distinct SHC headlines, then evaluates each on the other 20% in the
precision it was trained in. Reports accuracy, macro-F1, the first and final losses and the
time of the whole fit (compilation included). Results go to
``<out>/train_precision_<device>_<date>.{json,md}``.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, positive_number, run_script, whole_number

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def make_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--model", type=Path, default=REPO / ".gpu" / "model", help="model folder")
    p.add_argument("--data-dir", type=Path, default=REPO / ".gpu" / "data", help="folder with SHC_Valid.csv")
    p.add_argument("--epochs", type=whole_number(1), default=3)
    p.add_argument("--batch-size", type=whole_number(1), default=32)
    p.add_argument("--max-length", type=whole_number(8), default=128)
    p.add_argument("--learning-rate", type=positive_number, default=1e-4)
    p.add_argument("--limit", type=whole_number(1), default=None,
                   help="use only the first N training and N eval examples (smoke runs; default: all)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    return run_script(lambda: train_both(args, argv), parser=parser)


def train_both(args, argv) -> dict[str, Any]:
    import jax

    from benchmarks._common import device_slug, versions, write_results
    from jaxprune.data import load_mahanews
    from jaxprune.data.batching import encode_split
    from jaxprune.evaluation.metrics import classification_report
    from jaxprune.evaluation.predict import predict_logits
    from jaxprune.evaluation.timing import device_description
    from jaxprune.models.loading import from_pretrained, load_tokenizer
    from jaxprune.training.bert import BertClassification
    from jaxprune.training.config import OptimizerConfig, TrainConfig
    from jaxprune.training.loop import fit

    splits, data_info = load_mahanews(str(args.data_dir), variant="SHC", seed=0)
    if args.limit:
        splits = {name: split.select(range(min(args.limit, len(split)))) for name, split in splits.items()}
    tokenizer = load_tokenizer(args.model)
    train = encode_split(splits["train"], tokenizer, args.max_length, smallest_bucket=32)
    evaluation = encode_split(splits["eval"], tokenizer, args.max_length, smallest_bucket=32)
    rows = []
    for dtype in ("float32", "bfloat16"):
        params, config = from_pretrained(args.model, label_names=data_info.label_names, seed=0)
        train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=0, compute_dtype=dtype,
                                   optimizer=OptimizerConfig(learning_rate=args.learning_rate))
        started = time.perf_counter()
        result = fit(params, BertClassification(config), train_config, train, description=f"fine-tune {dtype}")
        fit_s = time.perf_counter() - started
        logits = predict_logits(result.params, config, evaluation, args.batch_size, dtype)
        metrics = classification_report(logits.argmax(-1), evaluation.labels, config.label_names)
        losses = [h["loss"] for h in result.history]
        rows.append({
            "dtype": dtype, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "steps": result.total_steps, "fit_s": fit_s, "first_loss": losses[0], "final_loss": losses[-1],
            "mean_loss_last_10": sum(losses[-10:]) / len(losses[-10:]),
        })
        print(f"[gpu_train] {dtype}: accuracy {metrics['accuracy']:.4f} after {result.total_steps} steps "
              f"in {fit_s:.1f} s", flush=True)
    date = datetime.date.today().isoformat()
    payload = {
        "benchmark": "train_precision", "date": date,
        "command": ("python benchmarks/gpu_train.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "device": device_description(), "backend": jax.default_backend(), "versions": versions(),
        "model": str(args.model), "params": sum(int(x.size) for x in jax.tree.leaves(params)),
        "data": data_info.to_dict(), "train_examples": len(train), "eval_examples": len(evaluation),
        "epochs": args.epochs, "batch_size": args.batch_size, "max_length": args.max_length,
        "learning_rate": args.learning_rate, "rows": rows,
        "accuracy_bf16_minus_fp32": rows[1]["accuracy"] - rows[0]["accuracy"],
    }
    write_results(args.out, f"train_precision_{device_slug()}_{date}", payload, markdown(payload))
    return payload


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"# fp32 vs bf16 fine-tuning, {payload['date']}", "",
        f"- device: {payload['device']}", f"- command: `{payload['command']}`",
        f"- model: {payload['model']} ({payload['params']:,} params); {payload['train_examples']} train / "
        f"{payload['eval_examples']} eval examples; {payload['epochs']} epochs of batch {payload['batch_size']}, "
        f"max length {payload['max_length']}, learning rate {payload['learning_rate']}", "",
        "| compute dtype | accuracy | macro-F1 | steps | first loss | final loss | mean loss, last 10 | "
        "whole fit s (compilation included) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        lines.append(f"| {row['dtype']} | {100 * row['accuracy']:.2f}% | {100 * row['macro_f1']:.2f}% | "
                     f"{row['steps']} | {row['first_loss']:.4f} | {row['final_loss']:.4f} | "
                     f"{row['mean_loss_last_10']:.4f} | {row['fit_s']:.1f} |")
    lines += ["", f"bf16 minus fp32 accuracy: {100 * payload['accuracy_bf16_minus_fp32']:+.2f} points."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
