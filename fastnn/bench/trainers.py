"""fastnn's own trainers for the benchmarks: one fit (FastnnTrainer), fits one after another
(FastnnSeries), fastnn.sweep (FastnnSweep), one Stack.fit (FastnnStack) and the
configuration study (StudySweep, StudyStacks), with the trainer interface, optimizers and
initial weights that fastnn.bench.peers describes and gives its peers."""
import functools
import os

import numpy as np

from .. import blas, kernels
from ..kernels import gemm
from ..model import Stack, mlp
from ..optim import SGD, Adam
from ..sweeps import sweep
from ..threads import available_cores, blas_limit

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
        name = provider or blas.blas_info()["provider"]
        self.config = f"fit, {backend} engine, BLAS provider {name} (threads as fit chooses them)" + (
            f", precision={precision!r}" if precision else "")

    def run(self):
        if self.provider is not None:
            gemm.install(self.provider)
        with blas_limit(available_cores()):
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
