"""The PyTorch peer of the inference benchmark: transformers' BERT with jaxprune's weights.

``build_torch_model`` gives ``transformers.BertForSequenceClassification`` the weights
and per-layer widths of jaxprune params (compacted layers get narrower ``nn.Linear``
modules); the tensors come from :func:`jaxprune.models.loading.to_hf_state_dict`, the one
Flax-to-Hugging-Face mapping that ``save_pretrained`` writes too. ``torch_runner`` is a
blocking forward to time, and ``torch_parity`` checks that the peer computes the same
logits as the JAX model before anything is timed. transformers has no mean-pooling
classifier: for a ``classifier_pooling="mean"`` config (e5-small) the peer is its
``BertModel`` without pooler, the masked mean of the last hidden states and a linear head
(``MeanPooledBertClassifier``), the way sentence encoders are fine-tuned in PyTorch.

torch and transformers are imported only here, and only when the peer runs.
"""

from __future__ import annotations

from typing import Any


def import_torch() -> Any:
    """The torch module, or ``None`` when torch or transformers is not installed."""
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        return None
    return torch


def build_torch_model(torch: Any, params: dict, config: Any, dtype: str) -> Any:
    """transformers' BertForSequenceClassification with jaxprune's ``params`` and per-layer widths."""
    import transformers

    from jaxprune.models.loading import to_hf_state_dict

    hf_dict = {k: v for k, v in config.to_dict().items() if k not in ("heads_per_layer", "intermediate_sizes")}
    hf_config = transformers.BertConfig(**hf_dict)
    with torch.device("meta"):
        if config.classifier_pooling == "mean":
            model = _mean_pooled_classifier(torch, transformers, hf_config)
        else:
            model = transformers.BertForSequenceClassification(hf_config)
    hidden = config.hidden_size
    for i, layer in enumerate(model.bert.encoder.layer):
        # transformers reshapes with view(..., -1, head_dim), so narrower projections just work.
        width, neurons = config.layer_heads(i) * config.head_dim, config.layer_intermediate(i)
        with torch.device("meta"):
            for name in ("query", "key", "value"):
                setattr(layer.attention.self, name, torch.nn.Linear(hidden, width))
            layer.attention.output.dense = torch.nn.Linear(width, hidden)
            layer.intermediate.dense = torch.nn.Linear(hidden, neurons)
            layer.output.dense = torch.nn.Linear(neurons, hidden)
    # Fresh float32 host copies (JAX buffers are read-only), cast to ``dtype`` below.
    state = {name: torch.from_numpy(value) for name, value in to_hf_state_dict(params).items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if unexpected or any(not name.endswith("position_ids") for name in missing):
        raise RuntimeError(f"torch peer: missing {missing}, unexpected {unexpected}")
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:  # non-persistent buffers such as position_ids / token_type_ids
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            short = name.rsplit(".", 1)[1]
            owner.register_buffer(short, torch.zeros(buffer.shape, dtype=buffer.dtype)
                                  if "token_type" in short else torch.arange(buffer.shape[-1]).expand(buffer.shape),
                                  persistent=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.eval().to(device=device, dtype=getattr(torch, dtype))


def _mean_pooled_classifier(torch: Any, transformers: Any, hf_config: Any) -> Any:
    """BertModel (no pooler) + masked mean of the last hidden states + linear classifier;
    the state-dict names of BertForSequenceClassification less ``bert.pooler``."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPooledBertClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = transformers.BertModel(hf_config, add_pooling_layer=False)
            self.classifier = torch.nn.Linear(hf_config.hidden_size, hf_config.num_labels)

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).float()
            pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return SequenceClassifierOutput(logits=self.classifier(pooled.to(hidden.dtype)))

    return MeanPooledBertClassifier()


def torch_runner(torch: Any, model: Any, ids: Any, on_gpu: bool) -> Any:
    """A no-argument blocking forward of ``model`` on ``ids`` (B, T), no padding; returns the (B, C) logits."""
    import numpy as np

    device = "cuda" if torch.cuda.is_available() else "cpu"
    input_ids = torch.from_numpy(np.array(ids)).to(device=device, dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)

    def run():
        with torch.inference_mode():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        if device == "cuda":
            torch.cuda.synchronize()
        return logits

    return run


def torch_parity(model: Any, notes: list[str]) -> dict[str, float]:
    """Max |logit difference| JAX vs PyTorch (float32, 2x16 tokens) per variant: the peer is the same model.

    ``model`` is ``inference.Model`` (its ``name``, ``config``, ``variants``, ``torch`` and
    ``torch_model``); the result is also appended to ``notes``."""
    import jax
    import numpy as np

    from jaxprune.models.bert import BertForSequenceClassification

    ids = jax.random.randint(jax.random.key(1), (2, 16), 0, model.config.vocab_size)
    out = {}
    for variant, (params, config, _) in model.variants.items():
        jax_logits = np.asarray(BertForSequenceClassification(config).apply({"params": params}, ids))
        torch_logits = torch_runner(model.torch, model.torch_model(variant, "float32"), ids, False)()
        out[variant] = float(np.max(np.abs(jax_logits - torch_logits.float().cpu().numpy())))
    notes.append(f"{model.name}: max |JAX - PyTorch| fp32 logits per variant {out}")
    return out
