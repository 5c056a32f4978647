"""Every kernel of every compiled backend, in float32 and float64, against the NumPy reference."""
import numpy as np
import pytest

from fastnn.kernels import ACTIVATIONS, get_backend

# (batch, in, out): one row, one feature, odd sizes, and an MNIST-sized layer.
DENSE_SHAPES = [(1, 1, 1), (1, 784, 10), (7, 13, 5), (64, 1, 3), (3, 5, 1), (256, 784, 256)]
LOSS_SHAPES = [(1, 1), (1, 10), (7, 13), (300, 10)]
TRAINABLE = [name for name in ACTIVATIONS if name != "step"]


def random(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def dense_operands(rng, shape, dtype):
    batch, n_in, n_out = shape
    return (random(rng, (batch, n_in), dtype), random(rng, (n_in, n_out), dtype),
            random(rng, (n_out,), dtype))


@pytest.mark.parametrize("shape", DENSE_SHAPES)
def test_matmul(backend, reference, dtype, rng, assert_close, shape):
    X, W, _ = dense_operands(rng, shape, dtype)
    got, want = (np.empty((shape[0], shape[2]), dtype) for _ in range(2))
    backend.matmul(X, W, got)
    reference.matmul(X, W, want)
    assert_close(got, want, dtype, scale=np.sqrt(shape[1]))


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", DENSE_SHAPES)
def test_dense_forward(backend, reference, dtype, rng, assert_close, shape, activation):
    X, W, b = dense_operands(rng, shape, dtype)
    got, want = (np.empty((shape[0], shape[2]), dtype) for _ in range(2))
    backend.dense_forward(X, W, b, got, activation, 0.1)
    reference.dense_forward(X, W, b, want, activation, 0.1)
    if activation == "step":
        # A pre-activation within rounding of 0 may fall either side.
        Z = X.astype(np.float64) @ W + b
        clear = np.abs(Z) > 1e-4 * np.sqrt(shape[1])
        np.testing.assert_array_equal(got[clear], want[clear])
    else:
        assert_close(got, want, dtype, scale=np.sqrt(shape[1]))


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("in_place", [False, True], ids=["out", "in_place"])
def test_activation_forward(backend, reference, dtype, rng, assert_close, activation, in_place):
    Z = random(rng, (7, 13), dtype, scale=3.0)
    Z[0, :4] = [0.0, -1e4, 1e4, -0.0]
    want = np.empty_like(Z)
    reference.activation_forward(Z, want, activation, 0.2)
    got = Z.copy() if in_place else np.empty_like(Z)
    backend.activation_forward(got if in_place else Z, got, activation, 0.2)
    assert_close(got, want, dtype)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("activation", TRAINABLE)
@pytest.mark.parametrize("in_place", [False, True], ids=["out", "in_place"])
def test_activation_backward(backend, reference, dtype, rng, assert_close, activation, in_place):
    A = np.empty((9, 11), dtype)
    reference.activation_forward(random(rng, A.shape, dtype, 2.0), A, activation, 0.2)
    dA = random(rng, A.shape, dtype)
    want = np.empty_like(A)
    reference.activation_backward(A, dA, want, activation, 0.2)
    got = dA.copy() if in_place else np.empty_like(A)
    backend.activation_backward(A, got if in_place else dA, got, activation, 0.2)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("with_dX", [True, False], ids=["dX", "no_dX"])
@pytest.mark.parametrize("shape", DENSE_SHAPES)
def test_dense_backward(backend, reference, dtype, rng, assert_close, shape, with_dX):
    batch, n_in, n_out = shape
    X, W, _ = dense_operands(rng, shape, dtype)
    dZ = random(rng, (batch, n_out), dtype)
    results = []
    for kernels in (backend, reference):
        dW, db = np.empty_like(W), np.empty(n_out, dtype)
        dX = np.empty_like(X) if with_dX else None
        kernels.dense_backward(X, W, dZ, dW, db, dX)
        results.append((dW, db, dX))
    (dW, db, dX), (dW_ref, db_ref, dX_ref) = results
    assert_close(dW, dW_ref, dtype, scale=np.sqrt(batch))
    assert_close(db, db_ref, dtype, scale=np.sqrt(batch))
    if with_dX:
        assert_close(dX, dX_ref, dtype, scale=np.sqrt(n_out))


def csr_operands(rng, shape, dtype, density=0.3):
    """A sparse (batch, in) X as CSR arrays whose indptr starts past 0 (a slice of a larger
    matrix's rows), with an empty row and a duplicate entry; and X dense."""
    batch, n_in, _ = shape
    X = random(rng, (batch, n_in), dtype) * (rng.random((batch, n_in)) < density)
    X[0] = 0
    values, indices, indptr = [9.0], [0], [1]  # one entry before the rows
    for row in X:
        entries = [(k, row[k]) for k in np.flatnonzero(row)]
        if entries:  # the first entry stored as two halves: duplicates add up
            k, v = entries[0]
            entries[:1] = [(k, v / 2), (k, v / 2)]
        for k, v in entries:
            indices.append(k)
            values.append(v)
        indptr.append(len(values))
    return (np.array(values, dtype), np.array(indices, np.int64), np.array(indptr, np.int64)), X


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", DENSE_SHAPES)
def test_csr_dense_forward(backend, reference, dtype, rng, assert_close, shape, activation):
    (values, indices, indptr), X = csr_operands(rng, shape, dtype)
    _, W, b = dense_operands(rng, shape, dtype)
    got, want, dense = (np.empty((shape[0], shape[2]), dtype) for _ in range(3))
    backend.csr_dense_forward(values, indices, indptr, W, b, got, activation, 0.1)
    reference.csr_dense_forward(values, indices, indptr, W, b, want, activation, 0.1)
    reference.dense_forward(X, W, b, dense, activation, 0.1)
    if activation == "step":
        clear = np.abs(X.astype(np.float64) @ W + b) > 1e-4 * np.sqrt(shape[1])
        np.testing.assert_array_equal(got[clear], want[clear])
        np.testing.assert_array_equal(want[clear], dense[clear])
    else:
        assert_close(got, want, dtype, scale=np.sqrt(shape[1]))
        assert_close(want, dense, dtype, scale=np.sqrt(shape[1]))


@pytest.mark.parametrize("shape", DENSE_SHAPES)
def test_csr_dense_backward(backend, reference, dtype, rng, assert_close, shape):
    (values, indices, indptr), X = csr_operands(rng, shape, dtype)
    dZ = random(rng, (shape[0], shape[2]), dtype)
    results = []
    for kernels in (backend, reference):
        dW, db = np.full((shape[1], shape[2]), np.nan, dtype), np.full(shape[2], np.nan, dtype)
        kernels.csr_dense_backward(values, indices, indptr, dZ, dW, db)
        results.append((dW, db))
    (dW, db), (dW_ref, db_ref) = results
    assert_close(dW, dW_ref, dtype, scale=np.sqrt(shape[0]))
    assert_close(db, db_ref, dtype, scale=np.sqrt(shape[0]))
    assert_close(dW_ref, X.T @ dZ, dtype, scale=np.sqrt(shape[0]))


@pytest.mark.parametrize("in_place", [False, True], ids=["out", "in_place"])
@pytest.mark.parametrize("shape", LOSS_SHAPES)
def test_softmax(backend, reference, dtype, rng, assert_close, shape, in_place):
    Z = random(rng, shape, dtype, scale=5.0)
    want = np.empty_like(Z)
    reference.softmax(Z, want)
    got = Z.copy() if in_place else np.empty_like(Z)
    backend.softmax(got if in_place else Z, got)
    assert_close(got, want, dtype)


def extreme_logits(dtype):
    """Rows of huge, tiny and mixed logits: log-sum-exp must keep all finite."""
    return np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [0.0, 1e4, 9999.0]], dtype)


