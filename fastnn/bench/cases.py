"""What the benchmarks measure, shared by the pytest-benchmark suites in benchmarks/ and
by ``fastnn bench``:

- kernels: every kernel of every backend on layer-shaped arrays, with GFLOP/s
  and the share of this machine's GEMM rate measured in the same run;
- training modes: samples/s of full-batch, mini-batch and online SGD, and the
  time to reach a test accuracy on the MNIST digits;
- gradient cost: naive central differences against backpropagation as the
  parameter count grows, with the fitted log-log slopes;
- many models: 15 seeds of one configuration trained one fit after another, by
  fastnn.sweep, as one fastnn.Stack and by the peers' stacked models; and the
  configuration study (16 configurations x 15 seeds), stacks against fastnn.sweep.

A case builds its arrays once and hands out a zero-argument callable to time
(fastnn.bench.timing.measure).
"""
import functools
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from .. import aligned, blas, kernels
from ..datasets import load_mnist, ten_points
from ..threads import step_flops
from ..grad import numerical_grad
from ..model import mlp
from ..optim import SGD
from ..sparse import SparseRows
from . import peers
from .timing import SPIN_PAUSE, Timer, gflops, measure

# --- kernels -------------------------------------------------------------------------------

LAYERS = ((784, 256), (256, 128), (128, 10))
BATCHES = (1, 32, 256, 8192)
# The default grid: every batch size on the widest layer, and the other layers at batch 256.
DEFAULT_SHAPES = tuple((batch, 784, 256) for batch in BATCHES) + ((256, 256, 128), (256, 128, 10))
FULL_SHAPES = tuple((batch, n_in, n_out) for n_in, n_out in LAYERS for batch in BATCHES)
# The share of stored entries in the sparse kernels' X: the MNIST digits' (19 %).
SPARSE_DENSITY = 0.19


def kernel_flops(kernel, batch, n_in, n_out):
    """Floating-point operations of the matrix products in one call (2 per multiply-add):
    matmul and dense_forward 2·batch·in·out, dense_backward twice that (dW and dX).
    None for the elementwise kernels, which are bound by memory, not arithmetic."""
    product = 2 * batch * n_in * n_out
    return {"matmul": product, "dense_forward": product, "dense_backward": 2 * product}.get(kernel)


