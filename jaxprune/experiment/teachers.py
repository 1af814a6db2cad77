"""The teacher cache: teachers fine-tuned once and reused by later runs with the same
settings, and the vocabulary-pruned base models kept beside them.

Both live under ``ExperimentConfig.teacher_cache``, each in a folder named by a key of
everything that made it, and appear there atomically (only complete ones are ever reused).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from jaxprune.errors import JaxpruneError
from jaxprune.experiment.config import ExperimentConfig, stable_hash
from jaxprune.experiment.folders import prepare_output_dir, remove_unless_useful
from jaxprune.experiment.runlock import hold_folder_lock
from jaxprune.parallel import is_primary
from jaxprune.models.config import BertConfig
from jaxprune.models.loading import from_pretrained, load_tokenizer, save_pretrained
from jaxprune.training.bert import BertClassification
from jaxprune.training.loop import fit

Log = Callable[[str], Any]


def teacher_cache_root(config: ExperimentConfig) -> Path:
    return Path(config.teacher_cache)


def read_vocab_corpus(path: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file: unlabelled text for the vocabulary."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise JaxpruneError(f"vocabulary corpus {path} does not exist; pass a text file to `vocab_corpus`") from None
    except IsADirectoryError:
        raise JaxpruneError(f"vocabulary corpus {path} is a folder; pass a text file to `vocab_corpus`") from None
    except UnicodeDecodeError:
        raise JaxpruneError(f"vocabulary corpus {path} is not UTF-8 text; convert it or pass another "
                            f"`vocab_corpus`") from None
    except OSError as err:
        raise JaxpruneError(f"cannot read vocabulary corpus {path} ({err.strerror}); pass a readable "
                            f"`vocab_corpus`") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise JaxpruneError(f"vocabulary corpus {path} has no text; pass a file with one text per line to "
                            f"`vocab_corpus`")
    return texts


def prune_vocabulary_folder(
    config: ExperimentConfig, folder: str, train_texts, eval_texts, log: Log, extra_texts=None
) -> tuple[str, dict]:
    """The model folder with the vocabulary of the training texts and ``vocab_corpus`` (or,
    without one, ``extra_texts``: the transfer set's), made once per model and corpus in the
    teacher cache; and what pruning did."""
    from jaxprune import vocab

    corpus = read_vocab_corpus(config.vocab_corpus) if config.vocab_corpus else list(extra_texts or [])
    texts = list(train_texts) + corpus
    key = stable_hash({"model": os.path.abspath(folder), "texts": texts, "script_pieces": config.vocab_script_pieces})
    # The vocabulary-pruned base model is kept beside the teachers.
    cache = prepare_output_dir(str(teacher_cache_root(config)), what="teacher cache", argument="teacher_cache")
    destination = cache / f"vocab-{key}"
    reused = (destination / vocab.VOCABULARY_NAME).is_file()
    vocabulary = _pruned_vocabulary(folder, destination, texts, config.vocab_script_pieces)
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


def _pruned_vocabulary(folder: str, destination: Path, texts: list[str], script_pieces: bool):
    """``vocab.prune_model_folder`` by process 0; in a multi-process run the others wait for it
    and then read the same folder (pruning is deterministic: they get the same vocabulary)."""
    import jax

    from jaxprune import vocab

    if jax.process_count() == 1:
        return vocab.prune_model_folder(folder, destination, texts, keep_script_pieces=script_pieces)
    from jax.experimental import multihost_utils

    if is_primary():
        vocab.prune_model_folder(folder, destination, texts, keep_script_pieces=script_pieces)
    multihost_utils.sync_global_devices(f"vocabulary {destination}")
    return vocab.prune_model_folder(folder, destination, texts, keep_script_pieces=script_pieces)


def _has_checkpoint(folder: Path) -> bool:
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and any(child.name.isdigit() for child in checkpoints.iterdir())


def prepare_teacher(
    config: ExperimentConfig, folder: str, is_classifier: bool, label_names, encoded_train, data_info, log: Log
) -> tuple:
    """``(params, model_config, info)`` of the teacher: a ready classifier as is; otherwise one
    fine-tuned on ``encoded_train``, saved in the teacher cache, and reused on later runs."""
    if is_classifier:
        params, model_config = from_pretrained(folder)
        if config.pooling not in (None, model_config.classifier_pooling):
            raise JaxpruneError(f"{folder} is already a classifier that pools by {model_config.classifier_pooling!r}; "
                                f"drop `pooling={config.pooling!r}` or pass a model without a head")
        log(f"teacher: {folder} is already a classifier for {model_config.num_labels} labels")
        return params, model_config, {"source": folder, "fine_tuned": False}

    key_data = {
        "model": os.path.abspath(folder),
        "data": [data_info.source, data_info.files, data_info.split_sizes],
        "labels": list(label_names),
        "max_length": config.max_length,
        "pooling": config.pooling,
        "eval_fraction": config.eval_fraction,
        "train": dataclasses.asdict(config.teacher),
        "repaired_texts": data_info.repaired_texts if config.repair_text else 0,
    }
    key = stable_hash(key_data)
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
    if _has_checkpoint(partial):
        log(f"teacher: resuming the interrupted fine-tuning kept in {partial}")
    prepare_output_dir(str(partial), what="teacher cache", argument="teacher_cache")
    # One process fine-tunes a given teacher at a time: two would interleave its checkpoints.
    # (In a multi-process run all processes fine-tune it together; process 0 locks and writes.)
    primary, locked = is_primary(), False
    try:
        with hold_folder_lock(partial, what="teacher cache folder", argument="teacher_cache") if primary \
                else contextlib.nullcontext():
            locked = primary
            result = fit(params, BertClassification(model_config), config.teacher, encoded_train,
                         checkpoint_dir=str(partial / "checkpoints"), fingerprint=key, resume=True,
                         checkpoint_every=config.checkpoint_every, description="teacher",
                         parallel=config.parallel(), log=log)
            if primary:
                save_pretrained(result.params, model_config, partial / "model", tokenizer=load_tokenizer(folder))
                (partial / "model" / "teacher.json").write_text(json.dumps(key_data, indent=2, default=str))
                os.replace(partial / "model", final)  # atomic: only a complete teacher is ever reused
    except BaseException:
        if locked:  # an interrupted teacher keeps its checkpoint for the next identical run; else nothing
            remove_unless_useful(partial, [partial])
        raise
    if primary:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"teacher: saved to {final}")
    return result.params, model_config, {"source": str(final), "fine_tuned": True, "reused": False}
