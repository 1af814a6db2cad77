"""Load Hugging Face BERT checkpoints into the jaxprune Flax BERT, and save them back.

The Hugging Face (PyTorch) names map one to one onto the Flax tree of
:mod:`jaxprune.models.bert`; kernels are stored transposed (``out x in``) there.
Weights are read from ``model.safetensors`` (or its sharded index); a
``pytorch_model.bin`` is read only when the caller opts in with
``allow_pickle=True``, and then with torch's weights-only loader.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from jaxprune._extras import require
from jaxprune.models.bert import Params, init_params, param_shapes
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError

require(__name__, "train", "safetensors", "transformers", "huggingface_hub")

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PICKLE_WEIGHTS_NAME = "pytorch_model.bin"
_HUB_FILES = ["config.json", "*.safetensors", WEIGHTS_INDEX_NAME, "tokenizer*", "vocab.txt",
              "special_tokens_map.json"]

# Flax sub-path -> Hugging Face sub-name inside one encoder layer.
_LAYER_NAMES = {
    "attention/query": "attention.self.query",
    "attention/key": "attention.self.key",
    "attention/value": "attention.self.value",
    "attention/output": "attention.output.dense",
    "attention/LayerNorm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "output_LayerNorm": "output.LayerNorm",
}
_TOP_NAMES = {
    "embeddings/word_embeddings": "bert.embeddings.word_embeddings",
    "embeddings/position_embeddings": "bert.embeddings.position_embeddings",
    "embeddings/token_type_embeddings": "bert.embeddings.token_type_embeddings",
    "embeddings/LayerNorm": "bert.embeddings.LayerNorm",
    "pooler": "bert.pooler.dense",
    "classifier": "classifier",
}
_LEAF_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight"}
# Parts a checkpoint may lack; they are then freshly initialised (e.g. an encoder-only model).
_HEAD_PREFIXES = ("pooler/", "classifier/")


def _path_str(path: tuple[Any, ...]) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def hf_name(flax_path: str) -> str:
    """The Hugging Face state-dict name of a Flax param path, e.g.
    ``encoder/layer_3/attention/query/kernel`` -> ``bert.encoder.layer.3.attention.self.query.weight``.
    """
    module, leaf = flax_path.rsplit("/", 1)
    match = re.fullmatch(r"encoder/layer_(\d+)/(.+)", module)
    if match:
        base = f"bert.encoder.layer.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
    else:
        base = _TOP_NAMES[module]
    return f"{base}.{_LEAF_NAMES[leaf]}"


def _to_hf(flax_path: str, value: np.ndarray) -> np.ndarray:
    """A Flax leaf in the Hugging Face layout: kernels (in, out) become weights (out, in).
    The transpose is its own inverse, so this also reads a Hugging Face tensor back."""
    return value.T if flax_path.endswith("/kernel") else value


def to_hf_state_dict(params: Params) -> dict[str, np.ndarray]:
    """The Hugging Face BERT state dict of jaxprune params: names and layouts of
    ``transformers.BertForSequenceClassification``.

    Every writer of Hugging Face tensors uses it (:func:`save_pretrained`, the PyTorch
    peer of ``benchmarks/inference.py``). Per-layer widths (a compacted model) are kept as
    they are: a layer's ``attention.self.query.weight`` is then (heads_i * head_dim, H).

    Args:
      params: params of :class:`jaxprune.models.bert.BertForSequenceClassification`
        (any float dtype; arrays on any device).

    Returns:
      ``{hf_name: array}`` in the params' flattening order; each array a fresh float32,
      C-contiguous, writable host copy (kernels transposed to ``(out, in)``), ready for
      ``safetensors.numpy.save_file`` or ``torch.from_numpy``.
    """
    tensors = {}
    for path, value in jax.tree_util.tree_flatten_with_path(params)[0]:
        flax_path = _path_str(path)
        tensors[hf_name(flax_path)] = np.array(_to_hf(flax_path, np.asarray(value, np.float32)), order="C")
    return tensors


def _canonical(name: str) -> str:
    """Normalise checkpoint names: add the ``bert.`` prefix, old gamma/beta LayerNorm names."""
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    if not name.startswith(("bert.", "classifier.")):
        name = "bert." + name
    return name


# --- resolving a name to a folder ----------------------------------------------------


def resolve_folder(name_or_path: str | os.PathLike) -> str:
    """A local folder as is, or a hub id downloaded with huggingface_hub."""
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    # A hub id is "name" or "owner/name"; anything else is a (missing) local path.
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1 or os.sep != "/" and os.sep in path
    if looks_local or os.path.exists(path):
        raise JaxpruneError(f"model folder {path} does not exist; pass a folder with config.json and "
                            f"model.safetensors, or a Hugging Face hub id")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=path, allow_patterns=_HUB_FILES)
    except Exception as err:  # noqa: BLE001 - every hub failure means the same to the user
        reason = type(err).__name__
        raise JaxpruneError(
            f"could not fetch {path!r} from the Hugging Face Hub ({reason}: no network or no such "
            f"model); download it elsewhere and pass its local folder instead"
        ) from None


# --- reading weights -------------------------------------------------------------------


def _safetensors_files(folder: str) -> list[str]:
    index = os.path.join(folder, WEIGHTS_INDEX_NAME)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(folder, s) for s in shards]
    single = os.path.join(folder, WEIGHTS_NAME)
    return [single] if os.path.isfile(single) else []


def _read_safetensors(files: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    for file in files:
        # The flax framework reads bfloat16 too; we keep float32 on the host.
        with safe_open(file, framework="flax") as f:
            for key in f.keys():
                yield key, np.asarray(f.get_tensor(key), dtype=np.float32)


def _read_pickle(file: str) -> Iterator[tuple[str, np.ndarray]]:
    try:
        import torch
    except ImportError:
        raise JaxpruneError(f"{file} needs torch to read; install torch or convert it to safetensors") from None
    state = torch.load(file, map_location="cpu", weights_only=True)
    for key, tensor in state.items():
        yield key, tensor.float().numpy()


def check_weights(folder: str, allow_pickle: bool = False) -> None:
    """Raise what :func:`read_state_dict` would when ``folder`` holds no weights it may read,
    without reading them."""
    if _safetensors_files(folder):
        return
    if not os.path.isfile(os.path.join(folder, PICKLE_WEIGHTS_NAME)):
        raise JaxpruneError(f"{folder} has no {WEIGHTS_NAME}; pass a folder with BERT weights in safetensors")
    if not allow_pickle:
        raise JaxpruneError(
            f"{folder} has only {PICKLE_WEIGHTS_NAME}, which is a pickle; convert it to "
            f"safetensors or opt in with `allow_pickle=True` if you trust it"
        )


def read_state_dict(folder: str, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float32 numpy arrays keyed by canonical HF names."""
    check_weights(folder, allow_pickle)
    files = _safetensors_files(folder)
    tensors = _read_safetensors(files) if files else _read_pickle(os.path.join(folder, PICKLE_WEIGHTS_NAME))
    return {_canonical(k): v for k, v in tensors}


