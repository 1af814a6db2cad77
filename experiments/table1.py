"""Reproduce the paper's Table I and Figure 3: the baseline and {25, 50, 75}% sparsity x
{without, with distillation}, same data and seed.

    python experiments/table1.py --data-dir ../shared/data/mahanews-shc --output-dir results/table1

Each experiment is an ordinary run of experiments/run.py in <output-dir>/<name>/, sharing one
fine-tuned teacher (the baseline). Finished experiments are skipped on a re-run; an interrupted
one continues from its last checkpoint. Then table1.md, table1.json and the figures are written.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path


from experiments import run as run_cli  # the same presets, sizes and defaults
from experiments.cli_args import Parser, fraction_pruned, precision_dtype, quiet_libraries, run_script, whole_number
from jaxprune.errors import JaxpruneError
from jaxprune.experiment import presets
from jaxprune.experiment.config import ExperimentConfig
from jaxprune.training.config import DistillationConfig

PAPER_TABLE = """| Model | Params (M) | % reduction | % decrease in inference time | Speedup | Accuracy (%) | kg CO2eq |
|---|---|---|---|---|---|---|
| Baseline (marathi-topic-all-doc-v2) | 238 | - | - | 1.00x | 92.43 | - |
| 25% pruned | 218 | 8.6 | ... | ... | ... | ... |
| 25% pruned + distillation | 218 | 8.6 | 61 | 2.56x | 92.18 | ... |
| 50% pruned | 197 | 17 | ... | ... | ... | ... |
| 75% pruned | 177 | 26 | ... | 2.25x | ... | ... |"""


def experiments(sparsities: list[float], vocab_sparsities: list[float]) -> list[tuple[str, float, bool, bool]]:
    """``(name, sparsity, distill, prune_vocab)``: the paper's grid, then distilled students
    of a vocabulary-pruned teacher."""
    grid = [(f"s{int(s * 100)}{'-kd' if kd else ''}", s, kd, False) for s in sparsities for kd in (False, True)]
    return grid + [(f"s{int(s * 100)}-kd-vocab", s, True, True) for s in vocab_sparsities]


def base_config(args: argparse.Namespace) -> ExperimentConfig:
    """The settings every row shares: run.py's preset for the model and data, with the sizes,
    precision and seed given, and one teacher cache."""
    name = presets.default_preset(model=args.model, data_dir=args.data_dir)
    config = run_cli.preset_config(name, compute_dtype=precision_dtype(args.precision), seed=args.seed,
                                   model=args.model, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
                                   batch_size=args.batch_size, max_length=args.max_length)
    return config.replace(data_dir=args.data_dir, dataset="mahanews" if args.data_dir else config.dataset,
                          pooling=args.pooling, teacher_cache=str(Path(args.output_dir) / "teachers"))


def row_config(base: ExperimentConfig, folder: Path, sparsity: float, distill: bool, prune_vocab: bool,
               vocab_corpus: str | None) -> ExperimentConfig:
    """One row's run: the student pruned to ``sparsity`` (distilled or not), in ``folder``.
    The -vocab rows show the smallest vocabulary: the training text's pieces and characters."""
    student = base.student.replace(pruning=dataclasses.replace(base.student.pruning, sparsity=sparsity),
                                   distillation=DistillationConfig() if distill else None)
    return base.replace(
        student=student, output_dir=str(folder), prune_vocab=prune_vocab, vocab_script_pieces=not prune_vocab,
        vocab_corpus=vocab_corpus if prune_vocab else None,
        # skip a finished run, continue an interrupted one
        resume=(folder / "results.json").is_file() or (folder / "checkpoints").is_dir(),
    )


def _command(args: argparse.Namespace, config: ExperimentConfig) -> str:
    """The run.py command that makes the same run, for the log."""
    argv = ["--sparsity", str(config.student.sparsity), "--output-dir", config.output_dir,
            "--teacher-cache", config.teacher_cache, "--seed", str(args.seed), "--precision", args.precision]
    for flag, value in (("--data-dir", args.data_dir), ("--model", args.model), ("--epochs", args.epochs),
                        ("--teacher-epochs", args.teacher_epochs), ("--batch-size", args.batch_size),
                        ("--max-length", args.max_length), ("--pooling", args.pooling)):
        if value is not None:
            argv += [flag, str(value)]
    if config.student.distills:
        argv.append("--distill")
    argv += ["--prune-vocab", "--no-vocab-script-pieces"] if config.prune_vocab else ["--no-prune-vocab"]
    if config.vocab_corpus:
        argv += ["--vocab-corpus", config.vocab_corpus]
    if config.resume:
        argv.append("--resume")
    return "python experiments/run.py " + " ".join(argv)