def test_softmax_extreme_logits(backend, reference, dtype, assert_close):
    Z = extreme_logits(dtype)
    got, want = np.empty_like(Z), np.empty_like(Z)
    backend.softmax(Z, got)
    reference.softmax(Z, want)
    assert np.isfinite(got).all()
    assert_close(got, want, dtype)


def loss_operands(rng, kernel, shape, dtype):
    """Predictions and targets of the right kind for each loss kernel."""
    Z = random(rng, shape, dtype, scale=3.0)
    if kernel == "softmax_cross_entropy":
        return Z, rng.integers(0, shape[1], shape[0])
    if kernel == "softmax_cross_entropy_soft":
        T = rng.random(shape).astype(dtype)
        return Z, (T / T.sum(axis=1, keepdims=True)).astype(dtype)
    if kernel == "bce_with_logits":
        return Z, rng.random(shape).astype(dtype)
    return Z, random(rng, shape, dtype)


LOSSES = ["softmax_cross_entropy", "softmax_cross_entropy_soft", "mse", "bce_with_logits"]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("shape", LOSS_SHAPES)
@pytest.mark.parametrize("kernel", LOSSES)
def test_losses(backend, reference, dtype, rng, assert_close, kernel, shape, weighted):
    Z, target = loss_operands(rng, kernel, shape, dtype)
    weight = rng.random(shape[0]).astype(dtype) + 0.1 if weighted else None
    got, want = np.empty_like(Z), np.empty_like(Z)
    loss = getattr(backend, kernel)(Z, target, got, weight)
    loss_ref = getattr(reference, kernel)(Z, target, want, weight)
    assert isinstance(loss, float)
    assert_close(loss, loss_ref, dtype)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("kernel", LOSSES)