# --- public API ------------------------------------------------------------------------


def from_pretrained(
    name_or_path: str | os.PathLike,
    label_names: tuple[str, ...] | list[str] | None = None,
    *,
    seed: int = 0,
    allow_pickle: bool = False,
    classifier_pooling: str | None = None,
    replace_head: bool = False,
) -> tuple[Params, BertConfig]:
    """Load a Hugging Face BERT checkpoint as ``(params, config)``.

    Args:
      name_or_path: a local folder with ``config.json`` and ``model.safetensors``
        (sharded is fine), or a hub id such as ``l3cube-pune/marathi-topic-all-doc-v2``.
      label_names: the classes, in id order. ``None`` keeps the checkpoint's
        ``id2label``. When the checkpoint has no classifier, or one of another
        size, the pooler/classifier it lacks is freshly initialised with ``seed``.
        A trained classifier (classifier weights and real label names, not
        ``LABEL_0``...; see :func:`checkpoint_labels`) is never silently relabelled:
        other labels, or its own in another order, raise unless ``replace_head``.
      allow_pickle: read ``pytorch_model.bin`` (with torch's weights-only mode)
        when there are no safetensors. Off by default: never unpickle silently.
      classifier_pooling: ``"cls"`` or ``"mean"`` (see :class:`BertConfig`); ``None``
        keeps the checkpoint's ``classifier_pooling`` (``"cls"`` when it has none).
      replace_head: initialise a new classifier with ``seed`` (for ``label_names``, or
        the checkpoint's own labels) instead of loading the checkpoint's.

    Returns:
      float32 params in the layout of :class:`jaxprune.models.bert.BertForSequenceClassification`
      and the :class:`BertConfig` (with per-layer sizes if the checkpoint has them).
    """
    folder = resolve_folder(name_or_path)
    trained_labels = checkpoint_labels(folder)
    relabelled = label_names is not None and trained_labels is not None and tuple(label_names) != trained_labels
    if relabelled and not replace_head:
        same_set = sorted(label_names) == sorted(trained_labels)
        reordered = " (the same labels in another order: the class ids would be scrambled)" if same_set else ""
        raise JaxpruneError(
            f"{name_or_path} is already a classifier for labels {list(trained_labels)}{reordered}; pass "
            f"`replace_head=True` to train a new head for {list(label_names)}, or use its labels"
        )
    num_labels = len(label_names) if label_names is not None else None
    config = BertConfig.load(folder, num_labels=num_labels)
    if label_names is not None:
        config = config.with_labels(label_names)
    if classifier_pooling is not None:
        config = config.replace(classifier_pooling=classifier_pooling)
    state = read_state_dict(folder, allow_pickle=allow_pickle)

    return _params_from_state(state, config, folder, seed, bool(replace_head and trained_labels),
                              replace_head), config


