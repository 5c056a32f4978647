"""What the engine tests share: the batch modes, data, and training a model with the
engine and without it."""
import numpy as np

import fastnn
from fastnn import engine as engines


ENGINE_BACKENDS = [name for name in ("numba", "cython") if engines.engine_module(name) is not None]
ACTIVATION_NAMES = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]
# (samples, batch_size, epochs): 10 optimizer steps each. With 2 threads, the engine's
# threads in the Cython engine, BLAS's in the Numba engine; the two-thread mini-batches
# end with a batch of one row, so that one thread has no rows of it.
BATCH_MODES = {"online": (10, 1, 1), "online, 2 threads": (10, 1, 1), "mini-batch": (23, 5, 2),
               "mini-batch, 2 threads": (21, 5, 2), "full": (12, "full", 10), "full, 2 threads": (12, "full", 10)}


def data(n, n_features=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    y = rng.integers(0, n_classes, n)
    return X, y


def train_both(build, X, y, mode, optimizer=lambda: fastnn.SGD(0.1), **options):
    """Train build() with the engine and without it, 10 steps: [(params, history)] * 2."""
    n, batch_size, epochs = BATCH_MODES[mode]
    if "sample_weight" in options:
        options["sample_weight"] = options["sample_weight"][:n]
    results = []
    for engine in (True, False):
        model = build()
        threads = 2 if engine and mode.endswith("2 threads") else None
        history = model.fit(X[:n], y[:n], optimizer=optimizer(), epochs=epochs, batch_size=batch_size, seed=3,
                            verbose=0, engine=engine, n_threads=threads, **options)
        results.append((model.params.copy(), history))
    return results


def assert_same(engine_result, module_result):
    (p_engine, h_engine), (p_module, h_module) = engine_result, module_result
    np.testing.assert_allclose(p_engine, p_module, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(h_engine.loss, h_module.loss, rtol=1e-5)
    np.testing.assert_allclose(h_engine.metric, h_module.metric, rtol=1e-5, atol=1e-12)


def mlp64(activation, output_activation=None, sizes=(3, 6, 5, 3)):
    return lambda: fastnn.mlp(list(sizes), activation=activation, output_activation=output_activation,
                              dtype=np.float64, seed=1)
