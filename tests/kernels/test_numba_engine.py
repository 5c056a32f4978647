"""The Numba engine (kernels/numba_engine.py) and the per-module path share their math
(kernels/numba_scalar.py): on one thread, mini-batch and full-batch training give the
same float64 parameters bit for bit. Its argument bundles (kernels/abi.py) go through
fastnn.engine.compiles and Numba's on-disk cache like any argument."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn.kernels import numba_engine

OPTIMIZERS = {
    "adam": lambda: fastnn.Adam(0.01),
    "adam, weight decay": lambda: fastnn.Adam(0.01, weight_decay=0.01),
    "adamw": lambda: fastnn.Adam(0.01, weight_decay=0.1, decoupled=True),
    "sgd, momentum": lambda: fastnn.SGD(0.1, momentum=0.9),
    "sgd, nesterov, weight decay": lambda: fastnn.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
}
# (samples, batch_size, epochs): 10 optimizer steps each, the mini-batches' last one short.
MODES = {"mini-batch": (23, 5, 2), "full": (12, "full", 10)}
# The engine steps the optimizer in one pass after the gradient (narrow) or layer by layer
# as each gradient is done (wide: from numba_engine.BY_LAYER_BYTES of parameters).
NETS = {"narrow": [3, 6, 5, 3], "wide": [3, 64, 32, 3]}


def _trained(engine, optimizer, mode, activation, loss, targets, net="narrow"):
    n, batch_size, epochs = MODES[mode]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3))
    y = rng.integers(0, 3, n)
    model = fastnn.mlp(NETS[net], activation=activation, dtype=np.float64, seed=1)
    with fastnn.use_backend("numba"):
        model.fit(X, np.eye(3)[y] if targets == "one-hot" else y, loss=loss, optimizer=optimizer(), epochs=epochs,
                  batch_size=batch_size, sample_weight=rng.random(n), seed=3, verbose=0, engine=engine, n_threads=1)
    return model.params


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_engine_and_module_path_give_the_same_bits(optimizer, mode, net):
    float64_bytes = {name: 8 * sum((a + 1) * b for a, b in zip(sizes, sizes[1:])) for name, sizes in NETS.items()}
    assert float64_bytes["narrow"] < numba_engine.BY_LAYER_BYTES <= float64_bytes["wide"]
    args = (OPTIMIZERS[optimizer], mode, "tanh", "cross_entropy", "labels", net)
    np.testing.assert_array_equal(_trained(True, *args), _trained(False, *args))


@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "sigmoid"])
@pytest.mark.parametrize("loss,targets", [("cross_entropy", "one-hot"), ("mse", "one-hot"), ("bce", "one-hot")])
def test_every_activation_and_loss_give_the_same_bits(activation, loss, targets):
    args = (OPTIMIZERS["adam"], "mini-batch", activation, loss, targets)
    np.testing.assert_array_equal(_trained(True, *args), _trained(False, *args))


BUNDLE_MODULE = """
from numba import njit


@njit(cache=True)
def first_step(model, run):
    return model.params[0, 0] - model.hyper[0].lr * model.grads[0, 0] + model.steps[0] + run.n_epochs
"""
BUNDLE_COMPILES = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from fastnn.engine import compiles
from fastnn.kernels import abi
import bundle

model = abi.Model(np.ones((1, 3)), np.ones((1, 3)), np.zeros((1, 3)), np.zeros((1, 0)), np.zeros((1, 6), np.int64),
                  np.zeros(1), np.zeros(1, abi.HYPER), np.full(1, 2, np.int64), np.ones(1, np.int64))
args = (model, abi.Run(0, 0, 1, 1, 1, 0))


def run(*args):
    return bundle.first_step(*args)


run.compiled = bundle.first_step
before = compiles(run, args)
run(*args)
print(before, compiles(run, args), len(bundle.first_step.stats.cache_hits))
"""


def test_bundles_are_told_compiled_and_load_from_the_disk_cache(tmp_path):
    """A first process compiles (compiles says so before, not after); a second loads the
    machine code for the same bundle types from Numba's cache (compiles says False)."""
    (tmp_path / "bundle.py").write_text(BUNDLE_MODULE)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", BUNDLE_COMPILES, str(tmp_path)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=240, check=True).stdout.split() for _ in range(2)]
    assert runs == [["True", "False", "0"], ["False", "False", "1"]]
