"""The FFN activations a BERT config may name (Hugging Face ``hidden_act``): the one table.

Each name has two implementations of the same function: the JAX one the model
runs (:func:`activation`, any dtype, under jit), and a float64 NumPy one that
compaction uses on the host to fold constant neurons into a bias
(:func:`host_activation`; JAX would compute it in float32 unless x64 is on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from jaxprune.errors import JaxpruneError

_SQRT_HALF = math.sqrt(0.5)
_TANH_GELU_SCALE = math.sqrt(2.0 / math.pi)


def _gelu_erf_host(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x * _SQRT_HALF))


def _gelu_tanh_host(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(_TANH_GELU_SCALE * (x + 0.044715 * x**3)))


def _relu_host(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class Activation(NamedTuple):
    """One activation, twice.

    Attributes:
      model: ``jax.Array -> jax.Array`` of the same shape and dtype.
      host: float64 ``np.ndarray -> np.ndarray`` of the same shape.
    """

    model: Callable[[jax.Array], jax.Array]
    host: Callable[[np.ndarray], np.ndarray]


ACTIVATIONS: dict[str, Activation] = {
    "gelu": Activation(lambda x: jax.nn.gelu(x, approximate=False), _gelu_erf_host),
    "gelu_new": Activation(lambda x: jax.nn.gelu(x, approximate=True), _gelu_tanh_host),
    "gelu_pytorch_tanh": Activation(lambda x: jax.nn.gelu(x, approximate=True), _gelu_tanh_host),
    "relu": Activation(jax.nn.relu, _relu_host),
}


def _lookup(name: str) -> Activation:
    if name not in ACTIVATIONS:
        raise JaxpruneError(
            f"hidden_act {name!r} is not supported; use one of {sorted(ACTIVATIONS)} in the model's config.json"
        )
    return ACTIVATIONS[name]


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The JAX activation for ``hidden_act`` ``name`` (erf GELU for ``"gelu"``, tanh GELU for
    ``"gelu_new"`` / ``"gelu_pytorch_tanh"``, ``"relu"``)."""
    return _lookup(name).model


def host_activation(name: str, x: np.ndarray) -> np.ndarray:
    """The same activation on the host: ``x`` (any shape) as float64 -> float64, same shape."""
    return _lookup(name).host(np.asarray(x, dtype=np.float64))