def run_all(args: argparse.Namespace) -> list[dict]:
    out = Path(args.output_dir)
    base = base_config(args)
    results = []
    for name, sparsity, distill, prune_vocab in experiments(args.sparsities, args.vocab_sparsities):
        folder = out / name
        config = row_config(base, folder, sparsity, distill, prune_vocab, args.vocab_corpus)
        if args.report_only:
            if not (folder / "results.json").is_file():
                print(f"table1: {name} has not run yet; skipping it in the report")
                continue
        else:
            print(f"table1: {name}: {_command(args, config)}", flush=True)
            from jaxprune.experiment import train_and_evaluate

            train_and_evaluate(config)
        results.append(dict(json.loads((folder / "results.json").read_text(encoding="utf-8")), name=name))
    return results


def table_rows(results: list[dict]) -> list[dict]:
    """The paper's columns (+ macro-F1, compacted size, device) for the baseline and each run."""
    if not results:
        return []
    def vocabulary(r: dict) -> int | None:
        return (r.get("vocabulary") or {}).get("kept_pieces")

    # The original model's size: before vocabulary pruning, if any.
    original = results[0].get("params_before_vocab_pruning", results[0]["params_total"])
    rows = []
    for label, first in (("baseline (fine-tuned teacher)", results[0]),
                         ("baseline + vocabulary pruning (its teacher)",
                          next((r for r in results if vocabulary(r)), None))):
        if first is None:
            continue
        rows.append({
            "name": label, "sparsity": 0.0, "distill": False, "vocabulary": vocabulary(first),
            "params_m": first["params_total"] / 1e6, "params_reduction_pct": 100 * (1 - first["params_total"] / original),
            "params_nonzero_m": None, "inference_time_decrease_pct": 0.0, "speedup": 1.0,
            "inference_ms": first["speedup"]["dense_median_s"] * 1e3, "accuracy_pct": 100 * first["teacher_accuracy"],
            "macro_f1_pct": 100 * first["teacher_macro_f1"], "kg_co2": None, "encoder_sparsity": 0.0,
            "device": first["speedup"].get("device", first["device"]),
        })
    for r in results:
        compacted = r["params_after_compaction"]
        speed = r["speedup"]
        rows.append({
            "name": r["name"], "sparsity": r["sparsity"], "distill": r["distill"], "vocabulary": vocabulary(r),
            # The size after compaction, not a count of non-zeros: a dequantised 4-bit model
            # (e5-small) has exact zeros of its own (about 11M in its embeddings).
            "params_m": compacted / 1e6,
            "params_reduction_pct": 100 * (1 - compacted / original),
            "params_nonzero_m": r["params_nonzero"] / 1e6,
            "inference_time_decrease_pct": 100 * (1 - speed["compacted_median_s"] / speed["dense_median_s"]),
            "speedup": speed["speedup"], "inference_ms": speed["compacted_median_s"] * 1e3,
            "accuracy_pct": 100 * r["accuracy"], "macro_f1_pct": 100 * r["macro_f1"],
            "kg_co2": r["emissions_kg_co2"], "encoder_sparsity": r["encoder_sparsity"],
            "device": speed.get("device", r["device"]),
        })
    return rows


def markdown(rows: list[dict], command: str, results: list[dict]) -> str:
    speed = results[0]["speedup"]
    original = results[0].get("params_before_vocab_pruning", results[0]["params_total"])
    lines = [
        "# Table I, reproduced with jaxprune",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.date.today().isoformat()}; device: {rows[0]['device']}; "
        f"inference timed at batch {speed['batch_size']} x length {speed['seq_length']}, {speed['dtype']}, "
        f"jitted, median of {speed.get('repeats', '?')} runs (compacted vs dense, side by side).",
        f"Model: {results[0]['model']}; data: {results[0]['dataset']} (train {results[0]['split_sizes'].get('train')}, "
        f"eval {results[0]['split_sizes'].get('eval')}).",
        "",
        "Params: the whole model (embeddings included) after compaction; % reduction against the original "
        f"model ({original / 1e6:.2f}M). Speedup: each compacted model against its own dense (uncompacted) "
        "form, so it measures encoder pruning alone (vocabulary pruning removes embedding rows; a lookup "
        "reads one row per token either way).",
        "",
        "| Model | Vocabulary (pieces) | Params (M, after compaction) | % reduction in params "
        "| % decrease in inference time | Speedup | Accuracy (%) | Macro-F1 (%) | kg CO2eq (training) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        co2 = "-" if r["kg_co2"] is None else f"{r['kg_co2']:.2e}"
        pieces = "all" if r["vocabulary"] is None else f"{r['vocabulary']:,}"
        lines.append(
            f"| {r['name']} | {pieces} | {r['params_m']:.2f} | {r['params_reduction_pct']:.1f} "
            f"| {r['inference_time_decrease_pct']:.1f} | {r['speedup']:.2f}x | {r['accuracy_pct']:.2f} "
            f"| {r['macro_f1_pct']:.2f} | {co2} |"
        )
    return "\n".join(lines) + "\n"


