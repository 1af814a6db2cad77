"""Reproduce the paper's Table I and Figure 3: the teacher and {25, 50, 75, 90}% encoder sparsity x
{without, with distillation}, each over one or more student seeds, on one data split and teacher.

    python experiments/table1.py --data-dir ../shared/data/mahanews-shc --output-dir results/table1
    python experiments/table1.py --data-dir ../shared/data/mahanews-shc --seeds 0 1 2 --rows s25-kd s75-kd

Each run is an ordinary run of experiments/run.py (the command is printed) in
<output-dir>/<row>/seed<k>/: the student of seed k; the eval split and the teacher come from
--teacher-seed, so one teacher (per vocabulary) serves every row and seed. Finished runs are
skipped on a re-run; an interrupted one continues from its last checkpoint. Then the teacher and
every row's compacted model (the first seed's) are timed side by side in one run (cached in
<output-dir>/timing.json), and table1.md, table1.json and the figures are written.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Literal

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from jaxprune._extras import exit_without

    exit_without("experiments/table1.py", "train")  # its imports need it: one line, not a traceback

from experiments import _table1_report as report
from experiments import run as run_cli  # the same presets, sizes and defaults
from experiments.cli_args import (
    Parser,
    fraction_kept,
    fraction_pruned,
    positive_number,
    precision_dtype,
    quiet_libraries,
    run_script,
    whole_number,
)
from jaxprune.errors import JaxpruneError
from jaxprune.experiment import presets
from jaxprune.experiment.config import RESULTS_NAME, ExperimentConfig
from jaxprune.experiment.results import RunResults
from jaxprune.training.config import DistillationConfig


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the table: its name, the student's sparsity, whether it distils, and its vocabulary:
    the model's own (``full``), pruned to the training text's pieces and main script (``script``,
    ``--prune-vocab``) or to its pieces and characters alone (``smallest``, the ``-vocab`` rows)."""

    name: str
    sparsity: float
    distill: bool
    vocabulary: Literal["full", "script", "smallest"] = "full"


def grid(sparsities: list[float], vocab_sparsities: list[float], prune_vocab: bool = False) -> list[Row]:
    """The paper's grid (every sparsity without and with distillation), then the distilled students
    of the smallest vocabulary."""
    vocabulary = "script" if prune_vocab else "full"
    return [Row(f"s{round(s * 100)}{'-kd' if kd else ''}", s, kd, vocabulary) for s in sparsities for kd in (False, True)
            ] + [Row(f"s{round(s * 100)}-kd-vocab", s, True, "smallest") for s in vocab_sparsities]


def run_folder(output_dir: str | Path, row: Row, seed: int) -> Path:
    return Path(output_dir) / row.name / f"seed{seed}"


def base_config(args: argparse.Namespace) -> ExperimentConfig:
    """The settings every row shares: run.py's preset for the model and data, with the sizes,
    precision, learning rate and recipe given, one teacher seed and one teacher cache."""
    name = presets.default_preset(model=args.model, data_dir=args.data_dir)
    config = run_cli.preset_config(name, compute_dtype=precision_dtype(args.precision), seed=args.teacher_seed,
                                   model=args.model, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
                                   batch_size=args.batch_size, max_length=args.max_length,
                                   learning_rate=args.learning_rate)
    config = config.replace(
        data_dir=args.data_dir, dataset="mahanews" if args.data_dir else config.dataset, pooling=args.pooling,
        teacher_cache=args.teacher_cache or str(Path(args.output_dir) / "teachers"),
        transfer_file=args.transfer_file, transfer_column=args.transfer_column,
        **({} if args.finetune_epochs is None else {"finetune_epochs": args.finetune_epochs,
                                                    "finetune_from_sparsity": 0.0}),
    )
    if config.transfer_file is not None and config.finetune_epochs == 0:
        raise JaxpruneError("--transfer-file feeds the distillation of the fine-tuning after compaction; add "
                            "--finetune-epochs N (N > 0), or drop --transfer-file")
    return config


