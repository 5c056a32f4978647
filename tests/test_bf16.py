"""precision='bf16': bf16 products with float32 sums, and the errors where they cannot run."""
from pathlib import Path

import numpy as np
import pytest

import fastnn
import fastnn.kernels as K
from fastnn.datasets import load_mnist
from fastnn.kernels import gemm
from fastnn.sklearn import MLPClassifier, MLPRegressor

UNSUPPORTED = gemm.bf16_unsupported()
needs_bf16 = pytest.mark.skipif(UNSUPPORTED is not None, reason=f"no bf16 products here: {UNSUPPORTED}")
MNIST_DIR = Path(__file__).parents[1].parent / "shared/data/mnist"


def bf16(x):
    """x rounded to the nearest bf16 (ties to even), as float64."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return rounded.view(np.float32).astype(np.float64)


def assert_bf16_product(result, A, B):
    """result is op(A) @ op(B) of the bf16-rounded operands, to float32 accumulation
    rounding: within k float32 epsilons of the sum of the terms' magnitudes."""
    exact = bf16(A) @ bf16(B)
    bound = len(B) * np.finfo(np.float32).eps * (np.abs(bf16(A)) @ np.abs(bf16(B)))
    assert np.all(np.abs(result - exact) <= bound + 1e-30)
    plain = A.astype(np.float64) @ B.astype(np.float64)
    assert not np.allclose(result, plain, rtol=1e-5, atol=0), "the operands were not rounded to bf16"


SHAPES = [(1, 1, 1), (3, 5, 2), (33, 13, 25), (17, 785, 12), (128, 784, 256), (40, 1000, 70)]


@needs_bf16
@pytest.mark.parametrize("backend_name", ["numba", "cython"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_products_are_those_of_bf16_operands(backend_name, shape):
    m, k, n = shape
    rng = np.random.default_rng(k)
    backend = K.get_backend(backend_name)
    X = rng.standard_normal((m, k)).astype(np.float32)
    W = rng.standard_normal((k, n)).astype(np.float32)
    dZ = rng.standard_normal((m, n)).astype(np.float32)
    out, dW, db, dX = (np.empty(s, np.float32) for s in ((m, n), (k, n), n, (m, k)))
    with gemm.bf16_products():
        backend.matmul(X, W, out)
        assert_bf16_product(out, X, W)
        backend.dense_backward(X, W, dZ, dW, db, dX)
    assert_bf16_product(dW, X.T, dZ)
    assert_bf16_product(dX, dZ, W.T)
    np.testing.assert_allclose(db, dZ.sum(0), rtol=1e-5, atol=1e-5)


@needs_bf16
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_products_on_threads_are_the_same(threads):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 300)).astype(np.float32)
    W = rng.standard_normal((300, 500)).astype(np.float32)
    outs = []
    for count in (1, threads):
        out = np.empty((700, 500), np.float32)
        with gemm.bf16_products(count):
            K.get_backend("cython").matmul(X, W, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert_bf16_product(outs[1], X, W)


@needs_bf16
def test_the_block_ends_with_the_providers_products_even_on_error():
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((20, 30)).astype(np.float32), rng.standard_normal((30, 10)).astype(np.float32)
    before = gemm.CELLS.sgemm
    with pytest.raises(KeyError):
        with gemm.bf16_products():
            with gemm.bf16_products():  # blocks nest
                pass
            assert gemm.CELLS.sgemm != before
            gemm.install(gemm.installed())  # a provider installed meanwhile waits for the end
            assert gemm.CELLS.sgemm != before
            raise KeyError
    assert gemm.CELLS.sgemm == before
    out = np.empty((20, 10), np.float32)
    K.get_backend("cython").matmul(A, B, out)
    np.testing.assert_allclose(out, A @ B, rtol=1e-5, atol=1e-5)


def _digits():
    X, y = load_mnist(MNIST_DIR, kind="t10k")
    return X.reshape(len(X), -1).astype(np.float32), y


@needs_bf16
@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(), reason="the MNIST test digits are absent")
def test_mnist_reaches_the_float32_accuracy():
    """784-256-128-10 on 8,000 real digits, tested on the other 2,000: the mean accuracy over
    three seeds within 0.3 points of float32's."""
    X, y = _digits()
    accuracy = {}
    for precision in (None, "bf16"):
        scores = []
        for seed in range(3):
            model = fastnn.mlp([784, 256, 128, 10], seed=seed)
            model.fit(X[:8000], y[:8000], epochs=4, batch_size=128, seed=seed, verbose=0, precision=precision)
            scores.append(np.mean(model.predict(X[8000:]) == y[8000:]))
        accuracy[precision] = np.mean(scores)
    assert accuracy[None] > 0.94
    assert abs(accuracy["bf16"] - accuracy[None]) <= 0.003


