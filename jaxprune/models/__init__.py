"""The BERT classifier and everything that reads, writes, prunes the rules of, or compacts it.

:mod:`.config` (``BertConfig``, Hugging Face ``config.json``), :mod:`.bert` (the Flax model), :mod:`.activations` (the one activation table),
:mod:`.loading` (Hugging Face folders and hub ids in and out), :mod:`.sources` (models that
install offline, by name), :mod:`.bert_rules` (what block pruning scores in a BERT),
:mod:`.compaction` (masked model -> smaller dense model).

The model, its config, rules and compaction need only the core (jax, flax, optax, numpy);
:mod:`.loading` and :mod:`.sources` need the ``train`` extra (safetensors, transformers).
"""