def distillation(args: argparse.Namespace) -> DistillationConfig:
    """The -kd rows' loss: (1 - alpha_kd) CE + alpha_kd T^2 KL, plus the layer term when asked."""
    return DistillationConfig(alpha_ce=1 - args.alpha_kd, alpha_kd=args.alpha_kd, temperature=args.temperature,
                              layer_weight=args.layer_weight if args.distill_layers else 0.0)


def row_config(base: ExperimentConfig, row: Row, seed: int, folder: Path, *, distill: DistillationConfig,
               vocab_corpus: str | None) -> ExperimentConfig:
    """One row's run of student seed ``seed`` in ``folder`` (the teacher's seed stays the base's). The
    transfer texts feed distillation, so only the -kd rows read them."""
    prune_vocab = row.vocabulary != "full"
    student = base.student.replace(seed=seed, pruning=dataclasses.replace(base.student.pruning, sparsity=row.sparsity),
                                   distillation=distill if row.distill else None)
    transfer = {} if row.distill else {"transfer_file": None, "transfer_column": None}
    return base.replace(
        student=student, output_dir=str(folder), prune_vocab=prune_vocab, **transfer,
        vocab_script_pieces=row.vocabulary != "smallest", vocab_corpus=vocab_corpus if prune_vocab else None,
        # skip a finished run, continue an interrupted one
        resume=(folder / "results.json").is_file() or (folder / "checkpoints").is_dir(),
    )


def _command(args: argparse.Namespace, config: ExperimentConfig) -> str:
    """The run.py command that makes the same run, for the log."""
    argv = ["--sparsity", str(config.student.sparsity), "--output-dir", config.output_dir,
            "--teacher-cache", config.teacher_cache, "--seed", str(config.student.seed),
            "--teacher-seed", str(config.teacher.seed), "--precision", args.precision]
    for flag, value in (("--data-dir", args.data_dir), ("--model", args.model), ("--epochs", args.epochs),
                        ("--teacher-epochs", args.teacher_epochs), ("--batch-size", args.batch_size),
                        ("--max-length", args.max_length), ("--pooling", args.pooling),
                        ("--learning-rate", args.learning_rate), ("--finetune-epochs", args.finetune_epochs),
                        ("--transfer-file", config.transfer_file), ("--transfer-column", config.transfer_column)):
        if value is not None:
            argv += [flag, str(value)]
    distill = config.student.distillation
    if distill is not None:
        argv += ["--distill", "--temperature", str(distill.temperature)]
        if distill.alpha_kd != DistillationConfig().alpha_kd:
            argv += ["--alpha-kd", str(distill.alpha_kd)]
        if distill.distills_layers:
            argv += ["--distill-layers", "--layer-weight", str(distill.layer_weight)]
    if config.prune_vocab:
        argv += ["--prune-vocab"] + ([] if config.vocab_script_pieces else ["--no-vocab-script-pieces"])
    else:
        argv.append("--no-prune-vocab")
    if config.vocab_corpus:
        argv += ["--vocab-corpus", config.vocab_corpus]
    if config.resume:
        argv.append("--resume")
    return "python experiments/run.py " + " ".join(argv)


def run_all(args: argparse.Namespace, rows: list[Row]) -> dict[str, dict[int, RunResults]]:
    """Run (or, with --report-only, read) every row for every seed, seed by seed, so the first seed's
    table is complete first. Returns each row's finished results by seed."""
    out = Path(args.output_dir)
    for row in rows:
        if (out / row.name / "results.json").is_file():
            raise JaxpruneError(f"{out / row.name} holds a run of the one-seed layout (results.json in the row's "
                                f"folder, not in seed<k>/); pass a new `output_dir`")
    base, distill = base_config(args), distillation(args)
    finished: dict[str, dict[int, RunResults]] = {row.name: {} for row in rows}
    for seed in args.seeds:
        for row in rows:
            folder = run_folder(out, row, seed)
            if args.report_only:
                if not (folder / "results.json").is_file():
                    print(f"table1: {row.name} seed {seed} has not run yet; left out of the report")
                    continue
            else:
                config = row_config(base, row, seed, folder, distill=distill, vocab_corpus=args.vocab_corpus)
                print(f"table1: {row.name} seed {seed}: {_command(args, config)}", flush=True)
                from jaxprune.experiment import train_and_evaluate

                train_and_evaluate(config)
            finished[row.name][seed] = RunResults.read(folder / RESULTS_NAME)
    return {name: by_seed for name, by_seed in finished.items() if by_seed}


