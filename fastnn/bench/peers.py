"""The same MLP training in fastnn and in its peers, each run the way its experts run it.

A trainer is built from (sizes, activation, batch, optimizer, X, y) and has
``run()``, ``epochs`` epochs (default 1) over X in order with mini-batches of ``batch``
rows (the last one shorter when batch does not divide len(X)), in X's dtype (float32
or float64), continuing from its current weights; ``loss(X, y)``, the mean softmax
cross-entropy of its current weights; and ``accuracy(X, y)``. Every framework trains
the same net (Dense layers, the activation between them, softmax cross-entropy) from
the same initial weights, those of ``fastnn.mlp(sizes, activation, seed=seed)``, with
the same optimizer:

    "sgd"       plain SGD, lr 0.01
    "momentum"  SGD with momentum 0.9 (PyTorch's form: v = 0.9 v + g; p -= lr v), lr 0.01
    "adam"      Adam (0.9, 0.999, 1e-8), lr 1e-3

(``lr=`` replaces the learning rate). The peers as their experts run them:

- JAX (JaxTrainer): the whole epoch in one jit-compiled ``lax.scan`` over the
  pre-batched data. JaxStepTrainer, one jitted step per Python call, is a labelled
  extra for comparison, never the peer a claim is measured against.
- PyTorch (TorchTrainer) at a fixed thread count: ``installed()`` offers it at one
  thread and at every core, and the benchmarks compare with the faster.
- scikit-learn: MLPClassifier.partial_fit, from its own initialization (it takes no
  weights).

Many models at once: a stack trainer takes ``seeds`` instead of ``seed`` and trains one
model per seed on the same batches. ``loss`` and ``accuracy`` then give one value per
model. JaxTrainer with seeds ``vmap``s its step over the stacked parameters inside the
same scan; TorchStackTrainer holds each layer of the K models as one (K, in, out) tensor
and multiplies with ``bmm``; FastnnSeries fits the models one after another,
FastnnSweep runs them through ``fastnn.sweep`` and FastnnStack trains them as one
``fastnn.Stack`` (one fit of all K); fastnn's trainers are in fastnn.bench.trainers.

``installed()`` lists the single-model peers this Python can import; the benchmarks
(benchmarks/peers.py, benchmarks/test_peers.py, ``fastnn bench``) time them side by
side. PyTorch and JAX are optional (``pip install "fastnn[peers]"``).
"""
import functools
import importlib.util
import os
import warnings

import numpy as np

# fastnn's own trainers live in trainers.py; they are named here too, beside their peers.
from .trainers import (LEARNING_RATES, MOMENTUM, OPTIMIZERS, FastnnSeries, FastnnStack, FastnnSweep,  # noqa: F401
                       FastnnTrainer, StudyStacks, StudySweep, _batches, initial_weights)

class _TorchNet:
    """What the PyTorch trainers share: the activation, the optimizer, batches, threads."""

    def _setup(self, activation, batch, optimizer, X, y, threads, epochs, lr, fp32_precision="none"):
        import torch

        self.torch, self.threads, self.epochs = torch, threads or os.cpu_count(), epochs
        self.fp32_precision = fp32_precision
        self.act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]
        self.lr = LEARNING_RATES[optimizer] if lr is None else lr
        self.optimizer_name = optimizer
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        self.batches = [(Xt[lo:hi], yt[lo:hi]) for lo, hi in _batches(len(X), batch)]
        blas = "MKL" if torch.backends.mkl.is_available() else "OpenBLAS or other"
        self.config = f"torch {torch.__version__}, {self.threads} thread{'s' * (self.threads > 1)}, {blas}" + (
            f", mkldnn.matmul.fp32_precision={fp32_precision!r}" if fp32_precision != "none" else "")

    def _optimizer(self, parameters):
        torch = self.torch
        if self.optimizer_name == "adam":
            return torch.optim.Adam(parameters, self.lr)
        return torch.optim.SGD(parameters, self.lr, momentum=MOMENTUM if self.optimizer_name == "momentum" else 0.0)

    def run(self):
        self.torch.set_num_threads(self.threads)
        switch = self.torch.backends.mkldnn.matmul
        before, switch.fp32_precision = switch.fp32_precision, self.fp32_precision
        try:
            for _ in range(self.epochs):
                for x, t in self.batches:
                    self.optimizer.zero_grad(set_to_none=True)
                    self._loss(x, t).backward()
                    self.optimizer.step()
        finally:
            switch.fp32_precision = before

    def loss(self, X, y):
        with self.torch.no_grad():
            return self._per_model(self._losses(self.torch.from_numpy(X), self.torch.from_numpy(y)))

    def accuracy(self, X, y):
        with self.torch.no_grad():
            hits = self._logits(self.torch.from_numpy(X)).argmax(-1) == self.torch.from_numpy(y)
            return self._per_model(hits.double().mean(-1))


