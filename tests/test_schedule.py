"""The cubic keep-fraction schedule: values by hand, monotone, jit without recompiling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.errors import JaxpruneError
from jaxprune.mask import cubic_keep_schedule


def test_values_by_hand():
    # T = 10, warm-ups 2 and 2: the ramp covers steps 2..8 (6 steps).
    schedule = cubic_keep_schedule(10, 0.2, initial_warmup_steps=2, final_warmup_steps=2)
    expected = {
        0: 1.0,
        1: 1.0,
        2: 1.0,
        3: 0.2 + 0.8 * (5 / 6) ** 3,
        5: 0.2 + 0.8 * (1 / 2) ** 3,
        7: 0.2 + 0.8 * (1 / 6) ** 3,
        8: 0.2,
        9: 0.2,
        10: 0.2,
        1000: 0.2,
    }
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, abs=1e-6), step


def test_initial_keep_fraction_and_no_warmups():
    schedule = cubic_keep_schedule(4, 0.0, initial_keep_fraction=0.8)
    got = [float(schedule(t)) for t in range(5)]
    np.testing.assert_allclose(got, [0.8, 0.8 * (3 / 4) ** 3, 0.8 * (1 / 2) ** 3, 0.8 * (1 / 4) ** 3, 0.0], atol=1e-6)


def test_zero_length_ramp_jumps_at_warmup_end():
    schedule = cubic_keep_schedule(6, 0.5, initial_warmup_steps=3, final_warmup_steps=3)
    np.testing.assert_allclose([float(schedule(t)) for t in range(6)], [1, 1, 1, 0.5, 0.5, 0.5])


def test_monotone_and_traced_without_recompiling():
    schedule = cubic_keep_schedule(100, 0.1, initial_warmup_steps=10, final_warmup_steps=20)
    traces = []

    @jax.jit
    def at(step):
        traces.append(1)
        return schedule(step)

    values = np.array([float(at(jnp.int32(t))) for t in range(0, 101, 5)])
    assert len(traces) == 1
    assert at(jnp.int32(0)).dtype == jnp.float32
    assert values[0] == 1.0 and values[-1] == pytest.approx(0.1)
    assert np.all(np.diff(values) <= 0) and np.any(np.diff(values) < 0)
    np.testing.assert_allclose(values, [float(schedule(t)) for t in range(0, 101, 5)], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(total_steps=0, final_keep_fraction=0.5),
        dict(total_steps=10, final_keep_fraction=1.5),
        dict(total_steps=10, final_keep_fraction=0.5, initial_warmup_steps=6, final_warmup_steps=5),
        dict(total_steps=10, final_keep_fraction=0.5, initial_warmup_steps=-1),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(JaxpruneError):
        cubic_keep_schedule(**kwargs)
