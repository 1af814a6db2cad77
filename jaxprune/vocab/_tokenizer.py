"""The pruned tokenizer: kept pieces, renumbered, in a ``tokenizers`` model of the original's kind."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from jaxprune.errors import JaxpruneError
from jaxprune.vocab._keep import (character_ids, letter_scripts, main_scripts, pieces_of, script_of,
                                  script_piece_ids, special_ids, wordpiece_failures)

_KINDS = ("Unigram", "WordPiece")


@dataclasses.dataclass(frozen=True)
class PrunedVocabulary:
    """A tokenizer over the kept pieces and where each kept piece came from.

    Attributes:
      tokenizer: a ``tokenizers.Tokenizer`` of the original's kind over the kept pieces.
      kept_ids: int64 ``(kept,)``, ascending: new id ``i`` was original id ``kept_ids[i]``.
      original_size: pieces in the original tokenizer's vocabulary.
      corpus_pieces: distinct pieces the corpus tokenized into (special tokens excluded).
      kind: ``"Unigram"`` or ``"WordPiece"``.
      scripts: the scripts (first word of the Unicode character names) whose single
        characters were kept, e.g. ``("DEVANAGARI", "LATIN")``.
    """

    tokenizer: Any
    kept_ids: np.ndarray
    original_size: int
    corpus_pieces: int
    kind: str
    scripts: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.kept_ids)

    def new_id(self, original_id: int) -> int:
        """The new id of an original id, or a one-line error when it was dropped."""
        index = int(np.searchsorted(self.kept_ids, original_id))
        if index == self.size or self.kept_ids[index] != original_id:
            raise JaxpruneError(f"token id {original_id} is not in the pruned vocabulary; "
                                f"add the text that uses it to the vocabulary corpus")
        return index

    def original_ids(self, new_ids: Sequence[int]) -> np.ndarray:
        return self.kept_ids[np.asarray(new_ids, dtype=np.int64)]

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "original_pieces": self.original_size, "kept_pieces": self.size,
                "corpus_pieces": self.corpus_pieces, "scripts": list(self.scripts)}


def backend_tokenizer(tokenizer: Any):
    """The ``tokenizers.Tokenizer`` behind a transformers fast tokenizer (or itself)."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise JaxpruneError(f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer; "
                            f"load it with AutoTokenizer.from_pretrained(..., use_fast=True)")
    return backend


def _plain_copy(tokenizer):
    """A copy without truncation or padding, so that encodings show every piece."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def encode_pieces(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Each text's piece ids, without special tokens, truncation or padding."""
    plain = _plain_copy(backend_tokenizer(tokenizer))
    return [e.ids for e in plain.encode_batch(list(texts), add_special_tokens=False)]


