"""One table of student variants run over the same seeds: accuracy and macro-F1 as mean ± standard
deviation, the gap to the teacher, and each variant's difference from a reference variant seed by
seed (paired: the same seed's student on both sides), which is how an ablation is read.

    python experiments/recipe_table.py --output results/recipe-ablation/ablation.md \\
        "today's recipe=results/table1-recipe/s75-kd:before" \\
        "+ fine-tuning=results/recipe-ablation/s75-kd-ft" \\
        "+ transfer set=results/table1-recipe/s75-kd"

Each variant is ``NAME=FOLDER``: a folder of ``seed<k>/results.json`` runs (what
``experiments/table1.py`` and ``--output-dir .../seed<k>`` write). ``FOLDER:before`` reads the
accuracy those runs had before their fine-tuning after compaction. The first variant is the
reference of the paired differences unless ``--reference`` names another. Every run must share one
teacher and eval split (the same teacher accuracy), or the table is refused.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, quiet_libraries, run_script
from jaxprune.errors import JaxpruneError


def read_variant(spec: str) -> tuple[str, dict[int, dict]]:
    """``NAME=FOLDER[:before]`` as its name and, per seed, the accuracy, macro-F1 and teacher accuracy."""
    name, sep, where = spec.partition("=")
    if not sep or not name or not where:
        raise JaxpruneError(f"variant {spec!r} is not NAME=FOLDER; write it as \"+ fine-tuning=runs/s75-ft\"")
    folder, _, part = where.partition(":")
    if part not in ("", "before"):
        raise JaxpruneError(f"variant {spec!r}: ':{part}' is not known; use FOLDER or FOLDER:before")
    files = sorted(Path(folder).glob("seed*/results.json"))
    if not files:
        raise JaxpruneError(f"variant {name!r}: {folder} holds no seed<k>/results.json; pass a folder of finished runs")
    from jaxprune.experiment.results import RunResults

    seeds = {}
    for file in files:
        results = RunResults.read(file)
        scores = results.metrics.eval
        if part:
            if results.finetune is None:
                raise JaxpruneError(f"{file} is a run without fine-tuning (no accuracy before it); drop ':before'")
            accuracy, macro_f1 = results.finetune.accuracy_before, results.finetune.macro_f1_before
        else:
            accuracy, macro_f1 = scores.student.accuracy, scores.student.macro_f1
        seeds[results.config.student.seed] = {"accuracy": accuracy, "macro_f1": macro_f1,
                                              "teacher": scores.teacher.accuracy}
    return name, seeds


def _spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def markdown(variants: list[tuple[str, dict[int, dict]]], reference: str) -> str:
    """The table: one line per variant, paired differences against ``reference``."""
    teachers = {run["teacher"] for _, seeds in variants for run in seeds.values()}
    if len(teachers) != 1:
        raise JaxpruneError(f"the runs have {len(teachers)} teachers ({sorted(teachers)}); compare runs of one "
                            f"teacher and eval split")
    teacher = 100 * teachers.pop()
    base = dict(variants)[reference]
    lines = [f"Teacher: {teacher:.2f}% on the same eval split. Mean ± standard deviation over the seeds (n - 1). "
             f"Paired: the variant minus `{reference}`, seed by seed, on the seeds both have (mean, and min..max).",
             "",
             "| Variant | Seeds | Accuracy (%) | vs teacher (points) | Macro-F1 (%) | Paired vs reference (points) "
             "| Per seed (accuracy) |",
             "|---|---|---|---|---|---|---|"]
    for name, seeds in variants:
        accuracy = [100 * seeds[s]["accuracy"] for s in sorted(seeds)]
        f1 = [100 * seeds[s]["macro_f1"] for s in sorted(seeds)]
        shared = sorted(set(seeds) & set(base))
        paired = [100 * (seeds[s]["accuracy"] - base[s]["accuracy"]) for s in shared]
        versus = ("-" if name == reference or not paired else
                  f"{statistics.mean(paired):+.2f} ({min(paired):+.2f}..{max(paired):+.2f})")
        per_seed = ", ".join(f"{s}: {100 * seeds[s]['accuracy']:.2f}" for s in sorted(seeds))
        lines.append(f"| {name} | {len(seeds)} | {_spread(accuracy)} | {statistics.mean(accuracy) - teacher:+.2f} "
                     f"| {_spread(f1)} | {versus} | {per_seed} |")
    return "\n".join(lines) + "\n"


def make_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("variants", nargs="+", metavar="NAME=FOLDER[:before]", help="the variants, in table order")
    p.add_argument("--reference", default=None, help="the variant the paired differences are taken against "
                                                     "(default: the first)")
    p.add_argument("--output", default=None, metavar="FILE.md", help="also write the table here (default: print only)")
    return p


def main(argv=None) -> int:
    quiet_libraries()
    parser = make_parser()
    args = parser.parse_args(argv)
    return run_script(lambda: _report(args), parser=parser)


def _report(args) -> None:
    variants = [read_variant(spec) for spec in args.variants]
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise JaxpruneError(f"two variants share a name ({names}); give each its own")
    reference = args.reference or names[0]
    if reference not in names:
        raise JaxpruneError(f"--reference {reference!r} is not one of the variants ({', '.join(names)})")
    table = markdown(variants, reference)
    print(table, end="")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(table, encoding="utf-8")
        print(f"written: {args.output}")


if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main(sys.argv[1:]))
