"""The Cython kernels compute float32 exp by a formula of their own that vectorises
(scalar.pxd's _expf): their sigmoid stays within 2.5 ulp of the exact value over the whole
range, their softmax within rounding, and every backend keeps NaN and the infinities'
limits."""
import numpy as np
import pytest

import fastnn

BACKENDS = fastnn.available_backends()


@pytest.mark.skipif("cython" not in BACKENDS, reason="the Cython kernels are not built")
def test_cython_float32_sigmoid_is_within_two_and_a_half_ulp_everywhere():
    x = np.linspace(-100, 100, 400001, dtype=np.float32).reshape(1, -1)
    out = np.empty_like(x)
    fastnn.kernels.get_backend("cython").activation_forward(x, out, "sigmoid", 0.0)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    normal = exact > np.finfo(np.float32).tiny
    ulp = np.abs(out - exact)[normal] / np.spacing(exact.astype(np.float32)[normal])
    assert ulp.max() <= 2.5
    assert (out[~normal] <= np.finfo(np.float32).tiny).all() and (out >= 0).all() and (out <= 1).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_sigmoid_keeps_nan_and_the_limits(backend):
    x = np.array([[np.nan, -np.inf, np.inf, -200, 200, 0]], np.float32)
    out = np.empty_like(x)
    fastnn.kernels.get_backend(backend).activation_forward(x, out, "sigmoid", 0.0)
    assert np.isnan(out[0, 0]) and out[0, 1:].tolist() == [0, 1, 0, 1, 0.5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_softmax_of_wide_rows_is_within_rounding(backend):
    z = np.random.default_rng(0).uniform(-90, 10, (256, 10)).astype(np.float32)
    out = np.empty_like(z)
    fastnn.kernels.get_backend(backend).softmax(z, out)
    exact = np.exp(z.astype(np.float64) - z.max(axis=1, keepdims=True))
    exact /= exact.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, exact, rtol=1e-5, atol=np.finfo(np.float32).tiny)
