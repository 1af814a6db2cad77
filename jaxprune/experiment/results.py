"""What one experiment found: :class:`RunResults`, the record :func:`train_and_evaluate` returns
and writes to ``results.json`` (:meth:`RunResults.to_json`, read back by :meth:`RunResults.read`).

Each value is kept once, in the group it belongs to: the data and vocabulary as the loaders report
them, the student's size before and after compaction, the scores (eval and test, teacher and
student), what training did, the timings, the emissions, and the settings (``config``, where the
sparsity, distillation and precision of the run are read).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from jaxprune.errors import JaxpruneError
from jaxprune.experiment.config import ExperimentConfig
from jaxprune.experiment.emissions import Emissions


@dataclasses.dataclass(frozen=True)
class Metrics:
    """One model's scores on one split (``per_class_f1``: label name -> F1)."""

    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]

    @classmethod
    def of(cls, report: dict[str, Any]) -> Metrics:
        """From :func:`jaxprune.evaluation.metrics.classification_report`'s dict."""
        return cls(report["accuracy"], report["macro_f1"], report["per_class_f1"])


@dataclasses.dataclass(frozen=True)
class SplitMetrics:
    """The teacher and the student (as served: fine-tuned when the run fine-tunes) on one split,
    and the accuracy of always answering the split's most frequent label."""

    teacher: Metrics
    student: Metrics
    majority_class_accuracy: float


@dataclasses.dataclass(frozen=True)
class Scores:
    """The eval split's scores, the test split's (``None`` without a test file), and chance
    (one over the number of labels)."""

    eval: SplitMetrics
    test: SplitMetrics | None
    chance_accuracy: float


@dataclasses.dataclass(frozen=True)
class Compaction:
    """The student's size: pruned at full shape (``params_nonzero`` not zero, ``encoder_sparsity``
    the encoder's zero fraction, ``layers`` the heads and neurons each layer kept) and what
    compaction removed (``report``: :meth:`jaxprune.models.compaction.CompactionReport.to_dict`)."""

    params_nonzero: int
    encoder_sparsity: float
    layers: list[dict[str, Any]]
    report: dict[str, Any]

    @property
    def params_before(self) -> int:
        """The student's parameters at full shape (the teacher's, vocabulary pruning included)."""
        return self.report["params_before"]

    @property
    def params_after(self) -> int:
        return self.report["params_after"]


@dataclasses.dataclass(frozen=True)
class Training:
    """The student's pruning: ``steps`` 0 (and no loss) when the run loaded the pruned student of
    an earlier run (``config.student_from``)."""

    steps: int
    resumed_from_step: int | None
    final_loss: float | None


@dataclasses.dataclass(frozen=True)
class Finetune:
    """The compacted student trained further (:mod:`.finetune`): its eval scores before, and the
    teacher's logits on the transfer texts (a file in the teacher cache) when it read them."""

    epochs: int
    examples_per_epoch: int
    steps: int
    resumed_from_step: int | None
    final_loss: float
    accuracy_before: float
    macro_f1_before: float
    transfer_logits_file: str | None
    transfer_logits_reused: bool | None


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the run's parts, and ``inference``: the pruned (dense) and compacted
    students timed side by side (:func:`jaxprune.evaluation.timing.compare_inference`)."""

    train_seconds: float
    teacher_logits_seconds: float
    finetune_seconds: float | None
    transfer_logits_seconds: float | None
    run_seconds: float
    inference: dict[str, Any]


_GROUPS = {"compaction": Compaction, "training": Training, "finetune": Finetune,
           "timing": Timing, "emissions": Emissions}


@dataclasses.dataclass(frozen=True)
class RunResults:
    """One finished experiment. ``model`` names the model (``model_folder``: the folder the run
    started from, vocabulary-pruned with ``prune_vocab``); ``teacher`` says where the teacher came
    from (``source``, ``fine_tuned``, ``reused``); ``data`` is the loader's record
    (:class:`jaxprune.data.DataInfo`, and ``transfer``); ``vocabulary`` what vocabulary pruning did
    (``None``: not pruned)."""

    model: str
    pooling: str
    model_folder: str
    device: str
    teacher: dict[str, Any]
    data: dict[str, Any]
    vocabulary: dict[str, Any] | None
    metrics: Scores
    compaction: Compaction
    training: Training
    finetune: Finetune | None
    timing: Timing
    emissions: Emissions
    pruned_dir: str
    compacted_dir: str
    config: ExperimentConfig

    @property
    def params_original(self) -> int:
        """The parameters of the model the run started from, before vocabulary pruning."""
        return self.compaction.params_before + (self.vocabulary or {}).get("embedding_params_removed", 0)

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict written to ``results.json``."""
        out = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        out = {name: dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
               for name, value in out.items()}
        # numpy scalars (counts, scores) become numbers, tuples lists: what reading the file back gives
        return json.loads(json.dumps({**out, "config": self.config.to_dict()}, default=lambda value: value.item()))

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> RunResults:
        """The record :meth:`to_json` gave ``values``."""
        groups = {name: None if values[name] is None else kind(**values[name]) for name, kind in _GROUPS.items()}
        scores = values["metrics"]
        groups["metrics"] = Scores(eval=_split(scores["eval"]), test=_split(scores["test"]),
                                   chance_accuracy=scores["chance_accuracy"])
        return cls(**{**values, **groups, "config": ExperimentConfig.from_dict(values["config"])})

    @classmethod
    def read(cls, path: str | Path) -> RunResults:
        """The record in the ``results.json`` at ``path``; one line when it is not one of this version's."""
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, JaxpruneError) as err:
            raise JaxpruneError(f"{path} is not the results.json of a run of this jaxprune version ({err}); "
                                f"run it again with a new `output_dir`") from None


def _split(values: dict[str, Any] | None) -> SplitMetrics | None:
    if values is None:
        return None
    return SplitMetrics(teacher=Metrics(**values["teacher"]), student=Metrics(**values["student"]),
                        majority_class_accuracy=values["majority_class_accuracy"])
