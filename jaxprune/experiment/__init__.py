"""One experiment of the paper, end to end, and what it writes.

:mod:`.pipeline` (``ExperimentConfig``, ``train_and_evaluate``), :mod:`.folders` (output
folders, atomic JSON), :mod:`.runlock` (one process per folder), :mod:`.emissions`
(CodeCarbon), :mod:`.summary` (the printed table).
"""

from jaxprune.experiment.pipeline import (
    ExperimentConfig,
    check_precision,
    evaluate,
    majority_accuracy,
    teacher_baseline,
    train_and_evaluate,
)

__all__ = ["ExperimentConfig", "check_precision", "evaluate", "majority_accuracy", "teacher_baseline",
           "train_and_evaluate"]