class KernelCase:
    """The arguments of one kernel for a layer of n_in -> n_out units at a batch size.

    matmul, dense_forward and dense_backward get X (batch, n_in), W (n_in, n_out)
    and outputs (dense_backward computes dX too); the activation, softmax and loss
    kernels get (batch, n_out) arrays (relu; labels for softmax_cross_entropy);
    sgd_update (momentum 0.9) and adam_update get flat buffers of the layer's
    n_in·n_out + n_out parameters; csr_dense_forward and csr_dense_backward get X with
    SPARSE_DENSITY of its entries stored, as CSR arrays (their times compare with
    dense_forward's and dense_backward's on the same shape). The dense arrays start on a
    cache line (fastnn.aligned), as fastnn's own buffers do: a figure then does not depend
    on where the allocator put them (a 1 x 784 x 256 matmul: 5 or 11 us).
    """

    def __init__(self, kernel, batch, n_in, n_out, dtype=np.float32, seed=0):
        if kernel not in kernels.KERNELS:
            raise ValueError(f"kernel must be one of {kernels.KERNELS}; got {kernel!r}")
        self.kernel, self.batch, self.n_in, self.n_out = kernel, batch, n_in, n_out
        self.dtype = np.dtype(dtype)
        self.flops = kernel_flops(kernel, batch, n_in, n_out)
        self.args = self._arguments(np.random.default_rng(seed))

    @property
    def shape(self):
        return f"{self.batch}x{self.n_in}->{self.n_out}"

    @property
    def label(self):
        return f"{self.kernel} {self.shape} {self.dtype.name}"

    def _arguments(self, rng):
        batch, n_in, n_out, dtype = self.batch, self.n_in, self.n_out, self.dtype

        def normal(*shape, scale=1.0):
            return aligned.copy((rng.standard_normal(shape) * scale).astype(dtype))

        def empty(*shape):
            return aligned.zeros(shape, dtype)

        X, W, b = normal(batch, n_in), normal(n_in, n_out, scale=n_in ** -0.5), normal(n_out)
        Z = normal(batch, n_out)
        labels = rng.integers(0, n_out, batch)
        onehot = aligned.copy(np.eye(n_out, dtype=dtype)[labels])
        n_params = n_in * n_out + n_out
        relu = kernels.ACTIVATIONS["relu"]
        if self.kernel == "matmul":
            return X, W, empty(batch, n_out)
        if self.kernel == "dense_forward":
            return X, W, b, empty(batch, n_out), relu, 0.01
        if self.kernel == "activation_forward":
            return Z, empty(batch, n_out), relu, 0.01
        if self.kernel == "activation_backward":
            return aligned.copy(np.maximum(Z, 0)), normal(batch, n_out), empty(batch, n_out), relu, 0.01
        if self.kernel == "dense_backward":
            return X, W, Z, empty(n_in, n_out), empty(n_out), empty(batch, n_in)
        if self.kernel.startswith("csr_"):
            rows = SparseRows.from_dense(X * (rng.random((batch, n_in)) < SPARSE_DENSITY))
            csr = (rows.values, rows.indices, rows.indptr)
            if self.kernel == "csr_dense_forward":
                return *csr, W, b, empty(batch, n_out), relu, 0.01
            return *csr, Z, empty(n_in, n_out), empty(n_out)
        if self.kernel == "softmax":
            return Z, empty(batch, n_out)
        if self.kernel == "softmax_cross_entropy":
            return Z, labels, empty(batch, n_out), None
        if self.kernel in ("softmax_cross_entropy_soft", "mse", "bce_with_logits"):
            return Z, onehot, empty(batch, n_out), None
        params, grad = normal(n_params), normal(n_params, scale=1e-3)
        if self.kernel == "sgd_update":
            return params, grad, empty(n_params), 1e-3, 0.9, False, 0.0
        return params, grad, empty(n_params), empty(n_params), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False

    def call(self, backend):
        """A zero-argument callable running the unchecked kernel of ``backend`` on these arrays."""
        kernel, args = getattr(kernels.get_backend(backend).raw, self.kernel), self.args
        return lambda: kernel(*args)


def kernel_results(case, seconds, gemm_gflops):
    """Per-call time, GFLOP/s and % of the GEMM rate (matrix kernels) for one case."""
    result = {"kernel": case.kernel, "shape": case.shape, "dtype": case.dtype.name, "seconds": seconds,
              "flops": case.flops, "gflops": None, "percent_of_gemm": None}
    if case.flops is not None:
        result["gflops"] = gflops(case.flops, seconds)
        result["percent_of_gemm"] = 100.0 * result["gflops"] / gemm_gflops
    return result


def gemm_rate(dtype=np.float32, n=2048, repeats=5):
    """GFLOP/s of an n x n x n matrix product (sgemm for float32, dgemm for float64) on the
    BLAS provider fastnn's kernels use: the compute limit they are compared with."""
    product = blas.Product(blas.in_use(), n, n, n, dtype=np.dtype(dtype).type)
    seconds = measure({"gemm": product}, repeats=repeats, min_time=0)["gemm"]
    return gflops(product.flops, seconds)


NUMBA_FIRST_STEP = """
import numpy as np
import fastnn.kernels as K
k = K.get_backend("numba").raw
X, W, b = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32), np.zeros(2, np.float32)
A, dZ, dW, dX = np.empty((4, 2), np.float32), np.empty((4, 2), np.float32), np.empty((3, 2), np.float32), \\
    np.empty((4, 3), np.float32)
k.dense_forward(X, W, b, A, 1, 0.01)
k.softmax_cross_entropy(A, np.zeros(4, np.int64), dZ, None)
k.activation_backward(A, dZ, dZ, 1, 0.01)
k.dense_backward(X, W, dZ, dW, b, dX)
params = np.zeros(8, np.float32)
k.sgd_update(params, params.copy(), params.copy(), 0.1, 0.9, False, 0.0)
"""


