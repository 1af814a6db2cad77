"""The inputs of an experiment and its unpruned baseline: the backend's precision checked,
the model and data loaded (:func:`check_inputs`, before anything is written), the teacher got
(:mod:`.teachers`) and evaluated (:func:`teacher_baseline`)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxprune.data import load_files, load_mahanews, load_offline_corpus
from jaxprune.data.batching import encode_split
from jaxprune.errors import JaxpruneError
from jaxprune.evaluation.metrics import classification_report
from jaxprune.evaluation.predict import predict_logits
from jaxprune.experiment.config import ExperimentConfig
from jaxprune.experiment.teachers import Log, prepare_teacher, prune_vocabulary_folder, read_vocab_corpus
from jaxprune.experiment.transfer import load_transfer_set
from jaxprune.models.config import BertConfig
from jaxprune.models.loading import check_weights, checkpoint_labels, load_tokenizer
from jaxprune.models.sources import DEFAULT_MODEL, model_folder


def check_precision(dtype: str) -> None:
    """Fail early, in one line, when the backend cannot compute in ``dtype``."""
    if dtype == "float32":
        return
    try:
        x = jnp.ones((4, 4), jnp.dtype(dtype))
        jax.block_until_ready(jnp.tanh(x @ x))
    except Exception as err:  # noqa: BLE001
        raise JaxpruneError(
            f"{dtype} compute is not available on {jax.default_backend()} ({type(err).__name__}); "
            f'use `compute_dtype="float32"`'
        ) from None


def load_data(config: ExperimentConfig, label_names: tuple[str, ...] | None):
    """The train/eval(/test) splits and :class:`jaxprune.data.DataInfo` the config names."""
    # The split belongs with the teacher: students of other seeds share both.
    options = dict(label_names=label_names, eval_fraction=config.eval_fraction, seed=config.teacher.seed,
                   text_column=config.text_column, label_column=config.label_column,
                   keep_overlap=config.keep_overlap, repair_text=config.repair_text)
    if config.train_file is not None:
        return load_files(config.train_file, config.eval_file, config.test_file, **options)
    if config.eval_file is not None or config.test_file is not None:
        raise JaxpruneError("an eval or test file needs the training data too; add `train_file`")
    if config.data_dir is not None or config.dataset == "mahanews":
        return load_mahanews(config.data_dir, variant=config.variant, **options)
    if config.text_column is not None or config.label_column is not None:
        raise JaxpruneError("`text_column` and `label_column` name columns of your data; add `train_file` or "
                            "`data_dir`")
    return load_offline_corpus(label_names=label_names, eval_fraction=config.eval_fraction, seed=config.teacher.seed,
                               repair_text=config.repair_text)


def progress_bar(description: str):
    """A ``progress`` argument for :func:`predict_logits`: a tqdm bar over the batches."""
    return lambda items: tqdm(items, desc=description, unit="batch", dynamic_ncols=True, leave=False)


def evaluate(params, model_config: BertConfig, encoded, batch_size: int, dtype: str, description: str,
             parallel=None) -> dict:
    """Accuracy, macro-F1 and per-class F1 of ``params`` on ``encoded``
    (:func:`jaxprune.evaluation.metrics.classification_report`), over ``parallel``'s mesh if given."""
    logits = predict_logits(params, model_config, encoded, batch_size, dtype, progress=progress_bar(description),
                            parallel=parallel)
    return classification_report(logits.argmax(-1), encoded.labels, model_config.label_names)


def majority_accuracy(encoded) -> float:
    """The accuracy of always answering the most frequent class of ``encoded``: chance level."""
    return float(np.bincount(encoded.labels).max() / len(encoded))


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The inputs of an experiment and its teacher, fine-tuned (or reused) and evaluated."""

    folder: str
    tokenizer: Any
    data_info: Any
    encoded_train: Any
    encoded_eval: Any
    params: Any
    model_config: BertConfig
    info: dict
    metrics: dict
    vocabulary: dict | None = None  # what vocabulary pruning did, when it ran
    encoded_test: Any = None  # the test split, when the data has one
    test_metrics: dict | None = None
    transfer: Any = None  # the TransferSet (jaxprune.experiment.transfer), when the config names one
    encoded_transfer: Any = None


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What an experiment reads, checked before anything is written (:func:`check_inputs`)."""

    config: ExperimentConfig  # the config given, with the epochs its min_steps asks for on this data
    folder: str  # the model's folder
    model_labels: tuple[str, ...] | None  # the labels of a model that is already a classifier
    tokenizer: Any  # the model's own
    splits: Any  # datasets.DatasetDict: train, eval (and test)
    data_info: Any  # jaxprune.data.DataInfo
    transfer: Any = None  # the TransferSet (jaxprune.experiment.transfer), when the config names one


