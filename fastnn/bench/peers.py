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
``fastnn.Stack`` (one fit of all K).

``installed()`` lists the single-model peers this Python can import; the benchmarks
(benchmarks/peers.py, benchmarks/test_peers.py, ``fastnn bench``) time them side by
side. PyTorch and JAX are optional (``pip install "fastnn[peers]"``).
"""
import functools
import importlib.util
import os
import warnings

import numpy as np
from threadpoolctl import ThreadpoolController

from .. import blas, kernels
from ..kernels import gemm
from ..model import Stack, mlp
from ..optim import SGD, Adam
from ..sweeps import sweep
from ..threads import available_cores

LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "adam": 1e-3}
MOMENTUM = 0.9
OPTIMIZERS = tuple(LEARNING_RATES)


def _batches(n, batch):
    return [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]


def initial_weights(sizes, activation, dtype, seed=0):
    """[(W (in, out), b (out,)), ...] of fastnn's mlp(sizes, activation, seed=seed): the
    weights every framework starts from."""
    model = mlp(sizes, activation=activation, dtype=dtype, seed=seed)
    return [(layer.W.copy(), layer.b.copy()) for layer in model.dense_layers]


def _fastnn_optimizer(optimizer, lr):
    lr = LEARNING_RATES[optimizer] if lr is None else lr
    return Adam(lr) if optimizer == "adam" else SGD(lr, momentum=MOMENTUM if optimizer == "momentum" else 0.0)


def _fastnn_fit(model, optimizer, X, y, batch, epochs, backend, precision=None):
    """fit in order; a diverged fit would time a partial one, so it is an error."""
    with kernels.use_backend(backend):
        history = model.fit(X, y, optimizer=optimizer, epochs=epochs, batch_size=batch, shuffle=False, verbose=0,
                            precision=precision)
    if history.diverged:
        raise RuntimeError("training diverged; the timing would be of a partial run")


class FastnnTrainer:
    """fastnn's fit on one backend (``backend``), the engine as fit chooses it, its products
    on the BLAS provider in use or on the one named (``provider``, installed before each
    run: two pointers written, so that trainers of either provider can take turns). Each
    run lifts the BLAS thread limits the peers leave behind (PyTorch's set_num_threads(1)
    sets OpenMP's, which MKL's GNU threading layer follows), so that fit chooses its threads
    as in a process of its own. precision='bf16': fit's bf16 products."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, backend="cython", seed=0, epochs=1, lr=None,
                 provider=None, precision=None):
        self.backend, self.batch, self.epochs, self.X, self.y = backend, batch, epochs, X, y
        self.precision = precision
        self.model = mlp(sizes, activation=activation, dtype=X.dtype, seed=seed)
        self.optimizer = _fastnn_optimizer(optimizer, lr)
        self.provider = blas.load(provider) if provider else None
        self.blas_libraries = ThreadpoolController().select(user_api="blas")
        name = provider or blas.blas_info()["provider"]
        self.config = f"fit, {backend} engine, BLAS provider {name} (threads as fit chooses them)" + (
            f", precision={precision!r}" if precision else "")

    def run(self):
        if self.provider is not None:
            gemm.install(self.provider)
        with self.blas_libraries.limit(limits=available_cores()):
            _fastnn_fit(self.model, self.optimizer, self.X, self.y, self.batch, self.epochs, self.backend,
                        self.precision)

    def loss(self, X, y):
        return self.model.evaluate(X, y)["loss"]

    def accuracy(self, X, y):
        return float(np.mean(self.model.predict(X) == y))