class TorchTrainer(_TorchNet):
    """torch.nn.Sequential of Linear layers, a torch.optim optimizer, ``threads`` threads;
    fp32_precision='bf16' sets PyTorch's switch that sends float32 products through bf16
    (oneDNN) while it trains."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, threads=None, seed=0, epochs=1, lr=None,
                 fp32_precision="none"):
        self._setup(activation, batch, optimizer, X, y, threads, epochs, lr, fp32_precision)
        torch = self.torch
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}[activation]
        layers = []
        for i, (W, b) in enumerate(initial_weights(sizes, activation, X.dtype, seed)):
            linear = torch.nn.Linear(*W.shape, dtype=getattr(torch, X.dtype.name))
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W.T.copy()))
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear] if i == len(sizes) - 2 else [linear, act()]
        self.model = torch.nn.Sequential(*layers)
        self.optimizer = self._optimizer(self.model.parameters())

    def _logits(self, x):
        return self.model(x)

    def _loss(self, x, t):
        return self.torch.nn.functional.cross_entropy(self.model(x), t)

    def _losses(self, x, t):
        return self._loss(x, t)

    def _per_model(self, value):
        return float(value)


class TorchStackTrainer(_TorchNet):
    """K models, one per seed: each layer's weights of all K as one (K, in, out) tensor and
    its biases as one (K, 1, out) tensor, forward and backward through ``baddbmm``, one
    torch.optim optimizer over the stacked tensors (elementwise, so each model's update is
    its own). The loss is the sum over models of each model's mean cross-entropy."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, seeds, threads=None, epochs=1, lr=None):
        self._setup(activation, batch, optimizer, X, y, threads, epochs, lr)
        torch = self.torch
        stacks = zip(*(initial_weights(sizes, activation, X.dtype, seed) for seed in seeds))
        self.params = [(torch.tensor(np.stack([W for W, _ in layer]), requires_grad=True),
                        torch.tensor(np.stack([b[None, :] for _, b in layer]), requires_grad=True))
                       for layer in stacks]
        self.k = len(seeds)
        self.optimizer = self._optimizer([p for layer in self.params for p in layer])
        self.config += ", bmm over the stacked models"

    def _logits(self, x):
        h = x.expand(self.k, *x.shape)
        for i, (W, b) in enumerate(self.params):
            h = self.torch.baddbmm(b, h, W)
            if i < len(self.params) - 1:
                h = self.act(h)
        return h

    def _losses(self, x, t):
        logits = self._logits(x)
        return self.torch.nn.functional.cross_entropy(logits.transpose(1, 2), t.expand(self.k, len(t)),
                                                      reduction="none").mean(1)

    def _loss(self, x, t):
        return self._losses(x, t).sum()

    def _per_model(self, value):
        return value.numpy().astype(float)