def check_inputs(config: ExperimentConfig, log: Log = print) -> Inputs:
    """Check and read everything ``config`` names, writing nothing (a named model is converted
    once into its own model cache): the backend's precision, the model (config, position table,
    labels, weights, tokenizer), the data, the transfer set and the vocabulary corpus. First the
    fine-tuning after compaction is dropped for a student under ``config.finetune_from_sparsity``
    (:meth:`with_finetune_rule`); last the epochs are raised to ``config.min_steps`` on the training
    split's size (:meth:`with_min_steps`).

    Called before the output folder is touched, so a bad input is reported as itself, never as
    a clash with a finished run in that folder.
    """
    check_precision(config.student.compute_dtype)
    check_precision(config.teacher.compute_dtype)
    config = _with_finetune_rule(config, log)
    folder, model_labels, tokenizer = _check_model(config)
    splits, data_info = load_data(config, model_labels)
    for message in data_info.messages:
        log(f"data: {message}")
    transfer = None
    if config.transfer_file is not None:
        held_out = list(splits["eval"]["text"]) + (list(splits["test"]["text"]) if "test" in splits else [])
        transfer = load_transfer_set(config.transfer_file, config.transfer_column, held_out,
                                     train=splits["train"]["text"], repair_text=config.repair_text)
        log(transfer.message())
    if config.student_from is not None:
        _check_student_folder(config.student_from)
    if config.prune_vocab and config.vocab_corpus:
        read_vocab_corpus(config.vocab_corpus)  # only checked: vocabulary pruning reads it when it runs
    resolved = _with_min_steps(config, len(splits["train"]), model_labels is None, log)
    return Inputs(resolved, folder, model_labels, tokenizer, splits, data_info, transfer)