@needs_bf16
@pytest.mark.parametrize("engine", [True, False])
@pytest.mark.parametrize("batch", [16, "full"])
def test_fit_in_bf16_on_each_path(engine_backend, engine, batch):
    """The engine and the per-module path both train in bf16: the same numbers to rounding,
    different from float32's, and the products are float32 again after fit."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((96, 20)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(int)
    weights = {}
    for precision, path in ((None, engine), ("bf16", engine), ("bf16", not engine)):
        model = fastnn.mlp([20, 32, 2], seed=3)
        model.fit(X, y, epochs=3, batch_size=batch, seed=4, verbose=0, engine=path, precision=precision)
        weights[precision, path] = model.params.copy()
    np.testing.assert_allclose(weights["bf16", engine], weights["bf16", not engine], rtol=1e-3, atol=1e-5)
    assert not np.allclose(weights["bf16", engine], weights[None, engine], rtol=1e-6, atol=0)
    assert gemm.CELLS.sgemm == gemm.installed().sgemm


@needs_bf16
@pytest.mark.parametrize("engine", [True, False])
def test_online_steps_stay_float32(engine):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((30, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    weights = []
    for precision in (None, "bf16"):
        model = fastnn.mlp([4, 5, 2], seed=1)
        model.fit(X, y, epochs=2, batch_size=1, seed=2, verbose=0, engine=engine, precision=precision)
        weights.append(model.params)
    np.testing.assert_array_equal(*weights)


@needs_bf16
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_stack_and_estimators_take_precision():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    stack = fastnn.Stack([fastnn.mlp([6, 8, 2], seed=s) for s in range(3)])
    stack.fit(X, y, epochs=2, batch_size=16, verbose=0, precision="bf16")
    scores = [MLPClassifier((8,), learning_rate_init=0.05, max_iter=50, tol=0, n_iter_no_change=50,
                            precision=precision, random_state=0).fit(X, y).score(X, y)
              for precision in (None, "bf16")]
    assert scores[1] > 0.9 and abs(scores[1] - scores[0]) <= 0.05
    assert MLPClassifier(precision="bf16").get_params()["precision"] == "bf16"
    MLPRegressor((8,), max_iter=5, precision="bf16", random_state=0).fit(X, X[:, 0])


def test_bad_precision_is_refused_before_training():
    X = np.zeros((10, 3), np.float32)
    y = np.zeros(10, int)
    model = fastnn.mlp([3, 4, 2], seed=0)
    params = model.params.copy()
    with pytest.raises(ValueError, match="precision must be None or 'bf16'; got 'fp8'"):
        model.fit(X, y, epochs=1, precision="fp8")
    double = fastnn.mlp([3, 4, 2], seed=0, dtype="float64")
    with pytest.raises(ValueError, match="precision='bf16' trains float32 models.*float64"):
        double.fit(X, y, epochs=1, precision="bf16")
    with pytest.raises(ValueError, match="precision must be"):
        MLPClassifier(precision="half").fit(X, y)
    np.testing.assert_array_equal(model.params, params)


@needs_bf16
def test_the_numpy_backend_is_refused():
    X = np.zeros((10, 3), np.float32)
    with fastnn.use_backend("numpy"), pytest.raises(ValueError, match="needs a compiled backend"):
        fastnn.mlp([3, 4, 2], seed=0).fit(X, np.zeros(10, int), epochs=1, precision="bf16")


def test_a_cpu_without_bf16_gets_a_clear_error(monkeypatch):
    monkeypatch.setattr(gemm, "bf16_unsupported", lambda: "this CPU lacks AVX512-BF16 (lscpu flag avx512_bf16)")
    X = np.zeros((10, 3), np.float32)
    model = fastnn.mlp([3, 4, 2], seed=0)
    params = model.params.copy()
    with pytest.raises(RuntimeError, match="precision='bf16' needs native bf16 products: this CPU lacks AVX512-BF16"):
        model.fit(X, np.zeros(10, int), epochs=1, precision="bf16")
    with pytest.raises(RuntimeError, match="bf16 products are not available"):
        with gemm.bf16_products():
            pass
    np.testing.assert_array_equal(model.params, params)
    assert gemm.CELLS.sgemm == gemm.installed().sgemm