class FastnnSeries:
    """K models, one per seed, fitted one after another (what a loop over seeds does)."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, seeds, backend="cython", epochs=1, lr=None):
        self.trainers = [FastnnTrainer(sizes, activation, batch, optimizer, X, y, backend, seed, epochs, lr)
                         for seed in seeds]
        self.config = f"one fit after another, {backend} engine"

    def run(self):
        for trainer in self.trainers:
            trainer.run()

    def loss(self, X, y):
        return np.array([trainer.loss(X, y) for trainer in self.trainers])

    def accuracy(self, X, y):
        return np.array([trainer.accuracy(X, y) for trainer in self.trainers])


def _sweep_run(seed, sizes, activation, batch, optimizer, X, y, backend, epochs, lr):
    model = mlp(sizes, activation=activation, dtype=X.dtype, seed=seed)
    _fastnn_fit(model, _fastnn_optimizer(optimizer, lr), X, y, batch, epochs, backend)
    return {"loss": model.evaluate(X, y)["loss"]}


class FastnnSweep:
    """K models, one per seed, trained by ``fastnn.sweep`` in worker processes: each run
    builds its model, fits ``epochs`` epochs from the initial weights and reports its loss."""

    def __init__(self, sizes, activation, batch, optimizer, X, y, seeds, backend="cython", epochs=1, lr=None):
        self.seeds = list(seeds)
        self.run_one = functools.partial(_sweep_run, sizes=sizes, activation=activation, batch=batch,
                                         optimizer=optimizer, X=X, y=y, backend=backend, epochs=epochs, lr=lr)
        self.config = f"fastnn.sweep, {backend} engine, {os.cpu_count()} worker processes"

    def run(self):
        result = sweep(self.run_one, {}, seeds=self.seeds, verbose=0)
        if result.errors:
            raise RuntimeError(f"sweep runs failed: {result.errors[0]['error']}")
        self.losses = np.array(next(iter(result.values("loss").values())))


class FastnnStack:
    """K models, one per seed, trained together by one ``Stack.fit`` of ``epochs`` epochs
    a run. Unlike the other trainers it shuffles, as a seed study does: ``order`` "shared"
    gives every model one batch order (seed=0), "per seed" model k its own (seed=seeds[k]);
    the orders go on from run to run."""

    ORDERS = ("shared", "per seed")

    def __init__(self, sizes, activation, batch, optimizer, X, y, seeds, backend="cython", epochs=1, lr=None,
                 order="shared"):
        if order not in self.ORDERS:
            raise ValueError(f"order must be one of {self.ORDERS}; got {order!r}")
        self.seeds = list(seeds)
        self.stack = Stack([mlp(sizes, activation=activation, dtype=X.dtype, seed=seed) for seed in self.seeds])
        self.optimizer = _fastnn_optimizer(optimizer, lr)
        self.rngs = np.random.default_rng(0) if order == "shared" else [np.random.default_rng(s) for s in self.seeds]
        self.backend, self.batch, self.epochs, self.X, self.y = backend, batch, epochs, X, y
        self.config = f"one Stack.fit of all the models, {backend} engine, {order} batch order"

    def run(self):
        with kernels.use_backend(self.backend):
            histories = self.stack.fit(self.X, self.y, optimizer=self.optimizer, epochs=self.epochs,
                                       batch_size=self.batch, seed=self.rngs, verbose=0)
        if any(history.diverged for history in histories):
            raise RuntimeError("training diverged; the timing would be of a partial run")

    def loss(self, X, y):
        return self.stack.evaluate(X, y)["loss"]

    def accuracy(self, X, y):
        return np.mean(self.stack.predict(X) == y, axis=1)


def _study_run(seed, configuration, configurations, X, y, backend, epochs):
    spec = configurations[configuration]
    model = mlp(spec["sizes"], activation=spec["activation"], dtype=X.dtype, seed=seed)
    with kernels.use_backend(backend):
        history = model.fit(X, y, optimizer=_fastnn_optimizer(spec["optimizer"], None), epochs=epochs,
                            batch_size=spec["batch"], seed=seed, verbose=0)
    return {"loss": history.loss[-1]}


class StudySweep:
    """A configuration study (fastnn.bench.cases.study_configurations: dicts of sizes,
    activation, batch, optimizer) over seeds by ``fastnn.sweep``: one single fit per
    configuration and seed in worker processes, shuffled by its seed. ``losses`` holds the
    last epoch's training loss of each, (configurations, seeds)."""

    def __init__(self, configurations, X, y, seeds, epochs, backend="cython"):
        self.seeds, self.n = list(seeds), len(configurations)
        self.run_one = functools.partial(_study_run, configurations=configurations, X=X, y=y, backend=backend,
                                         epochs=epochs)
        self.config = f"fastnn.sweep of single fits, {backend} engine, {os.cpu_count()} worker processes"

    def run(self):
        result = sweep(self.run_one, {"configuration": range(self.n)}, seeds=self.seeds, verbose=0)
        if result.errors:
            raise RuntimeError(f"sweep runs failed: {result.errors[0]['error']}")
        self.losses = np.array(list(result.values("loss").values()))


class StudyStacks:
    """The same study as one ``fastnn.Stack`` per configuration, fitted one after another:
    the seeds are the stack's models, each shuffled by its own seed (seed=seeds), so each
    trains as the sweep's single fit of it does."""

    def __init__(self, configurations, X, y, seeds, epochs, backend="cython"):
        self.configurations, self.X, self.y, self.seeds = configurations, X, y, list(seeds)
        self.epochs, self.backend = epochs, backend
        self.config = f"one Stack.fit per configuration, {backend} engine"

    def run(self):
        losses = []
        for spec in self.configurations:
            stack = Stack([mlp(spec["sizes"], activation=spec["activation"], dtype=self.X.dtype, seed=seed)
                           for seed in self.seeds])
            with kernels.use_backend(self.backend):
                histories = stack.fit(self.X, self.y, optimizer=_fastnn_optimizer(spec["optimizer"], None),
                                      epochs=self.epochs, batch_size=spec["batch"], seed=self.seeds, verbose=0)
            losses.append([history.loss[-1] for history in histories])
        self.losses = np.array(losses)


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
