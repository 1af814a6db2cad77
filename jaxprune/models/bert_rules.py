"""Pruning presets for the jaxprune BERT, and which of its heads and neurons survive.

This is the only place where :mod:`jaxprune.mask` meets BERT parameter paths
(layout in :mod:`jaxprune.models.bert`). Only the encoder is pruned: embeddings,
pooler and classifier never match a rule.

Which units are removable is decided here, once: :func:`removable_heads` and
:func:`removable_neurons` (built on :func:`jaxprune.mask.units.zero_units`) are
what :func:`surviving_units`, :func:`bert_sparsity_report` and
:func:`jaxprune.models.compaction.compact` all call.

* head ``h``: its rows of ``attention/output/kernel`` are all zero (dead
  output), or its value-kernel columns are all zero (constant output, folded
  into the output bias);
* neuron ``j``: row ``j`` of ``output/kernel`` is all zero (dead), or column
  ``j`` of ``intermediate/kernel`` is all zero (constant, folded).

A unit that :func:`jaxprune.mask.units.removed_units` finds (every slice zero,
what ``mask.sparsity_report`` lists under ``"groups"``) is always removable here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import numpy as np

from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError
from jaxprune.mask import BlockRule, GroupMember, GroupRule, MaskLayout, Rule, expand_masks, sparsity_report
from jaxprune.mask.rules import leaf_paths
from jaxprune.mask.units import zero_units

_LAYER = r"(?:^|/)encoder/layer_(\d+)/"


def head_param_count(config: BertConfig) -> int:
    """Scalars one attention head owns: Q/K/V columns and biases, output rows."""
    hidden, d = config.hidden_size, config.head_dim
    return 3 * (hidden * d + d) + d * hidden


def neuron_param_count(config: BertConfig) -> int:
    """Scalars one FFN neuron owns: an intermediate column and bias entry, an output row."""
    return 2 * config.hidden_size + 1


def bert_rules(
    config: BertConfig,
    attention: Literal["heads", "blocks"] | None = "heads",
    block_shape: tuple[int, int] = (32, 32),
    ffn: Literal["neurons", "blocks"] | None = "neurons",
) -> list[Rule]:
    """Rules for the encoder of ``BertForSequenceClassification``.

    Args:
      config: the model's config (uniform or per-layer after compaction).
      attention: ``"heads"`` (one score per head, tying its Q/K/V columns,
        biases and output rows; scores stored at ``.../attention/query/kernel``,
        shape ``(n_i,)``), ``"blocks"`` (``block_shape`` blocks of the four
        attention kernels; biases are not pruned) or ``None``.
      block_shape: block shape for ``"blocks"``; must divide the kernels.
      ffn: ``"neurons"`` (one score per neuron, tying its intermediate column
        and bias entry and its output row; scores at
        ``.../intermediate/kernel``, shape ``(F_i,)``), ``"blocks"`` (blocks of
        the two FFN kernels) or ``None``.

    Returns:
      The rules. Each weight is ``1 / parameters per unit`` (per head, per
      neuron, per block), so global top-k ranks units by score per weight and
      heads, neurons and blocks compete fairly for a budget counted in weights.
    """
    if attention not in ("heads", "blocks", None) or ffn not in ("neurons", "blocks", None):
        raise JaxpruneError(
            f"bert_rules: `attention` is {attention!r} and `ffn` is {ffn!r}; pass `attention` as "
            "'heads', 'blocks' or None and `ffn` as 'neurons', 'blocks' or None"
        )
    if attention is None and ffn is None:
        raise JaxpruneError("bert_rules: `attention` and `ffn` are both None, so nothing would be pruned")
    block_weight = 1.0 / (block_shape[0] * block_shape[1])
    rules: list[Rule] = []
    d = config.head_dim
    if attention == "heads":
        members = []
        for name in ("query", "key", "value"):
            members.append(GroupMember(_LAYER + rf"attention/{name}/kernel$", axis=1, width=d))
            members.append(GroupMember(_LAYER + rf"attention/{name}/bias$", axis=0, width=d))
        members.append(GroupMember(_LAYER + r"attention/output/kernel$", axis=0, width=d))
        rules.append(GroupRule(tuple(members), weight=1.0 / head_param_count(config), name="heads"))
    elif attention == "blocks":
        rules.append(
            BlockRule(_LAYER + r"attention/(?:query|key|value|output)/kernel$", block_shape, block_weight)
        )
    if ffn == "neurons":
        members = (
            GroupMember(_LAYER + r"intermediate/kernel$", axis=1),
            GroupMember(_LAYER + r"intermediate/bias$", axis=0),
            GroupMember(_LAYER + r"output/kernel$", axis=0),
        )
        rules.append(GroupRule(members, weight=1.0 / neuron_param_count(config), name="neurons"))
    elif ffn == "blocks":
        rules.append(BlockRule(_LAYER + r"(?:intermediate|output)/kernel$", block_shape, block_weight))
    return rules


def layer_kernels(
    config: BertConfig, index: int, get: Callable[[tuple[str, ...]], Any]
) -> dict[tuple[str, ...], np.ndarray]:
    """The six kernels of encoder layer ``index``, checked against ``config``.

    Args:
      config: the config the params were built with.
      index: the layer.
      get: path under ``encoder/layer_{index}`` (e.g. ``("intermediate", "kernel")``)
        -> that leaf; raises ``KeyError`` when it is missing.

    Returns:
      ``{path: array}`` for the query, key, value and output kernels of
      attention, ``(H, n * head_dim)`` / ``(n * head_dim, H)``, and the
      intermediate and output kernels, ``(H, F)`` / ``(F, H)``.

    Raises:
      JaxpruneError: a kernel is missing or its shape disagrees with ``config``.
    """
    hidden, width = config.hidden_size, config.layer_heads(index) * config.head_dim
    expected = {
        ("attention", "query", "kernel"): (hidden, width),
        ("attention", "key", "kernel"): (hidden, width),
        ("attention", "value", "kernel"): (hidden, width),
        ("attention", "output", "kernel"): (width, hidden),
        ("intermediate", "kernel"): (hidden, config.layer_intermediate(index)),
        ("output", "kernel"): (config.layer_intermediate(index), hidden),
    }
    kernels = {}
    for path, shape in expected.items():
        try:
            kernels[path] = np.asarray(get(path))
        except KeyError:
            raise JaxpruneError(
                f"params have no encoder/layer_{index}/{'/'.join(path)}; pass the "
                "BertForSequenceClassification params (the dict under 'params')"
            ) from None
        if kernels[path].shape != shape:
            raise JaxpruneError(
                f"encoder/layer_{index}/{'/'.join(path)} has shape {kernels[path].shape} but the config "
                f"says {shape}; pass the config the params were built with"
            )
    return kernels


def removable_heads(value_kernel: Any, output_kernel: Any, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The heads of one layer that compaction removes, and how.

    Args:
      value_kernel: ``attention/value/kernel``, ``(H, n * head_dim)``.
      output_kernel: ``attention/output/kernel``, ``(n * head_dim, H)``.
      head_dim: columns (rows) of those kernels that one head owns.

    Returns:
      ``(dead, constant)``, each ``(n,)`` bool and never both True: ``dead``
      where the head's output rows are all zero; ``constant`` where, otherwise,
      its value columns are all zero (its context is the value bias for every
      query, since each softmax row sums to one). Zero query or key columns
      alone do not remove a head: its attention becomes uniform, not zero.
    """
    dead = zero_units(output_kernel, axis=0, width=head_dim)
    constant = zero_units(value_kernel, axis=1, width=head_dim) & ~dead
    return dead, constant