def _remap_ids(node: Any, new_id) -> Any:
    """The post-processor JSON with every special-token id replaced by its new id."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "ids" and isinstance(value, list):
                out[key] = [new_id(int(i)) for i in value]
            elif key in ("sep", "cls") and isinstance(value, list) and len(value) == 2:
                out[key] = [value[0], new_id(int(value[1]))]
            else:
                out[key] = _remap_ids(value, new_id)
        return out
    if isinstance(node, list):
        return [_remap_ids(item, new_id) for item in node]
    return node


def _pruned_spec(spec: dict[str, Any], kept_ids: np.ndarray) -> dict[str, Any]:
    lookup = {int(old): new for new, old in enumerate(kept_ids)}

    def new_id(old: int) -> int:
        return lookup[old]

    spec = dict(spec)
    model = dict(spec["model"])
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in kept_ids]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id(int(model["unk_id"]))
    else:
        pieces = pieces_of(spec)
        model["vocab"] = {pieces[i]: new for new, i in enumerate(kept_ids)}
    spec["model"] = model
    spec["added_tokens"] = [dict(t, id=new_id(int(t["id"]))) for t in spec.get("added_tokens") or []]
    spec["post_processor"] = _remap_ids(spec.get("post_processor"), new_id)
    if spec.get("padding"):
        spec["padding"] = dict(spec["padding"], pad_id=new_id(int(spec["padding"]["pad_id"])))
    return spec


def prune_vocabulary(tokenizer: Any, texts: Sequence[str], *, keep_script_characters: bool = True,
                     keep_script_pieces: bool = True, keep_ids: Iterable[int] = ()) -> PrunedVocabulary:
    """The vocabulary ``texts`` need, as a new tokenizer; see the module docstring.

    Args:
      tokenizer: a transformers fast tokenizer or a ``tokenizers.Tokenizer`` whose model
        is Unigram (SentencePiece, e.g. e5 / XLM-R) or WordPiece (BERT, MuRIL, MiniLM).
      texts: the corpus, e.g. the training split. Never the eval or test text.
      keep_script_characters: also keep the single-character pieces of the corpus's
        scripts and of ASCII, so that unseen words of those scripts still tokenize.
      keep_script_pieces: keep every piece written entirely in the script of most
        of the corpus's letters (Devanagari for Marathi news), so that unseen words of
        that script split as the original would. More rows, fewer fallbacks; for a
        Latin-script corpus it keeps most of a multilingual vocabulary.
      keep_ids: more original ids to keep (e.g. the model config's ``pad_token_id``).

    Returns:
      A :class:`PrunedVocabulary`. Every text of ``texts`` tokenizes into the same pieces
      as before (ids renumbered); this is checked, and a difference raises.
    """
    from tokenizers import Tokenizer

    texts = [t for t in texts if isinstance(t, str)]
    if not texts:
        raise JaxpruneError("vocabulary pruning needs at least one text; pass the training texts")
    original = backend_tokenizer(tokenizer)
    spec = json.loads(original.to_str())
    kind = spec["model"]["type"]
    if kind not in _KINDS:
        raise JaxpruneError(f"vocabulary pruning supports {' and '.join(_KINDS)} tokenizers, not {kind}; "
                            f"use a SentencePiece-Unigram or WordPiece model, or do without vocabulary pruning")
    pieces = pieces_of(spec)
    plain = _plain_copy(original)
    encodings = [e.ids for e in plain.encode_batch(texts, add_special_tokens=False)]
    used = {i for ids in encodings for i in ids}
    special = special_ids(spec)
    kept = used | special | {int(i) for i in keep_ids}
    if kind == "Unigram":
        scores = [score for _, score in spec["model"]["vocab"]]
        kept.add(int(np.argmin(scores)))  # fixes the <unk> penalty (min score - 10)
    elif spec["model"]["unk_token"] in spec["model"]["vocab"]:
        unk_id = spec["model"]["vocab"][spec["model"]["unk_token"]]
        if unk_id in used:
            kept |= wordpiece_failures(plain, texts, spec["model"]["vocab"], unk_id)

    normalized = [original.normalizer.normalize_str(t) for t in texts] if original.normalizer else []
    chars = set("".join(texts)) | set("".join(normalized))
    scripts = letter_scripts(chars) if keep_script_characters or keep_script_pieces else set()
    if keep_script_characters:

        def keep_char(c: str) -> bool:
            return c in chars or (" " < c < "\x7f") or script_of(c) in scripts

        kept |= character_ids(spec, keep_char)
    if keep_script_pieces:
        kept |= script_piece_ids(spec, main_scripts(normalized or texts))
    out_of_range = [i for i in kept if not 0 <= i < len(pieces)]
    if out_of_range:
        raise JaxpruneError(f"token id {out_of_range[0]} is outside the tokenizer's {len(pieces)} pieces; "
                            f"the tokenizer files are inconsistent")

    kept_ids = np.array(sorted(kept), dtype=np.int64)
    pruned = Tokenizer.from_str(json.dumps(_pruned_spec(spec, kept_ids)))
    vocabulary = PrunedVocabulary(pruned, kept_ids, len(pieces), len(used - special), kind, tuple(sorted(scripts)))

    # The reference is the original as its JSON loads (what every saved copy is): a tie between
    # equally scored Unigram segmentations may fall either way in a tokenizer built in memory.
    changed = [i for i, (text_ids, new) in enumerate(zip(encodings, encode_pieces(pruned, texts)))
               if list(vocabulary.original_ids(new)) != list(text_ids)]
    if changed:
        raise JaxpruneError(f"the pruned vocabulary tokenizes {len(changed)} corpus texts differently "
                            f"(first: {texts[changed[0]][:60]!r}); this is a jaxprune bug, please report it")
    return vocabulary


def fallback_report(tokenizer: Any, vocabulary: PrunedVocabulary, texts: Sequence[str]) -> dict[str, Any]:
    """How ``texts`` fare with the pruned vocabulary: how many tokenize differently than
    with the original (some piece was dropped, so smaller kept pieces stand in), and how
    many pieces are unknown (``<unk>``) with the pruned one but were not before."""
    before = encode_pieces(tokenizer, texts)
    after = encode_pieces(vocabulary.tokenizer, texts)
    unk_id = _unk_id(backend_tokenizer(tokenizer))
    changed = sum(list(vocabulary.original_ids(a)) != list(b) for a, b in zip(after, before))
    pieces_before = sum(len(b) for b in before)
    outside = [~np.isin(np.asarray(b, np.int64), vocabulary.kept_ids) for b in before]
    dropped_texts = sum(int(o.any()) for o in outside)
    dropped_pieces = sum(int(o.sum()) for o in outside)
    new_unk = 0
    if unk_id is not None:
        new_unk = sum(int((vocabulary.original_ids(a) == unk_id).sum()) - b.count(unk_id)
                      for a, b in zip(after, before))
    return {
        "texts": len(texts),
        "texts_changed": int(changed),
        "texts_changed_fraction": changed / max(len(texts), 1),
        "texts_with_dropped_pieces": int(dropped_texts),
        "pieces": int(pieces_before),
        "dropped_pieces": int(dropped_pieces),
        "dropped_pieces_fraction": dropped_pieces / max(pieces_before, 1),
        "pieces_after": int(sum(len(a) for a in after)),
        "new_unknown_pieces": int(new_unk),
    }


def _unk_id(tokenizer) -> int | None:
    spec = json.loads(tokenizer.to_str())["model"]
    if spec["type"] == "Unigram":
        return spec.get("unk_id")
    return spec["vocab"].get(spec["unk_token"])


def to_transformers(vocabulary: PrunedVocabulary, like: Any):
    """The pruned tokenizer as a transformers fast tokenizer with ``like``'s special tokens
    and maximum length; ``save_pretrained`` writes files ``AutoTokenizer`` loads."""
    from transformers import PreTrainedTokenizerFast

    specials = dict(getattr(like, "special_tokens_map", {}) or {})
    return PreTrainedTokenizerFast(tokenizer_object=vocabulary.tokenizer,
                                   model_max_length=getattr(like, "model_max_length", None) or 512, **specials)