class JaxTrainer:
    """The whole epoch in one jit-compiled ``lax.scan`` over the pre-batched data (the
    remainder batch, if any, one more step in the same compiled function). With ``seeds``
    (a list), K models whose parameters are stacked on a leading axis, the step
    ``jax.vmap``-ed over them with the batch shared (in_axes=(0, None, None))."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, seed=0, epochs=1, lr=None, seeds=None):
        import jax
        import jax.numpy as jnp

        if X.dtype == np.float64:
            jax.config.update("jax_enable_x64", True)  # else JAX computes float64 arrays in float32
        self.jax, self.epochs, self.stacked = jax, epochs, seeds is not None
        act = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[activation]
        lr = LEARNING_RATES[optimizer] if lr is None else lr
        tree_map = jax.tree_util.tree_map

        def logits(params, x):
            for W, b in params[:-1]:
                x = act(x @ W + b)
            W, b = params[-1]
            return x @ W + b

        def loss(params, x, t):
            log_p = jax.nn.log_softmax(logits(params, x))
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

        def initial_state(seed):
            params = [tuple(map(jnp.asarray, layer)) for layer in initial_weights(sizes, activation, X.dtype, seed)]
            zeros = tree_map(jnp.zeros_like, params)
            return {"sgd": params, "momentum": (params, zeros),
                    "adam": (params, zeros, zeros, jnp.zeros((), X.dtype))}[optimizer]

        # step, scores and losses take stacked parameters (a leading model axis) with seeds
        # (the functions above stay as they are: loss and grad call logits by name).
        step = {"sgd": sgd, "momentum": momentum, "adam": adam}[optimizer]
        scores, losses = logits, loss
        self.params = (lambda state: state) if optimizer == "sgd" else (lambda state: state[0])
        if self.stacked:
            step = jax.vmap(step, in_axes=(0, None, None))
            scores, losses = jax.vmap(logits, in_axes=(0, None)), jax.vmap(loss, in_axes=(0, None, None))
            self.state = tree_map(lambda *models: jnp.stack(models), *map(initial_state, seeds))
        else:
            self.state = initial_state(seed)

        def epoch(state, xs, ts, x_last, t_last):
            state = jax.lax.scan(lambda state, batch: (step(state, *batch), None), state, (xs, ts))[0]
            return step(state, x_last, t_last) if len(x_last) else state

        batch = min(batch, len(X))
        full = len(X) // batch * batch
        self.data = (jnp.asarray(X[:full].reshape(-1, batch, X.shape[1])), jnp.asarray(y[:full].reshape(-1, batch)),
                     jnp.asarray(X[full:]), jnp.asarray(y[full:]))
        self.epoch, self.step, self.scores, self.losses = map(jax.jit, (epoch, step, scores, losses))
        self.config = (f"jax {jax.__version__}, XLA on {jax.default_backend()}, the epoch in one jitted lax.scan"
                       + (", vmap over the stacked models" if self.stacked else ""))

    def run(self):
        for _ in range(self.epochs):
            self.state = self.epoch(self.state, *self.data)
        self.jax.block_until_ready(self.state)

    def loss(self, X, y):
        losses = np.asarray(self.losses(self.params(self.state), X, y), np.float64)
        return losses if self.stacked else float(losses)

    def accuracy(self, X, y):
        hits = (np.asarray(self.scores(self.params(self.state), X)).argmax(-1) == y).mean(-1)
        return hits if self.stacked else float(hits)


class JaxStepTrainer(JaxTrainer):
    """JaxTrainer's step, jit-compiled alone and called once per batch from Python: how
    JAX is often run, not how its experts run it (kept as a labelled extra)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        xs, ts, x_last, t_last = self.data
        self.batches = list(zip(xs, ts)) + ([(x_last, t_last)] if len(x_last) else [])
        self.config = (f"jax {self.jax.__version__}, XLA on {self.jax.default_backend()}, "
                       "a jitted step per Python call")

    def run(self):
        for _ in range(self.epochs):
            for x, t in self.batches:
                self.state = self.step(self.state, x, t)
        self.jax.block_until_ready(self.state)


