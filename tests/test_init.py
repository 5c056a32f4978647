"""Initializers: by name or callable, seeded, with the documented scales."""
import numpy as np
import pytest

import fastnn
from fastnn.init import INITIALIZERS, get_initializer

SHAPE = (400, 300)


@pytest.mark.parametrize("name,std", [
    ("he_uniform", np.sqrt(2 / 400)),
    ("he_normal", np.sqrt(2 / 400)),
    ("xavier_uniform", np.sqrt(2 / 700)),
    ("xavier_normal", np.sqrt(2 / 700)),
    ("lecun_normal", np.sqrt(1 / 400)),
    ("zeros", 0.0),
])
def test_scales(name, std):
    weights = get_initializer(name)(SHAPE, np.random.default_rng(0))
    assert weights.shape == SHAPE
    assert weights.std() == pytest.approx(std, rel=0.02, abs=1e-12)
    assert abs(weights.mean()) < 0.01


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_dense_init_by_name_is_seeded(name):
    a = fastnn.Dense(5, 4, init=name, seed=3)
    b = fastnn.Dense(5, 4, init=name, seed=3)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.b, 0)


def test_callable_init():
    layer = fastnn.Dense(2, 3, init=lambda shape, rng: np.full(shape, 0.5))
    np.testing.assert_array_equal(layer.W, 0.5)
    with pytest.raises(ValueError, match=r"init returned shape \(3, 2\); expected \(2, 3\)"):
        fastnn.Dense(2, 3, init=lambda shape, rng: np.zeros(shape[::-1]))


def test_unknown_init_and_bad_seed():
    with pytest.raises(ValueError, match="init must be one of"):
        fastnn.Dense(2, 3, init="orthogonal")
    with pytest.raises(TypeError, match="seed must be an int, None or a numpy.random.Generator"):
        fastnn.Dense(2, 3, seed="x")
