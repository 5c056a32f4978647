"""scipy.sparse inputs: SparseRows, and fit / predict / evaluate / the estimators on them,
which train to the numbers a dense X gives, on every path (per-module, the engines'
entry-by-entry first layer, the engines' densified batches)."""
import numpy as np
import pytest
import scipy.sparse

import fastnn
from fastnn import engine as engines
from fastnn.sklearn import MLPClassifier, MLPRegressor
from fastnn.sparse import SparseRows


def sparse_data(n=120, n_in=30, density=0.15, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)) * (rng.random((n, n_in)) < density)
    X[3] = 0  # a sample without any stored entry
    y = (X[:, :10].sum(axis=1) > 0).astype(np.int64) + 2 * (X[:, 10:20].sum(axis=1) > 0)
    return X.astype(dtype), y


def test_sparse_rows_slices_and_indexes_like_an_array():
    X, _ = sparse_data()
    rows = SparseRows.from_scipy(scipy.sparse.csc_array(X), np.float32)
    assert rows.shape == X.shape and len(rows) == len(X) and rows.dtype == np.float32
    assert rows.nnz == np.count_nonzero(X) and rows.density == pytest.approx(np.count_nonzero(X) / X.size)
    np.testing.assert_array_equal(rows.toarray(), X.astype(np.float32))
    part = rows[10:20]
    assert part.values is rows.values and part.indptr[0] == rows.indptr[10]  # a view
    np.testing.assert_array_equal(part.toarray(), X[10:20].astype(np.float32))
    picked = [5, 1, 5, 0]
    np.testing.assert_array_equal(rows[picked].toarray(), X[picked].astype(np.float32))
    mask = X[:, 0] > 0
    np.testing.assert_array_equal(rows[mask].toarray(), X[mask].astype(np.float32))
    np.testing.assert_array_equal(SparseRows.from_dense(X).toarray(), X)
    with pytest.raises(TypeError, match="SparseRows takes a slice, sample indices or a mask"):
        rows[3]


def test_bad_sparse_inputs_are_named():
    X, y = sparse_data()
    model = fastnn.mlp([30, 4], seed=0)
    bad = scipy.sparse.csr_array(X)
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.fit(bad, y, epochs=1)
    with pytest.raises(ValueError, match="X must have 30 features"):
        model.fit(scipy.sparse.csr_array(X[:, :20]), y, epochs=1)
    with pytest.raises(ValueError, match="X is empty"):
        model.predict(scipy.sparse.csr_array((0, 30)))
    with pytest.raises(ValueError, match="validation_data X must have 30 features"):
        model.fit(scipy.sparse.csr_array(X), y, epochs=1, validation_data=(scipy.sparse.csr_array(X[:, :5]), y))
    with pytest.raises(ValueError, match="a sparse X needs a model whose first layer is Dense"):
        fastnn.Sequential(fastnn.layers.ReLU(), fastnn.layers.Dense(30, 4)).predict(scipy.sparse.csr_array(X))


def test_dense_backward_of_a_sparse_input_has_no_input_gradient():
    X, _ = sparse_data()
    layer = fastnn.layers.Dense(30, 4, dtype=np.float64, seed=0)
    out = layer.forward(SparseRows.from_dense(X))
    np.testing.assert_allclose(out, X @ layer.W + layer.b, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="no input gradient for a sparse input"):
        layer.backward(np.ones_like(out))
    assert layer.backward(np.ones_like(out), input_grad=False) is None
    np.testing.assert_allclose(layer.dW, X.T @ np.ones_like(out), rtol=1e-12, atol=1e-12)


def test_predict_and_evaluate_take_every_sparse_format(any_backend):
    X, y = sparse_data()
    model = fastnn.mlp([30, 16, 4], seed=0, dtype=np.float64)
    with fastnn.use_backend(any_backend.name):
        dense_out = model.outputs(X)
        for kind in (scipy.sparse.csr_array, scipy.sparse.csc_matrix, scipy.sparse.coo_array):
            np.testing.assert_allclose(model.outputs(kind(X)), dense_out, rtol=1e-12, atol=1e-12)
        assert model.evaluate(scipy.sparse.csr_matrix(X), y) == pytest.approx(model.evaluate(X, y), rel=1e-12)
        np.testing.assert_array_equal(model.predict(scipy.sparse.csr_array(X)), model.predict(X))


def test_backprop_through_a_sparse_input_matches_finite_differences():
    X, y = sparse_data(n=20, n_in=8, density=0.4)
    model = fastnn.mlp([8, 5, 4], activation="tanh", seed=0, dtype=np.float64)
    _, backprop = model.loss_and_grad(scipy.sparse.csr_array(X), y)
    numerical = fastnn.numerical_grad(model, scipy.sparse.csr_array(X), y)
    np.testing.assert_allclose(backprop, numerical, rtol=1e-6, atol=1e-8)