class SklearnTrainer:
    """MLPClassifier.partial_fit: one call per epoch, no shuffling, the net's activation,
    scikit-learn's own initialization (seeded by ``seed``)."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, seed=0, epochs=1, lr=None):
        import sklearn
        from sklearn.neural_network import MLPClassifier

        solver = "adam" if optimizer == "adam" else "sgd"
        self.model = MLPClassifier(
            hidden_layer_sizes=sizes[1:-1], activation={"sigmoid": "logistic"}.get(activation, activation),
            solver=solver, batch_size=batch, learning_rate_init=LEARNING_RATES[optimizer] if lr is None else lr,
            max_iter=1, shuffle=False, momentum=MOMENTUM if optimizer == "momentum" else 0.0,
            nesterovs_momentum=False, alpha=0.0, random_state=seed)
        self.X, self.y, self.epochs, self.classes = X, y, epochs, np.arange(sizes[-1])
        self.config = f"scikit-learn {sklearn.__version__}, MLPClassifier.partial_fit on NumPy's BLAS"

    def run(self):
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(self.epochs):
                self.model.partial_fit(self.X, self.y, classes=self.classes)

    def loss(self, X, y):
        from sklearn.metrics import log_loss

        return float(log_loss(y, self.model.predict_proba(X), labels=self.classes))

    def accuracy(self, X, y):
        return float(np.mean(self.model.predict(X) == y))


def _torch_threads():
    """PyTorch's thread counts worth trying here: one, and every core."""
    return sorted({1, os.cpu_count() or 1})


# name -> (module that must import, trainer factory): the single-model peers.
PEERS = {
    **{f"pytorch-{n}t": ("torch", functools.partial(TorchTrainer, threads=n)) for n in _torch_threads()},
    "jax": ("jax", JaxTrainer),
    "scikit-learn": ("sklearn", SklearnTrainer),
}
# The bf16 peers: PyTorch with its float32 products through bf16.
BF16_PEERS = {f"pytorch-{n}t bf16": ("torch", functools.partial(TorchTrainer, threads=n, fp32_precision="bf16"))
              for n in _torch_threads()}
# The many-models peers, taking seeds=[...].
STACK_PEERS = {
    **{f"pytorch-{n}t bmm": ("torch", functools.partial(TorchStackTrainer, threads=n)) for n in _torch_threads()},
    "jax vmap": ("jax", lambda *args, seeds, **kwargs: JaxTrainer(*args, seeds=seeds, **kwargs)),
}


def _importable(peers):
    return {name: trainer for name, (module, trainer) in peers.items() if importlib.util.find_spec(module)}


def installed():
    """{peer name: trainer factory} for the single-model peers this Python can import."""
    return _importable(PEERS)


def installed_bf16():
    """{peer name: trainer factory} for the bf16 peers this Python can import."""
    return _importable(BF16_PEERS)


def installed_stacks():
    """{peer name: trainer factory taking seeds=} for the many-models peers this Python can import."""
    return _importable(STACK_PEERS)


def many_trainers(backends, with_peers=True):
    """{name: trainer factory taking seeds=} of the many-models cases: per fastnn backend one
    fit after another and one Stack.fit in each batch order, fastnn.sweep on the last
    backend, and (with_peers) the installed stacked peers."""
    found = {f"fastnn-{name} one by one": functools.partial(FastnnSeries, backend=name) for name in backends}
    found["fastnn.sweep"] = functools.partial(FastnnSweep, backend=backends[-1])
    for name in backends:
        for order in FastnnStack.ORDERS:
            found[f"fastnn-{name} stack, {order} order"] = functools.partial(FastnnStack, backend=name, order=order)
    return {**found, **(installed_stacks() if with_peers else {})}


def study_trainers(backend):
    """{name: factory} of the configuration study: stacks, and the sweep of single fits."""
    return {f"fastnn-{backend} stacks": functools.partial(StudyStacks, backend=backend),
            "fastnn.sweep": functools.partial(StudySweep, backend=backend)}
