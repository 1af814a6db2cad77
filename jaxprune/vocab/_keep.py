"""Which pieces a pruned vocabulary keeps, read from a ``tokenizers`` JSON spec.

Helpers of :func:`jaxprune.vocab.prune_vocabulary`: the tokenizer's own special ids,
single characters of the corpus's scripts, whole pieces of its main script, and the
pieces WordPiece's greedy search passes through on words it cannot split.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any


def script_of(char: str) -> str:
    """The first word of a character's Unicode name ("DEVANAGARI", "LATIN", "CJK"...)."""
    return unicodedata.name(char, "UNNAMED").split(" ", 1)[0]


def letter_scripts(chars: Iterable[str]) -> set[str]:
    return {script_of(c) for c in chars if unicodedata.category(c)[0] in "LM"}


def special_ids(spec: dict[str, Any]) -> set[int]:
    """Ids the tokenizer emits itself: added tokens, the post-processor's, the model's unk."""
    ids = {int(t["id"]) for t in spec.get("added_tokens") or []}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "ids" and isinstance(value, list):
                    ids.update(int(i) for i in value)
                elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                    ids.add(int(value[1]))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(spec.get("post_processor"))
    model = spec["model"]
    if model["type"] == "Unigram" and model.get("unk_id") is not None:
        ids.add(int(model["unk_id"]))
    if model["type"] == "WordPiece" and model["unk_token"] in model["vocab"]:
        ids.add(int(model["vocab"][model["unk_token"]]))
    padding = spec.get("padding")
    if padding:
        ids.add(int(padding["pad_id"]))
    return ids


def pieces_of(spec: dict[str, Any]) -> list[str]:
    """The model's pieces in id order."""
    model = spec["model"]
    if model["type"] == "Unigram":
        return [piece for piece, _ in model["vocab"]]
    pieces = [""] * len(model["vocab"])
    for piece, index in model["vocab"].items():
        pieces[index] = piece
    return pieces


def word_start_marker(spec: dict[str, Any]) -> str:
    """The Metaspace replacement a Unigram tokenizer writes before words ("▁"), or ""."""
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Metaspace":
                found.append(node.get("replacement", "\u2581"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(spec.get("pre_tokenizer"))
    return found[0] if found else ""


def character_ids(spec: dict[str, Any], keep_char) -> set[int]:
    """Ids of the single-character pieces (bare, word-start or continuation) to keep."""
    model = spec["model"]
    if model["type"] == "WordPiece":
        affixes = [model.get("continuing_subword_prefix") or "##"]
    else:
        affixes = [word_start_marker(spec)]
    ids = set()
    for index, piece in enumerate(pieces_of(spec)):
        core = piece
        for affix in affixes:
            if affix and core.startswith(affix) and len(core) > len(affix):
                core = core[len(affix):]
        if len(core) == 1 and keep_char(core) or core in affixes and core:
            ids.add(index)
    return ids


def main_scripts(texts: Sequence[str], share: float = 0.5) -> set[str]:
    """The script that writes most (at least ``share``) of the letters of ``texts``, if one does."""
    counts = Counter(script_of(c) for text in texts for c in text if unicodedata.category(c)[0] == "L")
    total = sum(counts.values())
    return {script for script, count in counts.items() if count >= share * total}


def script_piece_ids(spec: dict[str, Any], scripts: set[str]) -> set[int]:
    """Ids of the pieces whose characters (word-start marker or ``##`` aside) all belong to ``scripts``."""
    model = spec["model"]
    affix = (model.get("continuing_subword_prefix") or "##") if model["type"] == "WordPiece" else word_start_marker(spec)
    ids = set()
    for index, piece in enumerate(pieces_of(spec)):
        core = piece[len(affix):] if affix and piece.startswith(affix) else piece
        if core and all(script_of(c) in scripts for c in core):
            ids.add(index)
    return ids


def wordpiece_failures(tokenizer, texts: Sequence[str], vocab: dict[str, int], unk_id: int) -> set[int]:
    """Pieces WordPiece's greedy search passes through on words it cannot split.

    Such a word becomes one ``[UNK]``; its partial matches are not in the output, yet
    dropping them could let the pruned tokenizer split the word (with shorter pieces).
    Keeping every known prefix and ``##`` infix of these words makes it fail again.
    """
    prefix = tokenizer.model.continuing_subword_prefix
    ids = set()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer else text
        words = tokenizer.pre_tokenizer.pre_tokenize_str(normalized) if tokenizer.pre_tokenizer else [(normalized, None)]
        for word, _ in words:
            if [t.id for t in tokenizer.model.tokenize(word)] != [unk_id]:
                continue
            for start in range(len(word)):
                for end in range(start + 1, len(word) + 1):
                    piece = word[start:end] if start == 0 else prefix + word[start:end]
                    if piece in vocab:
                        ids.add(vocab[piece])
    return ids