def removable_neurons(intermediate_kernel: Any, output_kernel: Any) -> tuple[np.ndarray, np.ndarray]:
    """The FFN neurons of one layer that compaction removes, and how.

    Args:
      intermediate_kernel: ``intermediate/kernel``, ``(H, F)``.
      output_kernel: ``output/kernel``, ``(F, H)``.

    Returns:
      ``(dead, constant)``, each ``(F,)`` bool and never both True: ``dead``
      where the neuron's output row is all zero; ``constant`` where, otherwise,
      its input column is all zero (it always outputs ``act(bias)``).
    """
    dead = zero_units(output_kernel, axis=0)
    constant = zero_units(intermediate_kernel, axis=1) & ~dead
    return dead, constant


@dataclasses.dataclass(frozen=True)
class LayerUnits:
    """Surviving heads and FFN neurons of one layer (indices into the layer as it is)."""

    layer: int
    num_heads: int
    num_neurons: int
    heads: tuple[int, ...]
    neurons: tuple[int, ...]


def _encoder(params: Any) -> dict[tuple[str, ...], np.ndarray]:
    """``(layer, *rest) -> array`` for the encoder leaves, from any params pytree."""
    out = {}
    for path, leaf in leaf_paths(params):
        if "encoder" in path:
            rest = path[path.index("encoder") + 1 :]
            out[rest] = leaf
    if not out:
        raise JaxpruneError("params have no 'encoder'; pass BertForSequenceClassification params")
    return out


