"""The Flax BERT against transformers' PyTorch BertForSequenceClassification."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.models.bert import (
    BertForSequenceClassification,
    count_params,
    default_microbatch_size,
    inference_logits,
    init_params,
    param_shapes,
)
from jaxprune.models.config import BertConfig, mahabert_config
from jaxprune.errors import JaxpruneError
from jaxprune.models.loading import from_pretrained, load_tokenizer, save_pretrained

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LABELS = tuple(f"topic_{i}" for i in range(12))


def jax_logits(params, config, batch, dtype=jnp.float32):
    model = BertForSequenceClassification(config, dtype=dtype)
    forward = jax.jit(lambda params, ids, mask, types: model.apply({"params": params}, ids, mask, types))
    return np.asarray(forward(params, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]))


def torch_logits(model, batch):
    with torch.no_grad():
        return model(**{k: torch.tensor(v) for k, v in batch.items()}).logits.numpy()


def copy_head_to_torch(params, torch_model):
    """Give the PyTorch model the same (freshly initialised) pooler and classifier."""
    with torch.no_grad():
        for module, name in ((torch_model.bert.pooler.dense, "pooler"), (torch_model.classifier, "classifier")):
            module.weight.copy_(torch.tensor(np.asarray(params[name]["kernel"]).T))
            module.bias.copy_(torch.tensor(np.asarray(params[name]["bias"])))


@pytest.fixture(scope="module")
def minilm(minilm_folder):
    params, config = from_pretrained(minilm_folder, label_names=LABELS, seed=3)
    # Non-trivial head values so a transposition or bias mix-up shows in the logits.
    key_w, key_b = jax.random.split(jax.random.key(7))
    params["classifier"]["kernel"] = jax.random.normal(key_w, params["classifier"]["kernel"].shape)
    params["classifier"]["bias"] = jax.random.normal(key_b, params["classifier"]["bias"].shape)
    return params, config


@pytest.fixture(scope="module")
def marathi_batch(minilm_folder, marathi_headlines):
    tokenizer = load_tokenizer(minilm_folder)
    batch = tokenizer(marathi_headlines, padding=True, truncation=True, max_length=128, return_tensors="np")
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # the batch really mixes lengths (padding exercised)
    return dict(batch)


@pytest.mark.slow  # the pretrained MiniLM, not a tiny model
def test_minilm_parity_on_marathi_headlines(minilm, minilm_folder, marathi_batch):
    params, config = minilm
    assert config.num_hidden_layers == 6 and config.hidden_size == 384 and config.num_labels == 12
    reference = transformers.BertForSequenceClassification.from_pretrained(minilm_folder, num_labels=12).eval()
    copy_head_to_torch(params, reference)
    ours = jax_logits(params, config, marathi_batch)
    theirs = torch_logits(reference, marathi_batch)
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.slow  # bfloat16 is also checked by test_pipeline's bf16 step and test_dtypes
def test_bfloat16_compute_close_to_float32(minilm, marathi_batch):
    params, config = minilm
    full = jax_logits(params, config, marathi_batch)
    half = jax_logits(params, config, marathi_batch, dtype=jnp.bfloat16)
    assert half.dtype == np.float32
    # Stated tolerance: 3% of the logit scale (measured ~1% on CPU); and the same predictions
    # except where fp32 itself is nearly tied.
    scale = np.abs(full).max()
    assert np.abs(half - full).max() <= 0.03 * scale
    top2 = np.sort(full, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.05 * scale
    assert (half.argmax(1) == full.argmax(1))[clear].all()


TINY = dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, max_position_embeddings=64, type_vocab_size=2)


def random_batch(rng, batch=5, length=11, vocab=99):
    ids = rng.integers(1, vocab, size=(batch, length))
    lengths = rng.integers(2, length + 1, size=batch)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask,
            "token_type_ids": rng.integers(0, 2, size=(batch, length)) * mask}


@pytest.mark.slow  # fast-lane budget: the tiny-model parity with transformers stays there
def test_transformers_saves_jaxprune_loads(tmp_path):
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(**TINY, num_labels=3, hidden_act="gelu")
    reference = transformers.BertForSequenceClassification(hf_config).eval()
    with torch.no_grad():  # random LayerNorm and biases, so every parameter matters
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference.save_pretrained(tmp_path)
    params, config = from_pretrained(tmp_path)
    batch = random_batch(np.random.default_rng(0))
    assert np.abs(jax_logits(params, config, batch) - torch_logits(reference, batch)).max() <= 1e-4


@pytest.mark.slow  # PyTorch loads our files; the other direction stays in the fast lane
def test_jaxprune_saves_transformers_loads(tmp_path):
    config = BertConfig(**TINY, label_names=("neg", "neu", "pos"))
    params = init_params(config, jax.random.key(0))
    keys = iter(jax.random.split(jax.random.key(1), 1000))
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(next(keys), p.shape), params)
    save_pretrained(params, config, tmp_path)
    reference = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reference.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    batch = random_batch(np.random.default_rng(1))
    assert np.abs(jax_logits(params, config, batch) - torch_logits(reference, batch)).max() <= 1e-4
    reloaded, config2 = from_pretrained(tmp_path)
    assert config2 == config
    assert np.array_equal(jax_logits(reloaded, config2, batch), jax_logits(params, config, batch))


def test_mahabert_shape_counts_238m_params():
    shapes = param_shapes(mahabert_config(num_labels=12))
    total = count_params(shapes)
    assert round(total / 1e6, 1) == 237.6
    assert shapes["embeddings"]["word_embeddings"]["embedding"].shape == (197285, 768)
    assert shapes["classifier"]["kernel"].shape == (768, 12)


def test_per_layer_heads_and_widths_including_empty_layers():
    config = BertConfig(**TINY, heads_per_layer=(0, 3), intermediate_sizes=(40, 0))
    params = init_params(config, jax.random.key(0))
    layer0, layer1 = params["encoder"]["layer_0"], params["encoder"]["layer_1"]
    assert layer0["attention"]["query"]["kernel"].shape == (64, 0)
    assert layer1["attention"]["output"]["kernel"].shape == (3 * 16, 64)
    assert layer0["intermediate"]["kernel"].shape == (64, 40)
    assert layer1["output"]["kernel"].shape == (0, 64)
    logits = jax_logits(params, config, random_batch(np.random.default_rng(2)))
    assert logits.shape == (5, 2) and np.isfinite(logits).all()


def test_padding_does_not_change_logits():
    config = BertConfig(**TINY)
    params = init_params(config, jax.random.key(0))
    batch = random_batch(np.random.default_rng(3), batch=1, length=6)
    batch["attention_mask"][:] = 1
    padded = {k: np.concatenate([v, np.zeros((1, 5), v.dtype)], axis=1) for k, v in batch.items()}
    padded["input_ids"][:, 6:] = 7  # garbage under the padding must not matter
    assert np.abs(jax_logits(params, config, batch) - jax_logits(params, config, padded)).max() <= 1e-5


def test_dropout_only_in_training():
    config = BertConfig(**TINY)
    params = init_params(config, jax.random.key(0))
    batch = random_batch(np.random.default_rng(4))
    model = BertForSequenceClassification(config)
    apply = jax.jit(lambda det, key: model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                                                 deterministic=det, rngs={"dropout": key}), static_argnums=0)
    assert np.array_equal(apply(True, jax.random.key(0)), apply(True, jax.random.key(1)))
    assert not np.allclose(apply(False, jax.random.key(0)), apply(False, jax.random.key(1)))


def test_missing_model_folder_and_unreachable_hub(tmp_path, monkeypatch):
    with pytest.raises(JaxpruneError, match="does not exist"):
        from_pretrained(tmp_path / "nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(JaxpruneError, match="local folder"):
        from_pretrained("l3cube-pune/marathi-topic-all-doc-v2")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(JaxpruneError, match="model.safetensors"):
        from_pretrained(tmp_path)


def test_pickle_weights_need_opt_in(tmp_path):
    torch.manual_seed(0)
    reference = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY, num_labels=2)).eval()
    reference.config.save_pretrained(tmp_path)
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(JaxpruneError, match="allow_pickle"):
        from_pretrained(tmp_path)
    params, config = from_pretrained(tmp_path, allow_pickle=True)
    batch = random_batch(np.random.default_rng(5))
    assert np.abs(jax_logits(params, config, batch) - torch_logits(reference, batch)).max() <= 1e-4


@pytest.mark.slow  # fast-lane budget: the micro-batch size checks stay there
def test_inference_logits_in_microbatches_equal_one_apply():
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, label_names=("a", "b", "c"))
    params = init_params(config, jax.random.key(1))
    rng = np.random.default_rng(1)
    ids = jnp.asarray(rng.integers(1, 60, size=(5, 12)), jnp.int32)
    mask = jnp.ones_like(ids).at[2, 7:].set(0)
    types = jnp.zeros_like(ids).at[:, 6:].set(1)
    model = BertForSequenceClassification(config)
    whole = jax.jit(lambda p: model.apply({"params": p}, ids, mask, types))(params)
    for microbatch_size in (None, 1, 2, 8):  # 5 rows: the default, one each, uneven (2 + 2 + 1), more than 5
        got = jax.jit(lambda p: inference_logits(model, p, ids, mask, types, microbatch_size=microbatch_size))(params)
        assert got.shape == (5, 3)
        np.testing.assert_allclose(np.asarray(got), np.asarray(whole), atol=1e-5, err_msg=f"{microbatch_size=}")


def test_default_microbatch_size_and_bad_size():
    assert default_microbatch_size(128) == 8 and default_microbatch_size(512) == 2
    assert default_microbatch_size(2048) == 1
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    ids = jnp.ones((2, 4), jnp.int32)
    for bad in (0, -1):
        with pytest.raises(JaxpruneError, match="positive"):
            inference_logits(BertForSequenceClassification(config), init_params(config, jax.random.key(0)), ids,
                             microbatch_size=bad)