def _check_student_folder(folder: str) -> None:
    """One line for a ``student_from`` that is not a saved model folder (checked before anything is written)."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        what = "does not exist" if not path.exists() else "has no config.json"
        raise JaxpruneError(f"`student_from` {folder} {what}; pass the pruned folder of a finished run "
                            f"(the folder named pruned in its output folder)")
    try:
        check_weights(folder)
    except JaxpruneError as err:
        raise JaxpruneError(f"`student_from` {folder}: {err}") from None


@contextlib.contextmanager
def _naming_model(given: str):
    """Errors raised inside, naming `model` (run.py's --model) and the model given."""
    try:
        yield
    except JaxpruneError as err:
        message = str(err)
        raise JaxpruneError(f"`model` {message}" if message.startswith(given)
                            else f"`model` {given}: {message}") from None


def _check_model(config: ExperimentConfig) -> tuple[str, tuple[str, ...] | None, Any]:
    """The model's folder, its labels (None: no trained head, e.g. MiniLM) and its tokenizer."""
    with _naming_model(str(config.model or DEFAULT_MODEL)):
        folder = model_folder(config.model)
        positions = BertConfig.load(folder).max_position_embeddings
        model_labels = checkpoint_labels(folder)
        check_weights(folder)
        tokenizer = load_tokenizer(folder)
    # Checked here, not when timing the compacted model after training: longer inputs than the
    # position table would read out of bounds.
    if config.max_length > positions:
        raise JaxpruneError(f"max length {config.max_length} exceeds the model's {positions} position "
                            f"embeddings; pass `max_length={positions}` or less")
    return folder, model_labels, tokenizer


def _with_finetune_rule(config: ExperimentConfig, log: Log) -> ExperimentConfig:
    """``config`` without fine-tuning after compaction below ``finetune_from_sparsity``, saying so."""
    resolved = config.with_finetune_rule()
    if resolved.finetune_epochs != config.finetune_epochs:
        dropped = " and no transfer set" if config.transfer_file else ""
        log(f"fine-tuning after compaction: off at sparsity {config.student.sparsity:g}{dropped} (the preset "
            f"fine-tunes students of {config.finetune_from_sparsity:g} or more; epochs given apply at any sparsity)")
    return resolved


def _with_min_steps(config: ExperimentConfig, train_examples: int, fine_tunes_teacher: bool,
                    log: Log) -> ExperimentConfig:
    """``config`` with the epochs ``min_steps`` asks for on ``train_examples`` training examples,
    and one line saying so when they were raised."""
    resolved = config.with_min_steps(train_examples, teacher=fine_tunes_teacher)
    raised = [f"{name} {before.epochs} -> {after.epochs} epochs"
              for name, before, after in (("teacher", config.teacher, resolved.teacher),
                                          ("student", config.student, resolved.student))
              if after.epochs != before.epochs]
    if raised:
        log(f"small training set ({train_examples:,} texts): {', '.join(raised)}, so that each trains at "
            f"least {config.min_steps} steps (min_steps)")
    return resolved


def teacher_baseline(config: ExperimentConfig, log: Log = print, inputs: Inputs | None = None) -> Baseline:
    """Get the teacher (fine-tuned once, then reused from the teacher cache) and evaluate it on
    the eval split: the unpruned baseline of an experiment. ``inputs`` are :func:`check_inputs`'s
    (read here when not given); their config, its epochs resolved, is the one used."""
    inputs = inputs or check_inputs(config, log)
    config, folder, splits, data_info = inputs.config, inputs.folder, inputs.splits, inputs.data_info
    label_names, transfer, tokenizer = data_info.label_names, inputs.transfer, inputs.tokenizer
    vocab_info = None
    if config.prune_vocab:
        folder, vocab_info = prune_vocabulary_folder(config, folder, splits["train"]["text"],
                                                     splits["eval"]["text"], log,
                                                     extra_texts=transfer.texts if transfer else None)
        tokenizer = load_tokenizer(folder)
    # Buckets from 32 tokens: fewer shapes to compile, little padding for headlines.
    encoded_train = encode_split(splits["train"], tokenizer, config.max_length, smallest_bucket=32)
    encoded_eval = encode_split(splits["eval"], tokenizer, config.max_length, smallest_bucket=32)
    encoded_test = None
    if "test" in splits:
        encoded_test = encode_split(splits["test"], tokenizer, config.max_length, smallest_bucket=32)

    encoded_transfer = None
    if transfer is not None:
        unlabelled = {"text": transfer.texts, "label": [0] * transfer.used}
        encoded_transfer = encode_split(unlabelled, tokenizer, config.max_length, smallest_bucket=32)
    teacher_params, teacher_config, teacher_info = prepare_teacher(
        config, folder, inputs.model_labels is not None, label_names, encoded_train, data_info, log)
    if teacher_config.label_names != tuple(label_names):
        raise JaxpruneError(
            f"the model's labels {list(teacher_config.label_names)} differ from the data's {list(label_names)}; "
            f"use data with the model's labels"
        )
    metrics = evaluate(teacher_params, teacher_config, encoded_eval, config.student.batch_size,
                       config.student.compute_dtype, "evaluate teacher", config.parallel())
    log(f"teacher accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"({len(encoded_eval)} eval examples; majority class {majority_accuracy(encoded_eval):.4f})")
    test_metrics = None
    if encoded_test is not None:
        test_metrics = evaluate(teacher_params, teacher_config, encoded_test, config.student.batch_size,
                                config.student.compute_dtype, "evaluate teacher on test", config.parallel())
        log(f"teacher test accuracy {test_metrics['accuracy']:.4f}, macro-F1 {test_metrics['macro_f1']:.4f} "
            f"({len(encoded_test)} test examples; majority class {majority_accuracy(encoded_test):.4f})")
    return Baseline(folder, tokenizer, data_info, encoded_train, encoded_eval, teacher_params, teacher_config,
                    teacher_info, metrics, vocab_info, encoded_test, test_metrics, transfer, encoded_transfer)
