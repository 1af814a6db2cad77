"""Vocabulary pruning: keep the word pieces a task's texts use, drop the other embedding rows.

A multilingual encoder spends most of its parameters on its word embeddings
(multilingual-e5-small: 96.0M of 117.7M, 250,037 rows), while one task's corpus
uses a few thousand pieces. :func:`prune_vocabulary` keeps

* every piece the corpus tokenizes into,
* the tokenizer's special and added tokens (``<s>``, ``[PAD]``, ``<mask>``...),
* every single-character piece (with its word-start / continuation variant) of the
  scripts the corpus is written in, plus ASCII, so that other text in those scripts
  still tokenizes without ``<unk>``, into smaller kept pieces,

and builds a ``tokenizers`` tokenizer of the same kind over the kept pieces, ids
renumbered in the original order. Normaliser, pre-tokeniser, decoder and post-processor
are the original's (special-token ids remapped). :func:`prune_embeddings` gathers the
matching rows of the embedding table.

Why the corpus tokenizes exactly as before: a Unigram tokenizer picks the best-scoring
segmentation; every piece of that best segmentation is kept, and the pruned tokenizer
only chooses among a subset of the original segmentations, so the best one wins again
(the lowest-scoring piece is kept too, because the ``<unk>`` penalty is measured from
it). A WordPiece tokenizer matches the longest known prefix, greedily; every piece it
chose is kept and no longer kept piece can exist, so it chooses the same ones. A word
that WordPiece could not split (``[UNK]``) keeps the pieces its greedy search passed
through, so it fails at the same place. :func:`prune_vocabulary` checks this on every
corpus text and raises if a single id differs.

The public entry points take a transformers tokenizer or a ``tokenizers.Tokenizer``.
"""

from jaxprune._extras import require

require(__name__, "train", "tokenizers", "transformers", "safetensors")

from jaxprune.vocab._model import (BERT_EMBEDDING_PATH, VOCABULARY_NAME, load_vocabulary, original_vocab_size,
                                   prune_embedding_rows, prune_embeddings, prune_model_folder)
from jaxprune.vocab._tokenizer import (PrunedVocabulary, backend_tokenizer, encode_pieces, fallback_report,
                                       prune_vocabulary, to_transformers)

__all__ = [
    "BERT_EMBEDDING_PATH", "VOCABULARY_NAME", "PrunedVocabulary", "backend_tokenizer", "encode_pieces",
    "fallback_report", "load_vocabulary", "original_vocab_size", "prune_embedding_rows", "prune_embeddings",
    "prune_model_folder", "prune_vocabulary", "to_transformers",
]
