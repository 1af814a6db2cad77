"""Vocabulary pruning: exact on its corpus for Unigram (e5-small) and WordPiece (MiniLM),
graceful outside it, the same logits, folders that transformers and jaxprune load."""

import json
import random
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from jaxprune import vocab
from jaxprune.models.bert import BertForSequenceClassification, init_params
from jaxprune.errors import JaxpruneError
from jaxprune.models.loading import from_pretrained, load_tokenizer, save_pretrained

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shc_split(shc_texts):
    """A seeded 80/20 split of the SHC headlines: the vocabulary sees only the first part."""
    texts = sorted(set(shc_texts))
    random.Random(0).shuffle(texts)
    cut = int(0.8 * len(texts))
    return texts[:cut], texts[cut:]


def english_lines() -> list[str]:
    """MiniLM's own language: the lines of the project's README. (Not the docs too: with them the
    corpus's letters became half Latin, every Latin piece then counts as the main script's, and
    the test would measure how long the docs are.)"""
    return [line for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines() if line.strip()]


def _same_pieces(original, vocabulary, texts):
    plain_before = vocab.encode_pieces(original, texts)
    plain_after = vocab.encode_pieces(vocabulary.tokenizer, texts)
    before = [e.tokens for e in vocab.backend_tokenizer(original).encode_batch(texts, add_special_tokens=True)]
    after = [e.tokens for e in vocabulary.tokenizer.encode_batch(texts, add_special_tokens=True)]
    ids_match = all(list(vocabulary.original_ids(a)) == b for a, b in zip(plain_after, plain_before))
    return before == after and ids_match


@pytest.mark.parametrize("kind", ["Unigram", "WordPiece"])
def test_the_corpus_tokenizes_into_the_same_pieces(kind, e5_folder, minilm_folder, shc_split):
    train, _ = shc_split
    folder, corpus = (e5_folder, train) if kind == "Unigram" else (minilm_folder, train + english_lines())
    tokenizer = load_tokenizer(folder)
    vocabulary = vocab.prune_vocabulary(tokenizer, corpus)

    assert vocabulary.kind == kind
    assert vocabulary.size < vocabulary.original_size / 4
    assert _same_pieces(tokenizer, vocabulary, corpus)
    # Special tokens keep their meaning: the post-processor adds the new ids of <s>/</s> ([CLS]/[SEP]).
    pruned = vocab.to_transformers(vocabulary, tokenizer)
    batch, pruned_batch = (t(corpus[:8], padding=True, return_tensors="np") for t in (tokenizer, pruned))
    np.testing.assert_array_equal(vocabulary.original_ids(pruned_batch["input_ids"]), batch["input_ids"])
    np.testing.assert_array_equal(pruned_batch["attention_mask"], batch["attention_mask"])


def test_wordpiece_words_it_cannot_split_stay_unknown():
    """WordPiece matches "ab" in "abc", then finds no "##c": the word is [UNK]. Dropping
    the unused "ab" would let "a" + "##bc" succeed; the pruner keeps it, so it fails alike."""
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "ab", "x", "##bc", "##qq"]
    tokenizer = Tokenizer(models.WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    corpus = ["abc xbc"]
    assert tokenizer.encode(corpus[0]).tokens == ["[CLS]", "[UNK]", "x", "##bc", "[SEP]"]

    vocabulary = vocab.prune_vocabulary(tokenizer, corpus, keep_script_pieces=False)
    assert "ab" in vocabulary.tokenizer.get_vocab() and "##qq" not in vocabulary.tokenizer.get_vocab()
    assert vocabulary.tokenizer.encode(corpus[0]).tokens == ["[CLS]", "[UNK]", "x", "##bc", "[SEP]"]
    pruned_ids = vocabulary.tokenizer.encode(corpus[0]).ids
    assert vocabulary.original_ids(pruned_ids).tolist() == tokenizer.encode(corpus[0]).ids
    assert pruned_ids[0] == vocabulary.new_id(2) != 2  # [CLS] renumbered in the post-processor


def test_unigram_keeps_the_unknown_penalty_and_its_pieces():
    """Unigram's <unk> scores (lowest score - 10): the lowest-scoring piece stays, so text with
    unknown characters segments as before."""
    vocab_scores = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("▁", -2.0), ("a", -3.0), ("b", -3.0),
                    ("▁ab", -4.0), ("ab", -2.5), ("▁a", -3.5), ("zz", -20.0), ("c", -5.0)]
    tokenizer = Tokenizer(models.Unigram(vocab_scores, unk_id=0))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = ["ab a☃b", "ba"]
    vocabulary = vocab.prune_vocabulary(tokenizer, corpus, keep_script_characters=False, keep_script_pieces=False)
    kept = set(vocabulary.tokenizer.get_vocab())
    assert {"zz", "<unk>", "▁ab", "▁a"} <= kept and "c" not in kept
    assert _same_pieces(tokenizer, vocabulary, corpus)