def make_parser() -> Parser:
    def preset_default(setting) -> str:
        # None: the preset's value, as in run.py.
        return (f"default: run.py's preset, {setting(run_cli.DEMO)} on the embedded corpus, "
                f"{setting(run_cli.EXPERIMENT)} with --data-dir or a model folder")

    p = Parser(description=__doc__)
    p.add_argument("--data-dir", default=None, help="folder of MahaNews CSVs (default: the embedded corpus)")
    p.add_argument("--model", default=None, help="e5-small (default), minilm, a BERT folder or a hub id")
    p.add_argument("--pooling", choices=("cls", "mean"), default=None,
                   help="what the classifier reads (default: the model's own; mean for e5-small, cls otherwise)")
    p.add_argument("--output-dir", default="results/table1",
                   help="<row>/seed<k>/ per run, the teachers, timing.json, the table and figures")
    p.add_argument("--sparsities", type=fraction_pruned, nargs="+", default=[0.25, 0.5, 0.75, 0.9],
                   help="encoder sparsities, each trained without and with distillation")
    p.add_argument("--vocab-sparsities", type=fraction_pruned, nargs="*", default=[0.25, 0.75],
                   help="sparsities of the extra distilled students with the smallest vocabulary (the training "
                        "text's pieces and characters; none: no such rows)")
    p.add_argument("--rows", nargs="+", default=None, metavar="NAME",
                   help="run and report only these rows, e.g. s25-kd s75 s75-kd s90-kd (default: all)")
    p.add_argument("--seeds", type=whole_number(0), nargs="+", default=[0],
                   help="student seeds (data order and dropout): each row runs once per seed")
    p.add_argument("--teacher-seed", type=whole_number(0), default=0,
                   help="seed of the eval split and the teacher, shared by every row and student seed")
    p.add_argument("--prune-vocab", action="store_true",
                   help="every row on the vocabulary-pruned model (the training texts' pieces, --vocab-corpus and "
                        "the main script's pieces), all sharing its teacher (default: off)")
    p.add_argument("--vocab-corpus", default=None, metavar="FILE",
                   help="unlabelled text whose pieces a pruned vocabulary also keeps (see run.py; "
                        "default: none, only the training texts' pieces)")
    p.add_argument("--epochs", type=whole_number(1), default=None,
                   help=f"student epochs ({preset_default(lambda c: c.student.epochs)})")
    p.add_argument("--finetune-epochs", type=whole_number(0), default=None,
                   help="epochs of training each compacted student further, distilled in -kd rows (as run.py; "
                        f"{preset_default(lambda c: c.finetune_epochs)})")
    p.add_argument("--teacher-epochs", type=whole_number(1), default=None,
                   help=f"epochs to fine-tune a head-less teacher ({preset_default(lambda c: c.teacher.epochs)})")
    p.add_argument("--batch-size", type=whole_number(1), default=None,
                   help=f"examples per training step, and the timed batch "
                        f"({preset_default(lambda c: c.student.batch_size)})")
    p.add_argument("--max-length", type=whole_number(1), default=None,
                   help=f"tokens per text, truncated, and the timed length ({preset_default(lambda c: c.max_length)})")
    p.add_argument("--learning-rate", type=positive_number, default=None,
                   help=f"student learning rate ({preset_default(lambda c: c.student.optimizer.learning_rate)})")
    kd = p.add_argument_group("distillation (the -kd rows)")
    kd.add_argument("--alpha-kd", type=fraction_kept, default=DistillationConfig().alpha_kd,
                    help="weight of the T^2 KL term; the labels' cross-entropy gets 1 - alpha-kd")
    kd.add_argument("--temperature", type=positive_number, default=DistillationConfig().temperature,
                    help="distillation temperature T")
    kd.add_argument("--distill-layers", action="store_true",
                    help="also match the teacher's hidden states, weighted by --layer-weight (default: off)")
    kd.add_argument("--layer-weight", type=positive_number, default=None,
                    help="weight of the layer distillation term, with --distill-layers (default: 1.0)")
    kd.add_argument("--transfer-file", default=None, metavar="FILE",
                    help="unlabelled texts the teacher labels for fine-tuning after compaction (as run.py; "
                         "default: none)")
    kd.add_argument("--transfer-column", default=None, metavar="NAME",
                    help="the text column of a CSV --transfer-file (default: a text-like column name)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="compute dtype (params stay float32); auto = bf16 on GPU, fp32 on CPU")
    p.add_argument("--teacher-cache", default=None,
                   help="where fine-tuned teachers (and vocabulary-pruned models) are kept (default: "
                        "<output-dir>/teachers)")
    p.add_argument("--report-only", action="store_true",
                   help="only rebuild the table and figures from finished runs (timing.json is reused while it "
                        "holds the same models)")
    p.add_argument("--no-timing", action="store_true",
                   help="never time: inference columns from timing.json where it has the models, else blank")
    return p


def parse_args(argv=None) -> tuple[argparse.Namespace, list[Row]]:
    """The flags, and the rows they select; a bad combination is one line and exit status 2."""
    p = make_parser()
    args = p.parse_args(argv)
    rows = grid(args.sparsities, args.vocab_sparsities, args.prune_vocab)
    names = [row.name for row in rows]
    if len(set(args.seeds)) < len(args.seeds):
        p.error(f"--seeds {' '.join(map(str, args.seeds))} repeats a seed")
    if unknown := [name for name in args.rows or () if name not in names]:
        p.error(f"--rows: no row named {', '.join(unknown)}; the rows are {' '.join(names)}")
    if args.layer_weight is not None and not args.distill_layers:
        p.error("--layer-weight needs --distill-layers")
    args.layer_weight = 1.0 if args.layer_weight is None else args.layer_weight
    return args, [row for row in rows if args.rows is None or row.name in args.rows]


def main(argv=None) -> int:
    quiet_libraries()
    args, rows = parse_args(argv)
    # The command that makes the table: --report-only and --no-timing only rebuild it from the same runs.
    command = "python experiments/table1.py " + " ".join(a for a in (sys.argv[1:] if argv is None else argv)
                                                          if a not in ("--report-only", "--no-timing"))
    return run_script(lambda: _table(args, rows, command),
                      interrupted="interrupted; rerun the same command to continue where it stopped",
                      parser=make_parser())


def _table(args: argparse.Namespace, rows: list[Row], command: str) -> None:
    runs = run_all(args, rows)
    if not runs:
        raise JaxpruneError(f"no finished runs in {args.output_dir}; run without --report-only first")
    out = Path(args.output_dir)
    timing = report.shared_timing(out, runs, time_now=not args.no_timing)
    table = report.table_rows(runs, timing)
    (out / "table1.md").write_text(report.markdown(table, runs, timing, command), encoding="utf-8")
    first = next(iter(next(iter(runs.values())).values()))
    summary = {
        "command": command, "date": datetime.date.today().isoformat(), "model": first.model,
        "dataset": first.data["source"], "split_sizes": first.data["split_sizes"], "seeds": args.seeds,
        "teacher_seed": first.config.teacher.seed,
        "timing": None if timing is None else {"file": report.TIMING_NAME, **{
            key: timing[key] for key in ("device", "batch_size", "seq_length", "dtype", "repeats", "date")
            if key in timing}},
        "rows": table,
    }
    (out / "table1.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    paths = report.figures(table, runs, out, timing)
    print((out / "table1.md").read_text(encoding="utf-8"))
    print("figures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
