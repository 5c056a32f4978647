"""Sequential and mlp: one flat parameter buffer, forward/backward, predict, summary."""
import numpy as np
import pytest

import fastnn


def test_parameters_are_views_into_one_flat_buffer():
    model = fastnn.mlp([4, 3, 2], seed=0)
    params = model.parameters()
    assert [p.shape for p in params] == [(4, 3), (3,), (3, 2), (2,)]
    assert all(np.shares_memory(p, model.params) for p in params)
    assert model.params.size == model.n_params == 4 * 3 + 3 + 3 * 2 + 2
    model.params[:] = np.arange(model.n_params)
    np.testing.assert_array_equal(params[0].ravel(), np.arange(12))
    dense = model.dense_layers
    assert np.shares_memory(dense[1].dW, model.grads)


def test_sequential_keeps_the_layers_initial_values():
    first, second = fastnn.Dense(3, 4, seed=1), fastnn.Dense(4, 2, seed=2)
    weights = first.W.copy(), second.W.copy()
    model = fastnn.Sequential(first, fastnn.ReLU(), second)
    np.testing.assert_array_equal(first.W, weights[0])
    np.testing.assert_array_equal(second.W, weights[1])
    assert np.shares_memory(first.W, model.params)


def test_sequential_backward_matches_composition(rng):
    model = fastnn.mlp([3, 5, 2], activation="tanh", dtype=np.float64, seed=0)
    x = rng.standard_normal((4, 3))
    out = model.forward(x)
    W1, b1, W2, b2 = model.parameters()
    hidden = np.tanh(x @ W1 + b1)
    np.testing.assert_allclose(out, hidden @ W2 + b2)
    g = rng.standard_normal((4, 2))
    dx = model.backward(g)
    d_hidden = (g @ W2.T) * (1 - hidden ** 2)
    np.testing.assert_allclose(model.grads[:15].reshape(3, 5), x.T @ d_hidden)
    np.testing.assert_allclose(dx, d_hidden @ W1.T)


def test_mismatched_layers_are_rejected():
    with pytest.raises(ValueError, match="out_features 3 != in_features 4"):
        fastnn.Sequential(fastnn.Dense(2, 3), fastnn.Dense(4, 1))
    with pytest.raises(TypeError, match="layer 1 must be a fastnn Module; got str"):
        fastnn.Sequential(fastnn.Dense(2, 3), "relu")
    with pytest.raises(TypeError, match="must share a dtype"):
        fastnn.Sequential(fastnn.Dense(2, 3), fastnn.Dense(3, 1, dtype=np.float64))


def test_mlp_builds_activations_and_dropout():
    model = fastnn.mlp([784, 256, 128, 10], activation="relu", dropout=0.1, seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "ReLU", "Dropout", "Dense", "ReLU", "Dropout", "Dense"]
    assert model.n_params == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    with pytest.raises(ValueError, match="activation must be one of"):
        fastnn.mlp([2, 2], activation="swish")


def test_mlp_is_seeded():
    a, b = fastnn.mlp([5, 4, 3], seed=7), fastnn.mlp([5, 4, 3], seed=7)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, fastnn.mlp([5, 4, 3], seed=8).params)


def test_summary_lists_layers_and_counts(capsys):
    model = fastnn.mlp([784, 256, 10], seed=0)
    text = model.summary()
    assert capsys.readouterr().out.strip() == text
    assert "Dense(784, 256)  (batch, 256)         200,960" in text
    assert "total parameters: 203,530 (float32, one flat buffer)" in text


def test_predict_accepts_float64_fortran_and_strided_input(rng):
    model = fastnn.mlp([3, 4, 2], seed=0)
    X = rng.standard_normal((10, 6))[:, ::2]
    expected = model.outputs(np.ascontiguousarray(X, np.float32))
    np.testing.assert_array_equal(model.outputs(X), expected)
    np.testing.assert_array_equal(model.outputs(np.asfortranarray(X)), expected)
    assert model.outputs(X).dtype == np.float32