def test_text_outside_the_corpus_falls_back_to_kept_pieces(e5_folder, minilm_folder, shc_split):
    train, held_out = shc_split
    for folder in (e5_folder, minilm_folder):
        tokenizer = load_tokenizer(folder)
        vocabulary = vocab.prune_vocabulary(tokenizer, train)
        report = vocab.fallback_report(tokenizer, vocabulary, held_out)
        assert report["texts"] == len(held_out)
        assert 0 < report["texts_changed"] < report["texts"]  # some use a dropped piece, not all
        assert report["texts_changed"] == report["texts_with_dropped_pieces"]
        assert report["pieces_after"] >= report["pieces"]  # smaller pieces stand in
        assert report["new_unknown_pieces"] == 0

    # Any Devanagari (or ASCII) text tokenizes with no <unk> the original did not have.
    tokenizer = load_tokenizer(e5_folder)
    vocabulary = vocab.prune_vocabulary(tokenizer, train[:50])
    chars = [chr(c) for c in range(0x0900, 0x0980)] + [chr(c) for c in range(0x21, 0x7F)] + [" "] * 20
    rng = random.Random(1)
    texts = ["".join(rng.choice(chars) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    texts += ["", " ", "\u200d", "क्ष\u200cत्र", "\t\n"]
    report = vocab.fallback_report(tokenizer, vocabulary, texts)
    assert report["new_unknown_pieces"] == 0
    assert report["texts_changed"] > 100  # these random strings are far from the 50 headlines
    # Other scripts' characters may become <unk>, and that is all.
    (ids,) = vocab.encode_pieces(vocabulary.tokenizer, ["emoji 🙂 and 中文"])
    assert vocabulary.original_ids(ids).tolist().count(tokenizer.unk_token_id) == 2


def test_the_vocabulary_comes_from_the_given_texts_only(e5_folder, shc_split):
    train, held_out = shc_split
    tokenizer = load_tokenizer(e5_folder)
    vocabulary = vocab.prune_vocabulary(tokenizer, train, keep_script_pieces=False)
    train_ids = {i for ids in vocab.encode_pieces(tokenizer, train) for i in ids}
    held_out_only = {i for ids in vocab.encode_pieces(tokenizer, held_out) for i in ids} - train_ids
    multi_char = {i for i in held_out_only if len(tokenizer.convert_ids_to_tokens(i).lstrip("▁")) > 1}
    assert multi_char and not set(vocabulary.kept_ids.tolist()) & multi_char


def test_script_pieces_keep_every_piece_of_the_main_script(e5_folder, shc_split):
    """The default also keeps each piece written wholly in the script of most of the corpus's
    letters (Devanagari here), and nothing of the other scripts beyond single characters."""
    import unicodedata

    train, held_out = shc_split
    tokenizer = load_tokenizer(e5_folder)
    small = vocab.prune_vocabulary(tokenizer, train, keep_script_pieces=False)
    large = vocab.prune_vocabulary(tokenizer, train)
    assert set(small.kept_ids.tolist()) < set(large.kept_ids.tolist()) and large.size < 4 * small.size
    added = [tokenizer.convert_ids_to_tokens(int(i)) for i in set(large.kept_ids.tolist()) - set(small.kept_ids.tolist())]
    assert all(unicodedata.name(c).startswith("DEVANAGARI") for piece in added for c in piece.lstrip("▁"))
    assert _same_pieces(tokenizer, large, train)
    fewer = vocab.fallback_report(tokenizer, large, held_out)["texts_changed"]
    assert 0 < fewer < vocab.fallback_report(tokenizer, small, held_out)["texts_changed"]


@pytest.mark.parametrize("kind", ["Unigram", "WordPiece"])
def test_pruned_model_gives_the_same_logits(kind, e5_folder, minilm_folder, shc_split, tmp_path):
    """The folder route (transformers files) and the params route (in memory) agree with the
    original model to 1e-6 on the corpus, with the same (seeded) classifier head."""
    train, _ = shc_split
    folder = e5_folder if kind == "Unigram" else minilm_folder
    texts = train[:48]
    labels = ("a", "b", "c")
    vocabulary = vocab.prune_model_folder(folder, tmp_path / "pruned", train)
    assert json.loads((tmp_path / "pruned" / "vocabulary.json").read_text())["kept_pieces"] == vocabulary.size

    params, config = from_pretrained(folder, label_names=labels, seed=3)
    pruned_params, pruned_config = from_pretrained(tmp_path / "pruned", label_names=labels, seed=3)
    assert pruned_config.vocab_size == vocabulary.size < config.vocab_size
    memory_params, memory_config = vocab.prune_embeddings(params, config, vocabulary)
    assert memory_config == pruned_config
    np.testing.assert_array_equal(memory_params["embeddings"]["word_embeddings"]["embedding"],
                                  pruned_params["embeddings"]["word_embeddings"]["embedding"])

    def logits(model_params, model_config, tokenizer):
        batch = tokenizer(texts, padding="max_length", truncation=True, max_length=64, return_tensors="np")
        return np.asarray(BertForSequenceClassification(model_config).apply(
            {"params": model_params}, batch["input_ids"], batch["attention_mask"]))

    reference = logits(params, config, load_tokenizer(folder))
    np.testing.assert_allclose(logits(pruned_params, pruned_config, load_tokenizer(tmp_path / "pruned")),
                               reference, atol=1e-6, rtol=0)
    # An existing folder is reused, not rebuilt.
    assert vocab.prune_model_folder(folder, tmp_path / "pruned", ["other text"]).size == vocabulary.size


def test_the_pruned_folder_loads_in_transformers(e5_folder, shc_split, tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    train, _ = shc_split
    vocab.prune_model_folder(e5_folder, tmp_path / "pruned", train)
    texts = train[:6]

    def embeddings(folder):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder).eval()
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        return batch["input_ids"].numpy(), hidden.numpy()

    ids, hidden = embeddings(e5_folder)
    pruned_ids, pruned_hidden = embeddings(tmp_path / "pruned")
    assert pruned_ids.max() < 20_000 < ids.max()
    np.testing.assert_allclose(pruned_hidden, hidden, atol=1e-5)


def test_embedding_rows_of_any_params_tree(tiny_bert_params, tiny_bert_config):
    kept = np.array([0, 3, 7, 59])
    pruned = vocab.prune_embedding_rows(tiny_bert_params, kept)
    table = np.asarray(tiny_bert_params["embeddings"]["word_embeddings"]["embedding"])
    np.testing.assert_array_equal(pruned["embeddings"]["word_embeddings"]["embedding"], table[kept])
    np.testing.assert_array_equal(pruned["classifier"]["kernel"], tiny_bert_params["classifier"]["kernel"])
    custom = vocab.prune_embedding_rows({"tok": {"table": np.eye(5)}}, np.array([4, 1]), path="tok/table")
    np.testing.assert_array_equal(custom["tok"]["table"], np.eye(5)[[4, 1]])
    with pytest.raises(JaxpruneError, match="no parameter path matches"):
        vocab.prune_embedding_rows(tiny_bert_params, kept, path="nothing/here")
    with pytest.raises(JaxpruneError, match="has 60 rows but the vocabulary keeps id 60"):
        vocab.prune_embedding_rows(tiny_bert_params, np.array([1, 60]))


@pytest.mark.slow  # loads the pretrained MiniLM
def test_bad_inputs_are_one_line_errors(minilm_folder, tmp_path):
    tokenizer = load_tokenizer(minilm_folder)
    with pytest.raises(JaxpruneError, match="at least one text"):
        vocab.prune_vocabulary(tokenizer, [])
    bpe = Tokenizer(models.BPE({"a": 0, "b": 1}, []))
    with pytest.raises(JaxpruneError, match="not BPE"):
        vocab.prune_vocabulary(bpe, ["ab"])
    vocabulary = vocab.prune_vocabulary(tokenizer, ["hello"], keep_script_pieces=False)
    with pytest.raises(JaxpruneError, match="not in the pruned vocabulary"):
        vocabulary.new_id(tokenizer.convert_tokens_to_ids("zebra"))
    # A tokenizer larger than the model's embedding table.
    small = tmp_path / "small"
    config = from_pretrained(minilm_folder)[1].replace(vocab_size=50, num_hidden_layers=1)
    save_pretrained(init_params(config, jax.random.key(0)), config, small)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(minilm_folder) / name, small / name)
    with pytest.raises(JaxpruneError, match="does not belong to the model"):
        vocab.prune_model_folder(small, tmp_path / "out", ["hello world"])
    assert not (tmp_path / "out").exists()


def _random_tokenizer(kind: str, rng: random.Random) -> Tokenizer:
    alphabet = "abcé"
    pieces = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(30)})
    if kind == "Unigram":
        # As in every SentencePiece model, each character of a piece is a piece itself ("x",
        # which the corpora use, is in none: it is unknown).
        words = [("<unk>", 0.0)] + [(("▁" if rng.random() < 0.4 else "") + p, -rng.uniform(1, 12)) for p in pieces]
        words += [(c, -rng.uniform(1, 12)) for c in alphabet]
        unique = list(dict(words).items())
        tokenizer = Tokenizer(models.Unigram(unique, unk_id=0))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    else:
        names = ["[UNK]"] + sorted({("##" if rng.random() < 0.5 else "") + p for p in pieces})
        tokenizer = Tokenizer(models.WordPiece({p: i for i, p in enumerate(names)}, unk_token="[UNK]"))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


@pytest.mark.parametrize("kind", ["Unigram", "WordPiece"])
def test_random_vocabularies_tokenize_their_corpus_exactly(kind):
    """300 random tokenizers and corpora (unknown characters included): pruning never changes
    how the corpus tokenizes (prune_vocabulary raises if it does), with or without the
    single-character and script pieces. (A Unigram vocabulary whose pieces contain a character
    that is not itself a piece, which SentencePiece never makes, can tie two segmentations;
    the generator keeps to SentencePiece's rule.)"""
    rng = random.Random(7)
    for case in range(300):
        tokenizer = _random_tokenizer(kind, rng)
        corpus = [" ".join("".join(rng.choice("abcéx") for _ in range(rng.randint(1, 9)))
                           for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 6))]
        vocabulary = vocab.prune_vocabulary(tokenizer, corpus, keep_script_characters=case % 2 == 0,
                                            keep_script_pieces=case % 3 == 0)
        assert _same_pieces(tokenizer, vocabulary, corpus)
        held_out = ["".join(rng.choice("abcdéxz ") for _ in range(12))]
        assert vocab.fallback_report(tokenizer, vocabulary, held_out)["texts"] == 1
