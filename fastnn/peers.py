"""The same MLP training in fastnn and in its peers: PyTorch, JAX and scikit-learn.

A trainer is built from (sizes, activation, batch, optimizer, X, y) and has
``run()``, one epoch over X in order with mini-batches of ``batch`` rows in X's dtype
(float32 or float64), and
``loss(X, y)``, the mean softmax cross-entropy of its current weights. Every
framework trains the same net (Dense layers, the activation between them, softmax
cross-entropy) with the same optimizer and learning rate:

    "sgd"       plain SGD, lr 0.01
    "momentum"  SGD with momentum 0.9 (PyTorch's form: v = 0.9 v + g; p -= lr v), lr 0.01
    "adam"      Adam (0.9, 0.999, 1e-8), lr 1e-3

``installed()`` lists the frameworks this Python can import; the benchmarks
(benchmarks/peers.py, benchmarks/test_peers.py, ``fastnn bench``) time their
trainers side by side. PyTorch and JAX are optional (``pip install "fastnn[peers]"``).
"""
import importlib.util
import warnings

import numpy as np

from . import kernels
from .model import mlp
from .optim import SGD, Adam

LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "adam": 1e-3}
MOMENTUM = 0.9
OPTIMIZERS = tuple(LEARNING_RATES)


def _batches(n, batch):
    return [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]


class FastnnTrainer:
    """fastnn's fit on one backend (``backend``), engine as fit chooses it."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, backend="numba"):
        self.backend, self.batch, self.X, self.y = backend, batch, X, y
        self.model = mlp(sizes, activation=activation, dtype=X.dtype, seed=0)
        lr = LEARNING_RATES[optimizer]
        self.optimizer = (Adam(lr) if optimizer == "adam"
                          else SGD(lr, momentum=MOMENTUM if optimizer == "momentum" else 0.0))

    def run(self):
        """One epoch; a diverged epoch would time a partial one, so it is an error."""
        with kernels.use_backend(self.backend):
            history = self.model.fit(self.X, self.y, optimizer=self.optimizer, epochs=1,
                                     batch_size=self.batch, shuffle=False, verbose=0)
        if history.diverged:
            raise RuntimeError("training diverged; the timing would be of a partial epoch")

    def loss(self, X, y):
        return self.model.evaluate(X, y)["loss"]


class TorchTrainer:
    def __init__(self, sizes, activation, batch, optimizer, X, y):
        import torch

        self.torch = torch
        torch.manual_seed(0)
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}[activation]
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layers.append(torch.nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(act())
        self.model = torch.nn.Sequential(*layers).to(getattr(torch, X.dtype.name))
        lr, parameters = LEARNING_RATES[optimizer], self.model.parameters()
        self.optimizer = (torch.optim.Adam(parameters, lr) if optimizer == "adam" else
                          torch.optim.SGD(parameters, lr, momentum=MOMENTUM if optimizer == "momentum" else 0.0))
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        self.batches = [(X[lo:hi], y[lo:hi]) for lo, hi in _batches(len(X), batch)]

    def run(self):
        cross_entropy = self.torch.nn.functional.cross_entropy
        for x, t in self.batches:
            self.optimizer.zero_grad()
            cross_entropy(self.model(x), t).backward()
            self.optimizer.step()

    def loss(self, X, y):
        with self.torch.no_grad():
            logits = self.model(self.torch.from_numpy(X))
            return float(self.torch.nn.functional.cross_entropy(logits, self.torch.from_numpy(y)))


class JaxTrainer:
    """One jit-compiled step function (gradient and update), called per batch."""

    def __init__(self, sizes, activation, batch, optimizer, X, y):
        import jax
        import jax.numpy as jnp

        if X.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)  # else JAX computes float64 arrays in float32
        act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[activation]
        keys = jax.random.split(jax.random.PRNGKey(0), len(sizes) - 1)
        params = [(jax.random.normal(k, (n_in, n_out), X.dtype) * np.sqrt(2 / n_in), jnp.zeros(n_out, X.dtype))
                  for k, n_in, n_out in zip(keys, sizes, sizes[1:])]
        lr = LEARNING_RATES[optimizer]
        tree_map = jax.tree_util.tree_map

        def loss(params, x, t):
            for W, b in params[:-1]:
                x = act(x @ W + b)
            W, b = params[-1]
            log_p = jax.nn.log_softmax(x @ W + b)
            return -jnp.mean(jnp.take_along_axis(log_p, t[:, None], axis=1))

        grad = jax.grad(loss)

        def sgd(params, x, t):
            return tree_map(lambda p, g: p - lr * g, params, grad(params, x, t))

        def momentum(state, x, t):
            params, velocity = state
            velocity = tree_map(lambda v, g: MOMENTUM * v + g, velocity, grad(params, x, t))
            return tree_map(lambda p, v: p - lr * v, params, velocity), velocity

        def adam(state, x, t):
            params, m, v, step = state
            g = grad(params, x, t)
            step = step + 1
            m = tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
            v = tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
            scale = lr * jnp.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            return tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + 1e-8), params, m, v), m, v, step

        zeros = tree_map(jnp.zeros_like, params)
        self.state = {"sgd": params, "momentum": (params, zeros), "adam": (params, zeros, zeros, 0.0)}[optimizer]
        self.step = jax.jit({"sgd": sgd, "momentum": momentum, "adam": adam}[optimizer])
        self.params = (lambda state: state) if optimizer == "sgd" else (lambda state: state[0])
        self.jax, self.loss_fn = jax, jax.jit(loss)
        Xj, yj = jnp.asarray(X), jnp.asarray(y)
        self.batches = [(Xj[lo:hi], yj[lo:hi]) for lo, hi in _batches(len(X), batch)]

    def run(self):
        for x, t in self.batches:
            self.state = self.step(self.state, x, t)
        self.jax.block_until_ready(self.state)

    def loss(self, X, y):
        return float(self.loss_fn(self.params(self.state), X, y))


class SklearnTrainer:
    """MLPClassifier.partial_fit: one epoch, no shuffling, the net's activation."""

    def __init__(self, sizes, activation, batch, optimizer, X, y):
        from sklearn.neural_network import MLPClassifier

        solver = "adam" if optimizer == "adam" else "sgd"
        self.model = MLPClassifier(
            hidden_layer_sizes=sizes[1:-1], activation={"sigmoid": "logistic"}.get(activation, activation),
            solver=solver, batch_size=batch, learning_rate_init=LEARNING_RATES[optimizer], max_iter=1,
            shuffle=False, momentum=MOMENTUM if optimizer == "momentum" else 0.0, nesterovs_momentum=False,
            alpha=0.0, random_state=0)
        self.X, self.y, self.classes = X, y, np.arange(sizes[-1])

    def run(self):
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.partial_fit(self.X, self.y, classes=self.classes)

    def loss(self, X, y):
        from sklearn.metrics import log_loss

        return float(log_loss(y, self.model.predict_proba(X), labels=self.classes))


PEERS = {"pytorch": ("torch", TorchTrainer), "jax": ("jax", JaxTrainer), "scikit-learn": ("sklearn", SklearnTrainer)}


def installed():
    """{peer name: trainer class} for the peers this Python can import."""
    return {name: trainer for name, (module, trainer) in PEERS.items() if importlib.util.find_spec(module)}