def numba_first_step(cache_dir):
    """Wall seconds of a new Python process that imports fastnn and runs the Numba kernels
    of one float32 training step, with the Numba cache in cache_dir (compiling when it is
    empty, loading when a previous run filled it)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    # Run in cache_dir: from a source checkout's root, `python -c` would import the uninstalled tree.
    with Timer() as timer:
        subprocess.run([sys.executable, "-c", NUMBA_FIRST_STEP], env=env, cwd=cache_dir, check=True)
    return timer.seconds


# --- training modes ------------------------------------------------------------------------

NETS = {"784-256-128-10": ([784, 256, 128, 10], "relu"),
        "2-2-3-2": ([2, 2, 3, 2], "tanh"),
        "2-5-5-5-2": ([2, 5, 5, 5, 2], "tanh")}
MODES = ("full", 512, 128, 32, 8, 1)
MODE_SAMPLES = 8192
# SGD with momentum 0.9; rates picked by hand so that every mode reaches the target.
MODE_LEARNING_RATES = {"full": 0.5, 512: 0.2, 128: 0.1, 32: 0.05, 8: 0.02, 1: 0.003}
TARGET_ACCURACY = 0.93
MAX_EPOCHS = {"full": 300}
DEFAULT_MAX_EPOCHS = 30


def mode_name(batch_size):
    if batch_size == "full":
        return "full-batch"
    return "online" if batch_size == 1 else f"mini-batch {batch_size}"


def epoch_samples(batch_size, n_samples=MODE_SAMPLES):
    """Samples per timed epoch: all of them for full-batch, else at most 256 updates' worth."""
    return n_samples if batch_size == "full" else min(n_samples, 256 * batch_size)


class ModeCase:
    """One epoch (samples in order) of SGD with momentum for a net and a batch size on random
    data, by a fastnn backend ('numba', 'cython', 'numpy') or a peer of fastnn.bench.peers
    (PEERS: 'pytorch-1t', 'jax', 'scikit-learn', ...): the same net, optimizer and data for every framework."""

    def __init__(self, net, batch_size, framework=None, dtype=np.float32, n_samples=MODE_SAMPLES, seed=0):
        self.net, self.batch_size = net, batch_size
        self.sizes, activation = NETS[net]
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)
        n = epoch_samples(batch_size, n_samples)
        self.X = rng.standard_normal((n, self.sizes[0])).astype(self.dtype)
        self.y = rng.integers(0, self.sizes[-1], n)
        batch = n if batch_size == "full" else batch_size
        trainers = peers.installed()
        if framework in trainers:
            self.backend = framework
            self.trainer = trainers[framework](self.sizes, activation, batch, "momentum", self.X, self.y)
        else:
            self.backend = kernels.get_backend(framework).name
            self.trainer = peers.FastnnTrainer(self.sizes, activation, batch, "momentum", self.X, self.y,
                                               backend=self.backend)

    @property
    def samples(self):
        return len(self.X)

    @property
    def updates(self):
        return 1 if self.batch_size == "full" else math.ceil(self.samples / self.batch_size)

    @property
    def label(self):
        return f"{self.net} {mode_name(self.batch_size)} {self.backend} {self.dtype.name}"

    def run(self):
        self.trainer.run()


def mode_results(case, seconds):
    return {"net": case.net, "mode": mode_name(case.batch_size), "batch_size": case.batch_size,
            "batch": case.samples if case.batch_size == "full" else case.batch_size,
            "backend": case.backend, "dtype": case.dtype.name, "samples": case.samples,
            "seconds_per_epoch": seconds, "samples_per_second": case.samples / seconds,
            "gflops": gflops(step_flops(case.sizes) * case.samples, seconds)}


def default_data_dir():
    """$FASTNN_DATA, else ../shared/data from the current directory (the repository root)."""
    return os.environ.get("FASTNN_DATA") or str(Path("..", "shared", "data"))


def mnist_split(data_dir=None):
    """The MNIST t10k digits split into their first 8000 for training and last 2000 for
    testing: X_train, y_train, X_test, y_test. FileNotFoundError when absent."""
    X, y = load_mnist(data_dir or default_data_dir(), "t10k")
    return X[:8000], y[:8000], X[8000:], y[8000:]


