"""Compaction: turn a block-pruned BERT into a smaller dense BERT with the same outputs.

Pruning leaves exact zeros in the params. This module reads only the weights
(never the masks or the scores) and removes the attention heads and FFN neurons
that cannot change the model's output, then writes a config with per-layer
``heads_per_layer`` and ``intermediate_sizes``.

Which units are removable is :func:`jaxprune.models.bert_rules.removable_heads`
and :func:`~jaxprune.models.bert_rules.removable_neurons` (the same test
``surviving_units`` and the sparsity reports use); a unit goes in one of two ways:

* **Dead output.** FFN neuron ``j`` whose row ``j`` of ``output/kernel`` is all
  zero, or head ``h`` whose rows of ``attention/output/kernel`` are all zero,
  adds nothing to the residual stream.
* **Constant output (folded).** FFN neuron ``j`` whose column ``j`` of
  ``intermediate/kernel`` is all zero always outputs ``act(b1[j])``, so its
  contribution ``act(b1[j]) * W2[j, :]`` moves into ``output/bias``. Head ``h``
  whose value-kernel columns are all zero has context ``bv_h`` for every query
  (each softmax row sums to one, padding mask or not), so ``bv_h @ Wo[h rows]``
  moves into ``attention/output/bias``.

A head whose query or key columns alone are zero is *not* removable (its
attention becomes uniform, not zero) and is kept. Partially pruned matrices are
kept dense, zeros included. The surgery runs once, on the host, in NumPy with
the folds summed in float64; the result is a tree of ``jax.Array`` leaves of
the input's dtypes.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.models.activations import host_activation
from jaxprune.models.bert import count_params
from jaxprune.models.bert_rules import layer_kernels, removable_heads, removable_neurons
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError

Params = Mapping[str, Any]

@dataclasses.dataclass(frozen=True)
class CompactionReport:
    """What compaction removed.

    Attributes:
      params_before / params_after: parameter count of the whole model.
      encoder_params_before / encoder_params_after: parameters under ``encoder``.
      heads_before / heads_kept: attention heads per layer before and after.
      neurons_before / neurons_kept: FFN widths per layer before and after.
      heads_folded / neurons_folded: per layer, how many removed units had a
        constant output that was folded into a bias (the rest had a zero output).
    """

    params_before: int
    params_after: int
    encoder_params_before: int
    encoder_params_after: int
    heads_before: tuple[int, ...]
    heads_kept: tuple[int, ...]
    neurons_before: tuple[int, ...]
    neurons_kept: tuple[int, ...]
    heads_folded: tuple[int, ...]
    neurons_folded: tuple[int, ...]

    @property
    def encoder_fraction_kept(self) -> float:
        """Encoder parameters after over before (1.0 when nothing was removed)."""
        return self.encoder_params_after / max(self.encoder_params_before, 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        out = dataclasses.asdict(self)
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
        out["encoder_fraction_kept"] = self.encoder_fraction_kept
        return out

    def summary(self) -> str:
        """A few human-readable lines, one per layer."""
        lines = [
            f"params {self.params_before:,} -> {self.params_after:,}; encoder "
            f"{self.encoder_params_before:,} -> {self.encoder_params_after:,} "
            f"({100 * self.encoder_fraction_kept:.1f}% kept)"
        ]
        for i, (hb, hk, nb, nk) in enumerate(
            zip(self.heads_before, self.heads_kept, self.neurons_before, self.neurons_kept)
        ):
            lines.append(
                f"layer {i}: heads {hk}/{hb} (folded {self.heads_folded[i]}), "
                f"neurons {nk}/{nb} (folded {self.neurons_folded[i]})"
            )
        return "\n".join(lines)


def _to_numpy_dict(tree: Any) -> Any:
    """Nested plain dicts of NumPy arrays (accepts dicts and FrozenDicts of any arrays)."""
    if isinstance(tree, Mapping):
        return {key: _to_numpy_dict(value) for key, value in tree.items()}
    return np.asarray(tree)


def _compact_attention(attention: dict, head_dim: int) -> tuple[dict, int, int]:
    """Drop removable heads from one layer's ``attention`` subtree.

    Returns the new subtree, the number of heads kept and the number folded.
    """
    out_kernel = attention["output"]["kernel"]  # (n*d, H)
    value_kernel = attention["value"]["kernel"]  # (H, n*d)
    value_bias = attention["value"]["bias"]  # (n*d,)
    dead, constant = removable_heads(value_kernel, out_kernel, head_dim)
    keep = ~(dead | constant)

    out_bias = attention["output"]["bias"].astype(np.float64)
    for h in np.flatnonzero(constant):
        rows = slice(h * head_dim, (h + 1) * head_dim)
        out_bias = out_bias + value_bias[rows].astype(np.float64) @ out_kernel[rows].astype(np.float64)

    kept_columns = np.concatenate(
        [np.arange(h * head_dim, (h + 1) * head_dim) for h in np.flatnonzero(keep)]
        + [np.zeros((0,), dtype=np.int64)]
    )
    new = {key: value for key, value in attention.items()}
    for name in ("query", "key", "value"):
        new[name] = {
            **attention[name],
            "kernel": attention[name]["kernel"][:, kept_columns],
            "bias": attention[name]["bias"][kept_columns],
        }
    new["output"] = {
        **attention["output"],
        "kernel": out_kernel[kept_columns, :],
        "bias": out_bias.astype(attention["output"]["bias"].dtype),
    }
    return new, int(keep.sum()), int(constant.sum())


def _compact_ffn(layer: dict, hidden_act: str) -> tuple[dict, int, int]:
    """Drop removable FFN neurons from one layer (``intermediate`` and ``output``).

    Returns the new layer dict, the number of neurons kept and the number folded.
    """
    in_kernel = layer["intermediate"]["kernel"]  # (H, F)
    in_bias = layer["intermediate"]["bias"]  # (F,)
    out_kernel = layer["output"]["kernel"]  # (F, H)
    dead, constant = removable_neurons(in_kernel, out_kernel)
    keep = ~(dead | constant)

    out_bias = layer["output"]["bias"].astype(np.float64)
    if constant.any():
        constant_outputs = host_activation(hidden_act, in_bias[constant])  # (c,) float64
        out_bias = out_bias + constant_outputs @ out_kernel[constant].astype(np.float64)

    new = dict(layer)
    new["intermediate"] = {
        **layer["intermediate"],
        "kernel": in_kernel[:, keep],
        "bias": in_bias[keep],
    }
    new["output"] = {
        **layer["output"],
        "kernel": out_kernel[keep, :],
        "bias": out_bias.astype(layer["output"]["bias"].dtype),
    }
    return new, int(keep.sum()), int(constant.sum())


def compact(params: Params, config: BertConfig) -> tuple[dict, BertConfig, CompactionReport]:
    """Remove the heads and FFN neurons of a pruned BERT that cannot affect its output.

    Args:
      params: the ``BertForSequenceClassification`` params (the dict under
        ``'params'``; see the layout in ``jaxprune.models.bert``), with pruned weights
        set to exact zeros. Any array type; not modified.
      config: the config the params were built with (uniform or already per-layer).

    Returns:
      ``(new_params, new_config, report)``. ``new_params`` is a nested ``dict``
      of ``jax.Array`` with the input's dtypes; query/key/value kernels of layer
      ``i`` are ``(H, n_i * head_dim)``, ``intermediate/kernel`` is ``(H, F_i)``,
      where ``n_i`` and ``F_i`` (possibly 0) are
      ``new_config.heads_per_layer[i]`` and ``new_config.intermediate_sizes[i]``.
      For ``deterministic=True`` the new model's logits equal the pruned model's
      up to float rounding.
    """
    tree = _to_numpy_dict(params)
    if "encoder" not in tree:
        raise JaxpruneError(
            "params have no 'encoder'; pass the BertForSequenceClassification params "
            "(the dict under 'params', not the whole variables dict)"
        )
    host_activation(config.hidden_act, np.zeros((0,)))  # fail early on an unsupported activation
    heads_kept, heads_folded, neurons_kept, neurons_folded = [], [], [], []
    encoder = dict(tree["encoder"])
    for i in range(config.num_hidden_layers):
        key = f"layer_{i}"
        if key not in encoder:
            raise JaxpruneError(
                f"params have no encoder/{key} but the config has {config.num_hidden_layers} "
                "layers; pass the config the params were built with"
            )
        layer = dict(encoder[key])
        # Shapes are checked against the config before anything is sliced.
        layer_kernels(config, i, lambda path: functools.reduce(operator.getitem, path, layer))
        layer["attention"], kept, folded = _compact_attention(layer["attention"], config.head_dim)
        heads_kept.append(kept)
        heads_folded.append(folded)
        layer, kept, folded = _compact_ffn(layer, config.hidden_act)
        neurons_kept.append(kept)
        neurons_folded.append(folded)
        encoder[key] = layer
    tree = {**tree, "encoder": encoder}

    new_config = config.replace(
        heads_per_layer=tuple(heads_kept), intermediate_sizes=tuple(neurons_kept)
    )
    new_params = jax.tree.map(jnp.asarray, tree)
    report = CompactionReport(
        params_before=count_params(params),
        params_after=count_params(new_params),
        encoder_params_before=count_params(params["encoder"]),
        encoder_params_after=count_params(new_params["encoder"]),
        heads_before=tuple(config.layer_heads(i) for i in range(config.num_hidden_layers)),
        heads_kept=tuple(heads_kept),
        neurons_before=tuple(config.layer_intermediate(i) for i in range(config.num_hidden_layers)),
        neurons_kept=tuple(neurons_kept),
        heads_folded=tuple(heads_folded),
        neurons_folded=tuple(neurons_folded),
    )
    return new_params, new_config, report
