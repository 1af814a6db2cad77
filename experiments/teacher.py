"""Fine-tune (or reuse) and evaluate only the teacher: the unpruned baseline of an experiment.

    python experiments/teacher.py --data-dir ../shared/data/mahanews-shc --pooling mean
    python experiments/teacher.py --data-dir ../shared/data/mahanews-shc --pooling cls

Takes run.py's flags (those about the student are ignored) and keeps the teacher in the same
cache, so a later run.py or table1.py with the same settings reuses it. Writes
<output-dir>/teacher.json with the teacher's metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from jaxprune._extras import exit_without

    exit_without("experiments/teacher.py", "train")  # its imports need it: one line, not a traceback

from experiments import run as run_cli  # the same flags and config
from experiments.cli_args import quiet_libraries, run_script


def main(argv=None) -> int:
    quiet_libraries()
    parser = run_cli.make_parser()
    args = parser.parse_args(argv)
    return run_script(lambda: _baseline(args), interrupted="interrupted; rerun the same command to continue",
                      parser=parser)


def _baseline(args) -> None:
    import dataclasses

    from jaxprune.experiment import check_inputs, majority_accuracy, teacher_baseline
    from jaxprune.experiment.folders import prepare_output_dir, write_json
    from jaxprune.models.sources import describe

    inputs = check_inputs(run_cli.build_config(args))
    config = inputs.config  # its epochs raised on a small training set (min_steps), as run.py's
    base = teacher_baseline(config, inputs=inputs)
    out = prepare_output_dir(config.output_dir) / "teacher.json"
    labels = base.model_config.label_names
    majority = majority_accuracy(base.encoded_eval)
    test = {}
    if base.test_metrics is not None:
        test = {"test_accuracy": base.test_metrics["accuracy"], "test_macro_f1": base.test_metrics["macro_f1"],
                "test_per_class_f1": base.test_metrics["per_class_f1"],
                "test_majority_class_accuracy": majority_accuracy(base.encoded_test)}
    write_json(out, {
        "model": describe(config.model), "pooling": base.model_config.classifier_pooling,
        "dataset": base.data_info.source, "split_sizes": base.data_info.split_sizes, "data": base.data_info.to_dict(),
        "chance_accuracy": 1 / len(labels), "majority_class_accuracy": majority, **base.metrics, **test,
        "teacher": base.info, "vocabulary": base.vocabulary, "config": dataclasses.asdict(config),
    })
    print(f"teacher ({describe(config.model)}, {base.model_config.classifier_pooling} pooling): "
          f"accuracy {base.metrics['accuracy']:.4f}, macro-F1 {base.metrics['macro_f1']:.4f} on "
          f"{len(base.encoded_eval)} eval examples (chance {majority:.4f}: always the majority class); {out}")

if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