def time_to_accuracy(data, batch_size, target=TARGET_ACCURACY, net="784-256-128-10", backend=None,
                     lr=None, max_epochs=None, seed=0):
    """Train epoch by epoch until the test accuracy reaches target (or max_epochs).

    Only the training is timed; the test set is scored between epochs, off
    the clock. Returns seconds, epochs, updates, samples seen, the final
    accuracy and whether the target was reached.
    """
    X_train, y_train, X_test, y_test = data
    sizes, activation = NETS[net]
    lr = MODE_LEARNING_RATES[batch_size] if lr is None else lr
    max_epochs = max_epochs or MAX_EPOCHS.get(batch_size, DEFAULT_MAX_EPOCHS)
    model = mlp(sizes, activation=activation, seed=seed)
    optimizer = SGD(lr, momentum=0.9)
    rng = np.random.default_rng(seed)
    backend = kernels.get_backend(backend).name
    seconds, accuracy, epochs = 0.0, 0.0, 0
    with kernels.use_backend(backend):
        while epochs < max_epochs and accuracy < target:
            with Timer() as timer:
                model.fit(X_train, y_train, optimizer=optimizer, epochs=1, batch_size=batch_size, seed=rng, verbose=0)
            seconds += timer.seconds
            epochs += 1
            accuracy = model.evaluate(X_test, y_test)["accuracy"]
    n = len(X_train)
    per_epoch = 1 if batch_size == "full" else math.ceil(n / batch_size)
    return {"net": net, "mode": mode_name(batch_size), "batch_size": batch_size, "backend": backend, "lr": lr,
            "target": target, "seconds": seconds, "epochs": epochs, "updates": epochs * per_epoch,
            "samples": epochs * n, "accuracy": accuracy, "reached": accuracy >= target}


# --- gradient cost -------------------------------------------------------------------------

GRADIENT_WIDTHS = (10, 20, 40, 80, 160, 320)
GRADIENT_BATCH = 64


def one_blas_thread():
    """A context with BLAS limited to one thread. The gradient nets' products are small, and a
    second BLAS thread waiting for a core another process holds can make a call 100x slower."""
    return threadpool_limits(limits=1, user_api="blas")


class GradientCase:
    """A float64 tanh net [width, width, 10] (about width² parameters) and a batch of data,
    with its loss gradient computed naively (central differences) or by backprop."""

    def __init__(self, width, batch=GRADIENT_BATCH, seed=0):
        self.width = width
        rng = np.random.default_rng(seed)
        self.model = mlp([width, width, 10], activation="tanh", dtype=np.float64, seed=seed)
        self.X = rng.standard_normal((batch, width))
        self.y = rng.integers(0, 10, batch)

    @property
    def n_params(self):
        return self.model.n_params

    def naive(self):
        return numerical_grad(self.model, self.X, self.y)

    def backprop(self):
        return self.model.loss_and_grad(self.X, self.y)[1]


