"""The model side of vocabulary pruning: embedding rows of a params tree or a model folder."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxprune.errors import JaxpruneError
from jaxprune.vocab._tokenizer import (
    PrunedVocabulary,
    prune_vocabulary,
    to_transformers,
)

# Where the word embedding table lives in jaxprune's BERT params (rows = vocabulary).
BERT_EMBEDDING_PATH = r"^embeddings/word_embeddings/embedding$"


def prune_embedding_rows(params: Any, kept_ids: np.ndarray, path: str = BERT_EMBEDDING_PATH) -> Any:
    """``params`` with the rows ``kept_ids`` (in that order) of every leaf whose
    ``/``-joined path matches the regex ``path``; any model whose embedding table is
    ``(vocab, features)``. Raises when no leaf matches or an id is out of range."""
    from jaxprune.mask.rules import path_string

    pattern = re.compile(path)
    matched = []

    def gather(key_path, leaf):
        if not pattern.search(path_string(key_path)):
            return leaf
        matched.append(path_string(key_path))
        if int(kept_ids.max(initial=-1)) >= leaf.shape[0]:
            raise JaxpruneError(f"{path_string(key_path)} has {leaf.shape[0]} rows but the vocabulary keeps id "
                                f"{int(kept_ids.max())}; the tokenizer does not belong to this model")
        return jax.numpy.asarray(np.asarray(leaf)[kept_ids])

    pruned = jax.tree_util.tree_map_with_path(gather, params)
    if not matched:
        raise JaxpruneError(f"no parameter path matches {path!r}; pass the path of the word embedding table")
    return pruned


def prune_embeddings(params: Any, config: Any, vocabulary: PrunedVocabulary) -> tuple[Any, Any]:
    """A jaxprune BERT ``(params, config)`` with the word embeddings of ``vocabulary``:
    ``vocab_size`` and ``pad_token_id`` follow the new ids."""
    pruned = prune_embedding_rows(params, vocabulary.kept_ids)
    return pruned, config.replace(vocab_size=vocabulary.size, pad_token_id=vocabulary.new_id(config.pad_token_id))


VOCABULARY_NAME = "vocabulary.json"
_EMBEDDING_NAME = "bert.embeddings.word_embeddings.weight"


def prune_model_folder(source: str | os.PathLike, destination: str | os.PathLike, texts: Sequence[str],
                       *, keep_script_characters: bool = True, keep_script_pieces: bool = True) -> PrunedVocabulary:
    """Write a copy of the Hugging Face BERT folder ``source`` whose vocabulary is what
    ``texts`` need: embedding rows gathered, ``config.json``'s ``vocab_size`` and
    ``pad_token_id`` updated, the pruned tokenizer saved, and ``vocabulary.json`` (the kept
    original ids). Everything else (encoder, any classifier head, labels) is kept. The
    folder appears complete or not at all; an existing complete one is reused."""
    from safetensors.numpy import save_file

    from jaxprune.models.loading import WEIGHTS_NAME, load_tokenizer, read_state_dict, resolve_folder

    destination = Path(destination)
    if (destination / VOCABULARY_NAME).is_file():
        return load_vocabulary(destination)
    folder = resolve_folder(source)
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(folder)
    pad_id = config.get("pad_token_id")
    vocabulary = prune_vocabulary(tokenizer, texts, keep_script_characters=keep_script_characters,
                                  keep_script_pieces=keep_script_pieces, keep_ids=[pad_id] if pad_id is not None else [])
    state = read_state_dict(folder)
    if _EMBEDDING_NAME not in state:
        raise JaxpruneError(f"{folder} has no {_EMBEDDING_NAME}; vocabulary pruning needs a BERT checkpoint")
    table = state[_EMBEDDING_NAME]
    if vocabulary.kept_ids[-1] >= table.shape[0]:
        raise JaxpruneError(f"{folder}'s tokenizer has ids up to {vocabulary.kept_ids[-1]} but the model only "
                            f"{table.shape[0]} embedding rows; the tokenizer does not belong to the model")
    state[_EMBEDDING_NAME] = np.ascontiguousarray(table[vocabulary.kept_ids])
    config["vocab_size"] = vocabulary.size
    if pad_id is not None:
        config["pad_token_id"] = vocabulary.new_id(pad_id)

    partial = destination.with_name(destination.name + ".partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        save_file(state, str(partial / WEIGHTS_NAME), metadata={"format": "pt"})
        (partial / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        to_transformers(vocabulary, tokenizer).save_pretrained(str(partial))
        record = {"source": os.path.abspath(folder), "kept_ids": vocabulary.kept_ids.tolist(),
                  "original_vocab_size": int(table.shape[0]), "corpus_texts": len(texts), **vocabulary.summary()}
        (partial / VOCABULARY_NAME).write_text(json.dumps(record), encoding="utf-8")  # marks it complete
        shutil.rmtree(destination, ignore_errors=True)
        os.replace(partial, destination)
    except OSError as err:
        raise JaxpruneError(f"cannot write the vocabulary-pruned model to {destination} ({err.strerror}); "
                            f"choose a writable destination") from None
    return vocabulary


def load_vocabulary(folder: str | os.PathLike) -> PrunedVocabulary:
    """The :class:`PrunedVocabulary` of a folder written by :func:`prune_model_folder`."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    try:
        record = json.loads((folder / VOCABULARY_NAME).read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as err:  # noqa: BLE001 - a broken folder, whatever broke
        raise JaxpruneError(f"{folder} is not a complete vocabulary-pruned model ({type(err).__name__}); "
                            f"delete it and run again") from None
    return PrunedVocabulary(tokenizer, np.asarray(record["kept_ids"], np.int64), int(record["original_pieces"]),
                            int(record["corpus_pieces"]), record["kind"], tuple(record["scripts"]))


def original_vocab_size(folder: str | os.PathLike) -> int:
    """Embedding rows of the model a vocabulary-pruned folder was made from."""
    record = json.loads((Path(folder) / VOCABULARY_NAME).read_text(encoding="utf-8"))
    return int(record["original_vocab_size"])
