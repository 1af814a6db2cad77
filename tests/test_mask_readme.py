"""The mask examples of the docs run: the Linen one under the README's "Block pruning in your own
Flax model" and the NNX one under docs/library.md's "NNX" (tests/test_docs.py checks that every
tagged example is run by the test it names)."""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LINEN = (REPO / "README.md", "## Block pruning in your own Flax model")
NNX = (REPO / "docs" / "library.md", "### NNX")

pytestmark = pytest.mark.slow  # the docs' examples end to end


def example(doc: pathlib.Path, heading: str) -> str:
    """The first tagged example after ``heading`` in ``doc``, as written there."""
    text = doc.read_text(encoding="utf-8")
    assert heading in text.splitlines(), f"{doc.name} lost its {heading!r} section"
    section = text.split(f"\n{heading}\n", 1)[1]
    return re.search(r"<!-- example: [^>]*-->\n```python\n(.*?)```", section, re.S).group(1)


def _run(code: str) -> dict:
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(code, "<docs example>", "exec"), namespace)  # noqa: S102
    return namespace


def test_linen_example_runs_and_prunes(capsys):
    namespace = _run(example(*LINEN))
    report, layout = namespace["report"], namespace["pruner"].layout
    pruned_fraction = report.scored_zeros / report.scored_params
    largest_block = max(e.weights_per_block for e in layout.entries)
    assert 0.7 <= pruned_fraction < 0.7 + largest_block / layout.num_weights + 1e-6
    assert "of scored weights pruned" in capsys.readouterr().out
    assert namespace["train_step"]._cache_size() == 1


def test_nnx_example_runs():
    import jax
    import jax.numpy as jnp

    namespace = _run(example(*NNX))
    score_grads = jax.grad(namespace["loss_fn"])(namespace["variables"], 0)[1]
    grads = score_grads["layers"]["0"]["kernel"]
    assert grads.shape == (128,) and float(jnp.abs(grads).sum()) > 0
    kernel = namespace["model"].layers[0].kernel[...]
    assert int((jnp.abs(kernel).sum(axis=0) == 0).sum()) == 64
    assert namespace["train_step"]._cache_size() == 1