def loglog_slope(x, y):
    """Slope of the least-squares line through (log x, log y): the exponent k of y ~ x^k."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def gradient_summary(cases):
    """Per size the naive/backprop ratio; the slopes of naive, backprop and their ratio fitted
    over all sizes, and of naive and backprop over the three largest (where the per-call
    overhead hides the arithmetic least) when there are more than three sizes."""
    params = [case["n_params"] for case in cases]
    ratios = [case["naive_seconds"] / case["backprop_seconds"] for case in cases]
    summary = {"ratios": {str(p): ratio for p, ratio in zip(params, ratios)},
               "ratio_slope": loglog_slope(params, ratios)}
    for method in ("naive", "backprop"):
        seconds = [case[f"{method}_seconds"] for case in cases]
        summary[f"{method}_slope"] = loglog_slope(params, seconds)
        summary[f"{method}_slope_largest"] = loglog_slope(params[-3:], seconds[-3:]) if len(cases) > 3 else None
    return summary


# --- many models ---------------------------------------------------------------------------

MANY_SEEDS = range(15)
# (name, sizes, activation, batch size, optimizer, lr, epochs, data)
MANY_CASES = (
    ("15 seeds of 784-64-32-10, Adam, batch 128, 5 epochs", [784, 64, 32, 10], "relu", 128, "adam", 1e-3, 5,
     "digits"),
    ("15 seeds of 2-5-5-5-2 sigmoid, online SGD, 10-point set", [2, 5, 5, 5, 2], "sigmoid", 1, "sgd", 0.05, 1,
     "ten points"),
)
TEN_POINT_EPOCHS = 2000  # the 10-point set repeated: 20,000 online updates per model


def repeated_ten_points(repeats, dtype=np.float32):
    """The 10-point set of the 2-2-3-2 example, ``repeats`` times in a row."""
    X, y = ten_points()
    return np.tile(X.astype(dtype), (repeats, 1)), np.tile(y.astype(np.int64), repeats)


@functools.cache
def ordered_digits(data_dir):
    """The 8,000 training digits in one seeded order, and the 2,000 test digits."""
    X, y, X_test, y_test = mnist_split(data_dir)
    order = np.random.default_rng(0).permutation(len(X))
    return (X[order], y[order]), (X_test, y_test)


def many_data(source, dtype=np.float32, data_dir=None):
    """The training data of a many-models case: 'digits' (ordered_digits) or 'ten points'
    (the 10-point set TEN_POINT_EPOCHS times)."""
    if source == "ten points":
        return repeated_ten_points(TEN_POINT_EPOCHS, dtype)
    (X, y), _ = ordered_digits(data_dir)
    return X.astype(dtype), y


def measure_many(case, trainers, repeats, dtype=np.float32, data_dir=None, seeds=MANY_SEEDS):
    """({trainer: model-updates/s}, {trainer: seconds}) of one many-models case: medians of
    repeats, the trainers (fastnn.bench.peers.many_trainers) interleaved."""
    name, sizes, activation, batch, optimizer, lr, epochs, source = case
    X, y = many_data(source, dtype, data_dir)
    runs = {framework: make(sizes, activation, batch, optimizer, X, y, seeds=seeds, epochs=epochs, lr=lr).run
            for framework, make in trainers.items()}
    updates = len(seeds) * epochs * -(-len(X) // batch)
    seconds = measure(runs, repeats, min_time=0, pause=SPIN_PAUSE)
    return {framework: updates / s for framework, s in seconds.items()}, seconds


# The configuration study: configurations of 784-width-32-10 drawn from this grid (as a random
# search draws them), each trained over 15 seeds; "full" is the opt-in long case, "quick" its
# smaller variant.
STUDY_GRID = {"activation": ("relu", "tanh", "sigmoid"), "batch": (8, 16, 32, 64, 128, 256),
              "width": (16, 32, 64, 128), "optimizer": peers.OPTIMIZERS}
STUDIES = {"full": {"configurations": 16, "epochs": 10, "samples": 8000},
           "quick": {"configurations": 4, "epochs": 2, "samples": 2000}}


def study_configurations(n, seed=0):
    """n distinct configurations {'sizes', 'activation', 'batch', 'optimizer'} of STUDY_GRID,
    drawn without replacement by a seeded Generator (the same every run)."""
    grid = list(itertools.product(*STUDY_GRID.values()))
    picks = np.random.default_rng(seed).choice(len(grid), n, replace=False)
    return [{"sizes": [784, width, 32, 10], "activation": activation, "batch": int(batch), "optimizer": optimizer}
            for activation, batch, width, optimizer in (grid[i] for i in picks)]


def study_name(study, seeds=len(MANY_SEEDS)):
    plan = STUDIES[study]
    return (f"{plan['configurations']} configurations x {seeds} seeds of 784-(16-128)-32-10, "
            f"{plan['epochs']} epochs of {plan['samples']:,} digits ({study})")


def study_trainer(study, make, dtype=np.float32, data_dir=None, seeds=MANY_SEEDS):
    """The trainer ``make`` (of fastnn.bench.peers.study_trainers) built for the configuration
    study ``study`` (a key of STUDIES) on the digits."""
    plan = STUDIES[study]
    X, y = many_data("digits", dtype, data_dir)
    return make(study_configurations(plan["configurations"]), X[:plan["samples"]], y[:plan["samples"]], seeds,
                plan["epochs"])


def measure_study(study, trainers, repeats, dtype=np.float32, data_dir=None, seeds=MANY_SEEDS):
    """{trainer: seconds} of the configuration study ``study``: medians of repeats, the
    trainers (fastnn.bench.peers.study_trainers) interleaved, after a warm-up run of the
    quick study each (compilation, worker processes)."""
    for make in trainers.values():
        study_trainer("quick", make, dtype, data_dir, seeds).run()
    runs = {name: study_trainer(study, make, dtype, data_dir, seeds).run for name, make in trainers.items()}
    return measure(runs, repeats, min_time=0, warm_up=False, pause=SPIN_PAUSE)