def test_predict_proba_and_labels(rng):
    model = fastnn.mlp([3, 4, 5], seed=0)
    X = rng.standard_normal((7, 3))
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))


def test_predict_follows_the_model_loss_whether_or_not_it_was_fit(rng):
    X, y = rng.standard_normal((20, 2)), rng.integers(0, 2, 20)
    for model in (fastnn.mlp([2, 4, 2], seed=0),
                  fastnn.Sequential(fastnn.Dense(2, 4, seed=0), fastnn.ReLU(), fastnn.Dense(4, 2, seed=1))):
        before = model.predict(X)
        assert before.shape == (20,)
        np.testing.assert_array_equal(before, model.outputs(X).argmax(axis=1))
        model.fit(X, y, epochs=1, verbose=0)
        assert model.predict(X).shape == (20,)
    regression = fastnn.mlp([2, 4, 1], loss="mse", seed=0)
    assert regression.loss.name == "mse"
    np.testing.assert_array_equal(regression.predict(X), regression.outputs(X))
    regression.fit(X, X[:, :1], epochs=1, verbose=0)
    assert regression.loss.name == "mse" and regression.predict(X).shape == (20, 1)
    bce = fastnn.Sequential(fastnn.Dense(2, 1, seed=0), loss=fastnn.BCEWithLogits)
    np.testing.assert_array_equal(bce.predict(X), (bce.outputs(X) > 0).astype(np.int64))


def test_pickle_keeps_views_and_drops_forward_caches(rng):
    import pickle

    model = fastnn.mlp([64, 32, 10], seed=0)
    model.outputs(rng.standard_normal((4096, 64)))
    copy = pickle.loads(pickle.dumps(model))
    assert all(np.shares_memory(p, copy.params) for p in copy.parameters())
    assert len(pickle.dumps(model)) < 4 * model.n_params * 3 + 20_000  # params, grads, views; no batch
    np.testing.assert_array_equal(copy.outputs(np.ones((2, 64))), model.outputs(np.ones((2, 64))))


def test_assigning_params_copies_into_the_flat_buffer(rng):
    """model.params = values keeps one buffer: the layers' views (predict) and fit see the
    same numbers; a wrong length or a non-finite value is refused."""
    model = fastnn.mlp([3, 4, 2], seed=0)
    buffer = model.params
    values = rng.standard_normal(model.n_params)
    model.params = values
    assert model.params is buffer
    np.testing.assert_allclose(model.layers[0].W.ravel(), values[:12], rtol=1e-6)
    X = rng.standard_normal((5, 3))
    expected = np.maximum(X @ values[:12].reshape(3, 4) + values[12:16], 0) @ values[16:24].reshape(4, 2) \
        + values[24:]
    np.testing.assert_allclose(model.outputs(X), expected, rtol=1e-5, atol=1e-6)
    for bad in (np.zeros(model.n_params + 1), np.zeros(model.n_params - 1), np.zeros((2, model.n_params))):
        with pytest.raises(ValueError, match=r"params must be a numeric array of shape \(26,\)"):
            model.params = bad
    with pytest.raises(ValueError, match="params must be finite"):
        model.params = np.full(model.n_params, np.nan)
    np.testing.assert_allclose(model.params, values, rtol=1e-6)


def test_the_layout_is_read_only():
    """What sizes the flat buffers cannot change after the model is built."""
    model = fastnn.mlp([3, 4, 2], seed=0)
    with pytest.raises(TypeError):
        model.layers[0] = fastnn.Dense(3, 4)
    with pytest.raises(AttributeError):
        model.layers = [fastnn.Dense(3, 2)]
    with pytest.raises(AttributeError):
        model.grads = np.zeros(model.n_params, np.float32)
    for name in ("in_features", "out_features", "n_params"):
        with pytest.raises(AttributeError):
            setattr(model.layers[0], name, 5)
    with pytest.raises(ValueError, match=r"params must be a C-contiguous float32 array of shape \(16,\)"):
        model.layers[0].bind(np.zeros(10, np.float32), np.zeros(16, np.float32))