def surviving_units(config: BertConfig, params: Any) -> list[LayerUnits]:
    """Per layer, the heads and neurons that compaction would keep, read from (masked) params.

    Args:
      config: the config the params were built with.
      params: ``BertForSequenceClassification`` params, masked (pruned weights
        exactly zero); the ``{'params': ...}`` wrapper is accepted too.
    """
    leaves = _encoder(params)
    out = []
    for i in range(config.num_hidden_layers):
        kernels = layer_kernels(config, i, lambda path: leaves[(f"layer_{i}",) + path])
        dead_heads, constant_heads = removable_heads(
            kernels["attention", "value", "kernel"], kernels["attention", "output", "kernel"], config.head_dim
        )
        dead_neurons, constant_neurons = removable_neurons(
            kernels["intermediate", "kernel"], kernels["output", "kernel"]
        )
        out.append(
            LayerUnits(
                layer=i,
                num_heads=config.layer_heads(i),
                num_neurons=config.layer_intermediate(i),
                heads=tuple(int(h) for h in np.flatnonzero(~(dead_heads | constant_heads))),
                neurons=tuple(int(j) for j in np.flatnonzero(~(dead_neurons | constant_neurons))),
            )
        )
    return out


def surviving_units_from_masks(
    config: BertConfig, masks: Any, layout: MaskLayout, params: Any
) -> list[LayerUnits]:
    """Like :func:`surviving_units`, from block masks instead of masked params.

    ``params`` supplies only shapes (arrays or ``jax.eval_shape`` structs); the
    masks are expanded onto all-ones weights, so a unit survives unless the
    masks alone remove it.
    """
    # NumPy on the host: expand_masks only reshapes and multiplies, and this runs once.
    ones = jax.tree.map(lambda leaf: np.ones(leaf.shape, np.float32), params)
    host_masks = jax.tree.map(lambda m: np.asarray(m, np.float32), masks)
    return surviving_units(config, expand_masks(ones, host_masks, layout))


def bert_sparsity_report(config: BertConfig, params: Any, layout: MaskLayout | None = None) -> dict[str, Any]:
    """JSON-ready report of a masked BERT.

    Keys: ``"layers"`` (per layer: heads and neurons before / kept / removed
    indices), ``"heads_kept"``, ``"neurons_kept"`` (totals),
    ``"params_total"``, ``"params_remaining"`` (non-zero scalars),
    ``"params_after_compaction"`` (what :func:`jaxprune.models.compaction.compact`
    would leave: removed units' parameters subtracted), ``"encoder_zero_fraction"``,
    and ``"leaves"`` / ``"groups"`` from :func:`jaxprune.mask.sparsity_report`.
    """
    units = surviving_units(config, params)
    generic = sparsity_report(params, layout).to_dict()
    encoder = [leaf for leaf in generic["leaves"] if leaf["path"].split("/").count("encoder")]
    encoder_size = sum(leaf["size"] for leaf in encoder)
    removed_heads = sum(u.num_heads - len(u.heads) for u in units)
    removed_neurons = sum(u.num_neurons - len(u.neurons) for u in units)
    layers = [
        {
            "layer": u.layer,
            "heads": u.num_heads,
            "heads_kept": len(u.heads),
            "heads_removed": [h for h in range(u.num_heads) if h not in u.heads],
            "neurons": u.num_neurons,
            "neurons_kept": len(u.neurons),
            "neurons_removed": u.num_neurons - len(u.neurons),
        }
        for u in units
    ]
    return {
        "layers": layers,
        "heads_kept": sum(len(u.heads) for u in units),
        "neurons_kept": sum(len(u.neurons) for u in units),
        "params_total": generic["total_params"],
        "params_remaining": generic["params_remaining"],
        "params_after_compaction": generic["total_params"]
        - removed_heads * head_param_count(config)
        - removed_neurons * neuron_param_count(config),
        "encoder_zero_fraction": sum(leaf["zeros"] for leaf in encoder) / encoder_size if encoder_size else 0.0,
        "leaves": generic["leaves"],
        "groups": generic["groups"],
    }
