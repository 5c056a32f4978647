"""What the save/load tests share: optimizers of every kind, a trained model, bitwise
comparison of models."""
import numpy as np

import fastnn
from fastnn.optim import SGD, Adam, CosineDecay, ExponentialDecay, StepDecay

OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.05),
    "sgd_nesterov_step_decay": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                                           schedule=StepDecay(2, gamma=0.5)),
    "adam": lambda: Adam(lr=0.01),
    "adamw_cosine": lambda: Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01, decoupled=True,
                                 schedule=CosineDecay(10, min_lr=1e-4)),
    "adam_exponential": lambda: Adam(lr=0.01, schedule=ExponentialDecay(0.9)),
}


def data(dtype, n=24, n_features=5, n_classes=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n_features)).astype(dtype), np.arange(n) % n_classes


def trained_model(dtype, optimizer, epochs=2):
    model = fastnn.mlp([5, 8, 6, 3], activation="tanh", dropout=0.25, dtype=dtype, seed=1)
    X, y = data(dtype)
    model.fit(X, y, optimizer=optimizer, epochs=epochs, batch_size=8, shuffle=False, verbose=0)
    return model


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def assert_same_model(loaded, model):
    assert repr(loaded) == repr(model)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.dtype == model.dtype and loaded.training == model.training
    assert_same_bits(loaded.params, model.params)
    for new, old in zip(loaded.dense_layers, model.dense_layers):
        assert new.dtype == old.dtype
        assert new.init == (old.init if isinstance(old.init, str) else None)
        assert np.shares_memory(new.W, loaded.params) and np.shares_memory(new.dW, loaded.grads)
        assert_same_bits(new.W, old.W)
        assert_same_bits(new.b, old.b)