def test_losses_extreme_logits(any_backend, reference, dtype, assert_close, kernel):
    Z = extreme_logits(dtype)
    if kernel == "softmax_cross_entropy":
        target = np.array([1, 0, 2, 0])
    else:
        target = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]], dtype)
    got, want = np.empty_like(Z), np.empty_like(Z)
    loss = getattr(any_backend, kernel)(Z, target, got)
    loss_ref = getattr(reference, kernel)(Z, target, want)
    assert np.isfinite(loss) and np.isfinite(got).all()
    # The losses here are ~1e4: compare them relative to their size.
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("size", [1, 7, 101_770])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_sgd_update(backend, reference, dtype, rng, assert_close, size, momentum, nesterov, weight_decay):
    params, grad, velocity = (random(rng, size, dtype) for _ in range(3))
    state = [params.copy(), velocity.copy()]
    grad_before = grad.copy()
    for _ in range(3):
        backend.sgd_update(params, grad, velocity, 0.1, momentum, nesterov, weight_decay)
        reference.sgd_update(state[0], grad, state[1], 0.1, momentum, nesterov, weight_decay)
    assert_close(params, state[0], dtype)
    assert_close(velocity, state[1], dtype)
    np.testing.assert_array_equal(grad, grad_before)


@pytest.mark.parametrize("size", [1, 7, 101_770])
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_update(backend, reference, dtype, rng, assert_close, size, weight_decay, decoupled):
    params, grad = random(rng, size, dtype), random(rng, size, dtype)
    m, v = np.zeros(size, dtype), np.zeros(size, dtype)
    params_ref, m_ref, v_ref = params.copy(), m.copy(), v.copy()
    hyper = (1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled)
    for step in (1, 2, 3):
        backend.adam_update(params, grad, m, v, step, *hyper)
        reference.adam_update(params_ref, grad, m_ref, v_ref, step, *hyper)
    assert_close(params, params_ref, dtype)
    assert_close(m, m_ref, dtype)
    assert_close(v, v_ref, dtype)