def _params_from_state(state: dict[str, np.ndarray], config: BertConfig, folder: str, seed: int,
                       replaced_trained_head: bool, replace_head: bool) -> Params:
    """The params of ``config`` read from a checkpoint's ``state``; a missing (or replaced) pooler or
    classifier is freshly initialised with ``seed``, missing encoder weights raise."""
    shapes = param_shapes(config)
    flat_shapes = {_path_str(p): s for p, s in jax.tree_util.tree_flatten_with_path(shapes)[0]}
    loaded: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for path, shape in flat_shapes.items():
        name = hf_name(path)
        if name not in state or replace_head and path.startswith("classifier/"):
            missing.append(path)
            continue
        value = _to_hf(path, state[name])  # the transpose is its own inverse
        if value.shape != shape.shape:
            if path.startswith("classifier/"):
                missing.append(path)  # a head for another label set: replace it
                continue
            raise JaxpruneError(
                f"{name} in {folder} has shape {value.shape} but config.json implies {shape.shape}; "
                f"the weights do not match the config"
            )
        loaded[path] = value

    body_missing = [p for p in missing if not p.startswith(_HEAD_PREFIXES)]
    if body_missing:
        raise JaxpruneError(
            f"{folder} lacks {len(body_missing)} encoder weights (first: {hf_name(body_missing[0])}); "
            f"it is not a complete BERT checkpoint"
        )
    if missing:
        parts = " and ".join(part for prefix, part in (("pooler/", "pooler"), ("classifier/", "classifier head"))
                             if any(p.startswith(prefix) for p in missing))
        why = ("replacing the checkpoint's, as asked (replace_head=True)" if replaced_trained_head
               else "expected when fine-tuning a model without one")
        log.info("new %s for %d labels (seed %d): %s", parts, config.num_labels, seed, why)
        fresh = init_params(config, jax.random.key(seed))
        flat_fresh = {_path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(fresh)[0]}
        for path in missing:
            loaded[path] = np.asarray(flat_fresh[path])

    leaves = [jax.numpy.asarray(loaded[_path_str(p)]) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), leaves)


def save_pretrained(params: Params, config: BertConfig, folder: str | os.PathLike, tokenizer: Any = None) -> None:
    """Save as Hugging Face BERT: ``config.json`` + ``model.safetensors`` (+ tokenizer files).

    A uniform (uncompacted) model saved this way loads in
    ``transformers.BertForSequenceClassification.from_pretrained(folder)``; a
    compacted one keeps its per-layer sizes in ``config.json`` and loads back
    with :func:`from_pretrained`.
    """
    from safetensors.numpy import save_file

    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise JaxpruneError(f"cannot create {folder} ({err.strerror}); choose a writable folder") from None
    save_file(to_hf_state_dict(params), os.path.join(folder, WEIGHTS_NAME), metadata={"format": "pt"})
    config.save(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """The checkpoint's own fast tokenizer, through ``transformers.AutoTokenizer``."""
    from transformers import AutoTokenizer

    folder = resolve_folder(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(folder, use_fast=True)
    except (OSError, ValueError) as err:
        raise JaxpruneError(f"{folder} has no usable tokenizer ({type(err).__name__}); "
                            f"copy the checkpoint's tokenizer files into it") from None


def checkpoint_labels(name_or_path: str | os.PathLike) -> tuple[str, ...] | None:
    """The label names of a checkpoint that already has a classifier head, else ``None``.

    A checkpoint with ``classifier.weight`` and an ``id2label`` of real names
    (not ``LABEL_0``...) is a ready classifier, e.g. ``marathi-topic-all-doc-v2``.
    """
    folder = resolve_folder(name_or_path)
    config = BertConfig.load(folder)
    if all(re.fullmatch(r"LABEL_\d+", name) for name in config.label_names):
        return None
    files = _safetensors_files(folder)
    if files:
        from safetensors import safe_open

        keys = set()
        for file in files:
            with safe_open(file, framework="flax") as f:
                keys.update(_canonical(k) for k in f.keys())
        has_head = "classifier.weight" in keys
    else:
        has_head = os.path.isfile(os.path.join(folder, PICKLE_WEIGHTS_NAME))
    return config.label_names if has_head else None