# Every way fit trains a sparse X: (engine, whether the first layer goes entry by entry).
PATHS = {"per-module": (False, None), "engine, entry by entry": (True, True), "engine, densified": (True, False)}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("batch_size, shuffle", [(8, True), (16, False), (120, True)])
def test_fit_on_sparse_equals_fit_on_dense(engine_backend, monkeypatch, path, batch_size, shuffle):
    """The path under test on a sparse X against the same path's dense products on X."""
    engine, csr = PATHS[path]
    X, y = sparse_data()
    fits = []
    for data, entry_by_entry in ((X, False), (scipy.sparse.csr_array(X), csr)):
        monkeypatch.setattr(engines, "_csr_pays", lambda *args: entry_by_entry)
        model = fastnn.mlp([30, 16, 4], seed=0, dtype=np.float64)
        history = model.fit(data, y, epochs=3, batch_size=batch_size, seed=1, shuffle=shuffle, engine=engine,
                            n_threads=1, verbose=0)
        fits.append((model.params.copy(), history.loss))
    np.testing.assert_allclose(fits[1][0], fits[0][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fits[1][1], fits[0][1], rtol=1e-10)


def test_engine_multiplies_sparse_first_layers_only_where_measured_faster(engine_backend):
    module = engines.plan("auto", fastnn.mlp([30, 4]), fastnn.losses.SoftmaxCrossEntropy(), fastnn.optim.Adam())
    X, _ = sparse_data(density=0.15)
    if module.CSR_MAX_BATCH < engines.CSR_MIN_BATCH:
        pytest.skip("this engine never multiplies entry by entry")
    assert engines._csr_pays(X, engines.CSR_MIN_BATCH, module, 1)
    assert engines._csr_pays(SparseRows.from_dense(X), module.CSR_MAX_BATCH, module, 1)
    assert not engines._csr_pays(X, engines.CSR_MIN_BATCH, module, 2)
    assert not engines._csr_pays(X, module.CSR_MAX_BATCH + 1, module, 1)
    assert not engines._csr_pays(X, engines.CSR_MIN_BATCH - 1, module, 1)
    crowded, _ = sparse_data(density=0.6)
    assert not engines._csr_pays(crowded, engines.CSR_MIN_BATCH, module, 1)
    # The models of a stack on threads of their own: up to the stacked limit.
    assert module.CSR_MAX_BATCH_STACKED >= module.CSR_MAX_BATCH
    assert engines._csr_pays(X, module.CSR_MAX_BATCH_STACKED, module, 1, 2)
    assert not engines._csr_pays(X, module.CSR_MAX_BATCH_STACKED + 1, module, 1, 2)


@pytest.mark.parametrize("density", [0.1, 0.25, 0.6])
def test_the_density_of_a_large_dense_X_is_read_from_evenly_spaced_rows(density):
    X, _ = sparse_data(n=5000, n_in=80, density=density)
    assert X.size > 4 * engines.DENSITY_SAMPLE
    assert engines._stored_fraction(X) == pytest.approx(np.count_nonzero(X) / X.size, abs=0.01)
    assert engines._stored_fraction(SparseRows.from_dense(X)) == np.count_nonzero(X) / X.size
    assert engines._stored_fraction(X[:0]) == 0.0


def test_stack_and_validation_on_sparse_inputs(engine_backend):
    X, y = sparse_data()
    Xs = scipy.sparse.csr_array(X)
    stack = fastnn.Stack([fastnn.mlp([30, 8, 4], seed=s, dtype=np.float64) for s in range(3)])
    dense = fastnn.Stack([fastnn.mlp([30, 8, 4], seed=s, dtype=np.float64) for s in range(3)])
    # The stack's models on threads of their own go entry by entry; the reference is the
    # per-module path on the dense X.
    for models, data, engine in ((stack, Xs, "auto"), (dense, X, False)):
        models.fit(data, y, epochs=2, batch_size=8, seed=[1, 2, 3], validation_data=(data, y), verbose=0,
                   engine=engine)
    for a, b in zip(stack, dense):
        np.testing.assert_allclose(a.params, b.params, rtol=1e-10, atol=1e-12)
        assert a.history.val_loss == pytest.approx(b.history.val_loss, rel=1e-10)
    model = fastnn.mlp([30, 8, 4], seed=0)
    history = model.fit(Xs, y, epochs=2, validation_split=0.25, seed=0, verbose=0)
    assert len(history.val_loss) == 2


def test_online_fit_of_a_sparse_input_takes_the_per_module_path(engine_backend, capsys):
    X, y = sparse_data(n=40)
    fits = []
    for data in (X, scipy.sparse.csr_array(X)):
        model = fastnn.mlp([30, 8, 4], seed=0, dtype=np.float64)
        model.fit(data, y, epochs=2, batch_size=1, optimizer="sgd", seed=1, verbose=1, engine="auto")
        fits.append(model.params.copy())
    assert "trains a sparse X in mini-batches" in capsys.readouterr().err
    np.testing.assert_allclose(fits[1], fits[0], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="engine=True: the engine trains a sparse X in mini-batches"):
        fastnn.mlp([30, 4]).fit(scipy.sparse.csr_array(X), y, batch_size=1, engine=True)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_estimators_take_sparse_inputs(Estimator):
    X, y = sparse_data()
    target = y if Estimator is MLPClassifier else X[:, :3].sum(axis=1)
    fitted = []
    for data in (X, scipy.sparse.csr_matrix(X)):
        estimator = Estimator(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dtype="float64", tol=0)
        estimator.fit(data, target)
        estimator.partial_fit(data, target)
        fitted.append((estimator.model_.params.copy(), estimator.predict(scipy.sparse.csc_array(X)),
                       estimator.score(data, target)))
    np.testing.assert_allclose(fitted[1][0], fitted[0][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fitted[1][1], fitted[0][1], rtol=1e-10)
    assert fitted[1][2] == pytest.approx(fitted[0][2], rel=1e-10)