@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
def test_numba_adam_update_is_the_reference_formula_bit_for_bit(dtype, rng, weight_decay, decoupled):
    """The reference's operations in its order and dtype (the Numba engine's Adam too):
    nothing to round differently, over 10 steps of 1,000 parameters."""
    numba, reference = get_backend("numba"), get_backend("numpy")
    params, grad = random(rng, 1000, dtype), random(rng, 1000, dtype)
    state = [params, np.zeros(1000, dtype), np.zeros(1000, dtype)]
    state_ref = [a.copy() for a in state]
    for step in range(1, 11):
        numba.adam_update(state[0], grad, state[1], state[2], step, 1e-2, 0.9, 0.999, 1e-8, weight_decay, decoupled)
        reference.adam_update(state_ref[0], grad, state_ref[1], state_ref[2], step, 1e-2, 0.9, 0.999, 1e-8,
                              weight_decay, decoupled)
    for got, want in zip(state, state_ref):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel", LOSSES)
def test_batch_of_zero_weights_has_zero_loss_and_gradient(any_backend, dtype, rng, kernel):
    """A mini-batch whose samples all weigh 0 is ignored, not a 0/0."""
    Z, target = loss_operands(rng, kernel, (3, 4), dtype)
    grad = np.full_like(Z, np.nan)
    loss = getattr(any_backend, kernel)(Z, target, grad, np.zeros(3, dtype))
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("kernel", ["mse", "bce_with_logits", "softmax_cross_entropy_soft"])
def test_float32_losses_accumulate_in_float64(any_backend, reference, kernel):
    """A float32 prediction of 3e19 squares to 9e38, past float32's range but not float64's:
    the loss stays finite and equal to the reference."""
    Z = np.array([[3e19, -2e19]], np.float32)
    target = np.array([[0.0, 1.0]], np.float32)
    got, want = np.empty_like(Z), np.empty_like(Z)
    loss = getattr(any_backend, kernel)(Z, target, got)
    expected = getattr(reference, kernel)(Z, target, want)
    assert np.isfinite(expected)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_engine_mse_accumulates_in_float64():
    """The Numba engine's MSE sums squares in float64 too (as the per-module path): a loss
    whose squares overflow float32 is reported as its float64 value, not inf (it lies
    beyond LOSS_LIMIT, so the fit stops as diverged)."""
    import fastnn

    X = np.array([[1.0], [2.0]], np.float32)
    y = np.array([[0.0], [1.0]], np.float32)
    expected = (1.5e19 ** 2 + 3e19 ** 2) / 2
    for backend in ("numba", "cython"):
        with fastnn.use_backend(backend):
            model = fastnn.mlp([1, 1], seed=0)
            model.params = [1.5e19, 0.0]
            with pytest.warns(RuntimeWarning, match="training loss became") as caught:
                history = model.fit(X, y, loss="mse", optimizer=fastnn.SGD(1e-60), epochs=1, batch_size=2,
                                    shuffle=False, verbose=0)
        assert history.diverged, backend
        reported = float(str(caught[0].message).split("became ")[1].split()[0])
        assert reported == pytest.approx(expected, rel=1e-6), backend


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_elementwise_kernels_on_empty_arrays(backend, dtype, shape):
    """No rows or no columns: nothing to compute, and no element 0 to point at (a build with
    bounds checks reported &Z[0, 0] of an empty array)."""
    Z = np.ones(shape, dtype)
    for kernel, args in [("activation_forward", (Z, np.empty_like(Z), "tanh")),
                         ("activation_backward", (Z, Z.copy(), np.empty_like(Z), "sigmoid")),
                         ("softmax", (Z, np.empty_like(Z))),
                         ("dense_forward", (np.ones((shape[0], 2), dtype), np.ones((2, shape[1]), dtype),
                                            np.ones(shape[1], dtype), np.empty_like(Z), "relu"))]:
        getattr(backend, kernel)(*args)