def figures(rows: list[dict], results: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in rows:
        marker = "*" if r["sparsity"] == 0 else "D" if r["vocabulary"] else ("o" if r["distill"] else "s")
        ax.scatter(r["inference_ms"], r["accuracy_pct"], marker=marker, s=90)
        ax.annotate(r["name"], (r["inference_ms"], r["accuracy_pct"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set_xlabel(f"inference time per batch (ms, {rows[0]['device']})")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs inference time (compacted models)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(out / "figure3_accuracy_vs_time.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(2, len(results), figsize=(2.2 * len(results) + 1, 5.5), squeeze=False)
    for col, r in enumerate(results):
        layers = r["layers"]
        for row, (kept, total, title) in enumerate((("heads_kept", "heads", "heads"),
                                                     ("neurons_kept", "neurons", "FFN neurons"))):
            survival = np.array([[layer[kept] / max(layer[total], 1)] for layer in layers])
            ax = axes[row, col]
            image = ax.imshow(survival, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks(range(len(layers)))
            ax.set_ylabel("layer" if col == 0 else "")
            ax.set_title(f"{r['name']}\n{title}", fontsize=8)
            for i, value in enumerate(survival[:, 0]):
                ax.text(0, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.5 else "black")
    fig.colorbar(image, ax=axes, fraction=0.03, label="fraction surviving")
    paths.append(out / "layer_survival.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    quiet_libraries()
    def preset_default(setting) -> str:
        # None: the preset's value, as in run.py.
        return (f"default: run.py's preset, {setting(run_cli.DEMO)} on the embedded corpus, "
                f"{setting(run_cli.EXPERIMENT)} with --data-dir or a model folder")

    p = Parser(description=__doc__)
    p.add_argument("--data-dir", default=None, help="folder of MahaNews CSVs (default: the embedded corpus)")
    p.add_argument("--model", default=None, help="e5-small (default), minilm, a BERT folder or a hub id")
    p.add_argument("--pooling", choices=("cls", "mean"), default=None,
                   help="what the classifier reads (default: the model's own; mean for e5-small, cls otherwise)")
    p.add_argument("--output-dir", default="results/table1", help="one folder per experiment, the table and figures")
    p.add_argument("--sparsities", type=fraction_pruned, nargs="+", default=[0.25, 0.5, 0.75],
                   help="encoder sparsities, each trained without and with distillation")
    p.add_argument("--vocab-sparsities", type=fraction_pruned, nargs="*", default=[0.25, 0.75],
                   help="sparsities of the extra distilled students with a pruned vocabulary (none: no such rows)")
    p.add_argument("--vocab-corpus", default=None, metavar="FILE",
                   help="unlabelled text whose pieces the pruned vocabulary also keeps (see run.py; "
                        "default: none, only the training texts' pieces)")
    p.add_argument("--epochs", type=whole_number(1), default=None,
                   help=f"student epochs ({preset_default(lambda c: c.student.epochs)})")
    p.add_argument("--teacher-epochs", type=whole_number(1), default=None,
                   help=f"epochs to fine-tune a head-less teacher ({preset_default(lambda c: c.teacher.epochs)})")
    p.add_argument("--batch-size", type=whole_number(1), default=None,
                   help=f"examples per training step ({preset_default(lambda c: c.student.batch_size)})")
    p.add_argument("--max-length", type=whole_number(1), default=None,
                   help=f"tokens per text, truncated ({preset_default(lambda c: c.max_length)})")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="compute dtype (params stay float32); auto = bf16 on GPU, fp32 on CPU")
    p.add_argument("--seed", type=whole_number(0), default=0, help="one seed for every experiment")
    p.add_argument("--report-only", action="store_true", help="only rebuild the table and figures")
    args = p.parse_args(argv)
    # The command that makes the table: --report-only only rebuilds it from the same runs.
    command = "python experiments/table1.py " + " ".join(a for a in (sys.argv[1:] if argv is None else argv)
                                                          if a != "--report-only")
    return run_script(lambda: _table(args, command),
                      interrupted="interrupted; rerun the same command to continue where it stopped", parser=p)


def _table(args: argparse.Namespace, command: str) -> None:
    results = run_all(args)
    if not results:
        raise JaxpruneError(f"no finished experiments in {args.output_dir}; run without --report-only first")
    out = Path(args.output_dir)
    rows = table_rows(results)
    (out / "table1.md").write_text(markdown(rows, command, results), encoding="utf-8")
    (out / "table1.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2), encoding="utf-8")
    paths = figures(rows, results, out)
    print((out / "table1.md").read_text(encoding="utf-8"))
    print("figures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    raise SystemExit(main())
