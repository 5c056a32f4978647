"""Both compiled engines train a stack of K models in one call (kernels/abi.py): model k
of the stack ends with the bits it gets trained alone, whatever the other models do; an
inactive model is left as it is; a diverging model stops where it diverged and the
others go on."""
import numpy as np
import pytest

import fastnn
from fastnn import engine as engines
from fastnn.kernels import abi

BACKENDS = [name for name in ("numba", "cython") if engines.engine_module(name) is not None]
N, EPOCHS = 13, 3


def _models(k, dtype=np.float64, activation="tanh"):
    return [fastnn.mlp([3, 5, 4, 3], activation=activation, dtype=dtype, seed=seed) for seed in range(k)]


def _hyper(k, optimizer):
    hyper = np.zeros(k, abi.HYPER)
    hyper["lr"] = 0.05 * (1 + np.arange(k))
    if optimizer == abi.SGD:
        hyper["momentum"], hyper["nesterov"], hyper["weight_decay"] = 0.9, 1, 1e-3
    else:
        hyper["beta1"], hyper["beta2"], hyper["eps"], hyper["weight_decay"] = 0.9, 0.999, 1e-8, 1e-2
    return hyper


def _train(backend, models, optimizer, batch, orders, hyper, active=None, X=None, steps=None, threads=1):
    """Train the models as one stack in one engine call; returns (params, state_a, state_b,
    work) after it."""
    module = engines.engine_module(backend)
    k, p, dtype = len(models), models[0].n_params, models[0].dtype
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 3)).astype(dtype) if X is None else X
    labels = rng.integers(0, 3, N)
    weights = rng.random(N).astype(dtype)
    params = np.stack([m.params for m in models])
    state_a = np.zeros((k, p), dtype) + 0.01
    state_b = np.zeros((k, p if optimizer == abi.ADAM else 0), dtype) + 0.02
    layers, alphas = engines.layer_table(models[0], batch)
    size = int(layers[-1, abi.OUT_OFFSET] + batch * layers[-1, abi.N_OUT])
    model = abi.Model(params, np.zeros_like(params), state_a, state_b, layers, alphas, hyper,
                      np.full(k, 5, np.int64) if steps is None else steps,
                      np.ones(k, np.int64) if active is None else active)
    dense = (np.zeros(0, dtype), np.zeros(0, np.int64), np.zeros(0, np.int64))  # no sparse X
    data = abi.Data(X, labels, np.zeros((0, 3), dtype), weights, *dense, orders)
    work = abi.Work(np.zeros(size, dtype), np.zeros(size, dtype), np.zeros((batch, 3), dtype), np.zeros(batch, dtype),
                    np.zeros(batch, np.int64), *dense, np.zeros((k, 3, p), dtype), np.zeros((k, EPOCHS, 2)),
                    np.zeros((k, EPOCHS, -(-N // batch))), np.full(k, -1, np.int64), np.full(k, -1, np.int64),
                    np.zeros(k))
    run = abi.Run(optimizer, abi.CROSS_ENTROPY, EPOCHS, batch, threads, 0)
    (module.run_online if batch == 1 else module.run_batches)(model, data, work, run)
    return params, state_a, state_b, model.steps, work


def _orders(n_orders):
    rng = np.random.default_rng(5)
    return np.array([[rng.permutation(N) for _ in range(EPOCHS)] for _ in range(n_orders)], np.int64).reshape(
        n_orders, EPOCHS if n_orders else 0, N if n_orders else 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", [abi.SGD, abi.ADAM])
@pytest.mark.parametrize("batch", [1, 4, N])
@pytest.mark.parametrize("n_orders", [0, 1, 3])
def test_each_model_of_a_stack_trains_as_alone(backend, optimizer, batch, n_orders):
    models, orders, hyper = _models(3), _orders(n_orders), _hyper(3, optimizer)
    together = _train(backend, models, optimizer, batch, orders, hyper)
    for k in range(3):
        alone = _train(backend, [models[k]], optimizer, batch, orders[k:k + 1] if n_orders == 3 else orders,
                       hyper[k:k + 1])
        for a, b in zip(together[:4], alone[:4]):
            np.testing.assert_array_equal(a[k], b[0])
        np.testing.assert_array_equal(together[4].stats[k], alone[4].stats[0])
        np.testing.assert_array_equal(together[4].update_losses[k], alone[4].update_losses[0])
        np.testing.assert_array_equal(together[4].backup[k], alone[4].backup[0])
    # Each epoch's update losses are its batches' mean losses: their row-weighted sum is
    # the epoch's loss sum.
    rows = np.diff(np.minimum(np.arange(0, N + batch, batch), N))
    np.testing.assert_allclose(together[4].update_losses @ rows, together[4].stats[..., 0], rtol=1e-12)
    assert together[4].done.tolist() == [EPOCHS] * 3
    assert together[3].tolist() == [5 + EPOCHS * -(-N // batch)] * 3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 4])
def test_an_inactive_model_is_left_as_it_is(backend, batch):
    models = _models(3, np.float32)
    before = np.stack([m.params for m in models])
    params, state_a, state_b, steps, work = _train(backend, models, abi.ADAM, batch, _orders(1), _hyper(3, abi.ADAM),
                                                   active=np.array([1, 0, 1], np.int64))
    np.testing.assert_array_equal(params[1], before[1])
    assert (state_a[1] == np.float32(0.01)).all() and (state_b[1] == np.float32(0.02)).all()
    assert steps.tolist()[1] == 5 and work.done.tolist() == [EPOCHS, 0, EPOCHS]
    assert not np.array_equal(params[0], before[0])
    np.testing.assert_array_equal(work.backup[1], 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 4])
def test_a_diverging_model_stops_and_the_others_go_on(backend, batch):
    """Model 1's learning rate makes its loss overflow; it stops before that batch's update,
    saying where, and models 0 and 2 train as they do alone."""
    models, orders = _models(3, activation="relu"), _orders(3)
    hyper = _hyper(3, abi.SGD)
    hyper["lr"] = [0.01, 1e30, 0.02]
    hyper["momentum"] = 0
    together = _train(backend, models, abi.SGD, batch, orders, hyper)
    work = together[4]
    assert work.done[1] < EPOCHS and not work.failed_loss[1] <= fastnn.kernels.reference.LOSS_LIMIT
    batches = -(-N // batch)
    assert together[3][1] == 5 + work.done[1] * batches + work.failed_batch[1]
    for k in (0, 2):
        alone = _train(backend, [models[k]], abi.SGD, batch, orders[k:k + 1], hyper[k:k + 1])
        _same(backend, batch, together[0][k], alone[0][0])
        assert work.done[k] == EPOCHS


@pytest.mark.skipif("cython" not in BACKENDS, reason="the Cython engine is not built")
@pytest.mark.parametrize("batch", [1, 4])
def test_the_cython_engine_trains_a_stack_on_two_threads(batch):
    """The team of two threads trains the models in turn, each as it does alone on two
    threads, past an inactive model and a diverging one (both threads must agree on which
    models train and where one stops)."""
    models, orders = _models(4, activation="relu"), _orders(4)
    hyper = _hyper(4, abi.SGD)
    hyper["lr"] = [0.01, 1e30, 0.02, 0.03]
    active = np.array([1, 1, 0, 1], np.int64)
    together = _train("cython", models, abi.SGD, batch, orders, hyper, active=active, threads=2)
    work = together[4]
    assert work.done.tolist() == [EPOCHS, work.done[1], 0, EPOCHS] and work.done[1] < EPOCHS
    for k in range(4):
        alone = _train("cython", [models[k]], abi.SGD, batch, orders[k:k + 1], hyper[k:k + 1],
                       active=active[k:k + 1], threads=2)
        for a, b in zip(together[:4], alone[:4]):
            np.testing.assert_array_equal(a[k], b[0])
        for name in ("stats", "update_losses", "backup", "done", "failed_batch", "failed_loss"):
            np.testing.assert_array_equal(getattr(work, name)[k], getattr(alone[4], name)[0])


def _same(backend, batch, got, want):
    """Bit for bit, except where the Cython engine trains models across lanes (online plain
    SGD of two or more models): to rounding there."""
    if backend == "cython" and batch == 1:
        np.testing.assert_allclose(got, want, rtol=1e-10 if got.dtype == np.float64 else 1e-4, atol=1e-12)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif("cython" not in BACKENDS, reason="the Cython engine is not built")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("n_orders", [0, 1, 11])
def test_models_across_lanes_train_as_alone_to_rounding(dtype, activation, n_orders):
    """Online plain SGD of 11 models (a block of eight lanes and one of three), one learning
    rate each: every model's parameters, statistics and steps as when it trains alone."""
    models, orders = _models(11, dtype, activation), _orders(n_orders)
    hyper = _hyper(11, abi.SGD)
    hyper["momentum"] = hyper["weight_decay"] = hyper["nesterov"] = 0
    hyper["lr"] = 0.01 * (1 + np.arange(11))
    together = _train("cython", models, abi.SGD, 1, orders, hyper)
    for k in range(11):
        alone = _train("cython", [models[k]], abi.SGD, 1, orders[k:k + 1] if n_orders == 11 else orders,
                       hyper[k:k + 1])
        _same("cython", 1, together[0][k], alone[0][0])
        _same("cython", 1, together[4].backup[k], alone[4].backup[0])
        for name in ("stats", "update_losses"):
            np.testing.assert_allclose(getattr(together[4], name)[k], getattr(alone[4], name)[0],
                                       rtol=1e-9 if dtype == np.float64 else 1e-4)
    assert together[3].tolist() == [5 + EPOCHS * N] * 11 and together[4].done.tolist() == [EPOCHS] * 11
