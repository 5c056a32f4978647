"""Benchmark cases and the ``fastnn bench`` runner.

Three groups, shared by the pytest-benchmark suites in benchmarks/ and by
``fastnn bench``:

- kernels: every kernel of every backend on layer-shaped arrays, with GFLOP/s
  and the share of this machine's GEMM rate measured in the same run;
- training modes: samples/s of full-batch, mini-batch and online SGD, and the
  time to reach a test accuracy on the MNIST digits;
- gradient cost: naive central differences against backpropagation as the
  parameter count grows, with the fitted log-log slopes.

A case builds its arrays once and hands out a zero-argument callable to time.
Timing here (``measure``) warms every callable up first, then takes medians
of repeats interleaved across the callables, so that ratios compare
measurements taken side by side on a noisy machine.
"""
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from . import kernels, peers
from .config import config_info
from .datasets import load_mnist
from .grad import numerical_grad
from .model import mlp
from .engine import OWN_TWO_THREAD_FLOPS, step_flops
from .optim import SGD

# --- what the results ran on ---------------------------------------------------------------

# The environment variables that change what the BLAS and the training engine do.
THREAD_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "FASTNN_NUM_THREADS")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def full_grid():
    """Whether the benchmark suites run their full grid (FASTNN_BENCH_FULL=1)."""
    return os.environ.get("FASTNN_BENCH_FULL") == "1"


# pytest-benchmark's time budget per benchmark: short for the default grid, its own default
# (1 s) for the full one.
MAX_TIME = 0.1
MAX_TIME_FULL = 1.0


def machine_record():
    """CPU model and core count, BLAS libraries with kernel and threads (threadpoolctl),
    the OpenBLAS and fastnn thread variables in force, versions and backends: what a result
    ran on."""
    info = config_info()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": info["platform"],
        "python": info["python"],
        "fastnn": info["fastnn"],
        "versions": info["versions"],
        "backends": info["backends_available"],
        "blas": [lib for lib in info["threadpools"] if lib["user_api"] == "blas"],
        "openmp": [lib for lib in info["threadpools"] if lib["user_api"] == "openmp"],
        "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


def blas_summary():
    """The BLAS libraries in one line, e.g. 'openblas 0.3.30 SkylakeX 2 threads'."""
    return "; ".join(f"{lib['internal_api']} {lib['version']} {lib['architecture']} {lib['num_threads']} "
                     f"thread{'' if lib['num_threads'] == 1 else 's'}" for lib in machine_record()["blas"])


def result_info(backend, dtype, **details):
    """The fields every single result carries (pytest-benchmark's extra_info)."""
    return {"backend": backend, "dtype": np.dtype(dtype).name, "cpu": cpu_model(), "cores": os.cpu_count(),
            "blas": blas_summary(), **details}


# --- timing --------------------------------------------------------------------------------

# Idle time between two timed callables that run multi-threaded: a BLAS or OpenMP pool
# spins for a while after its last call (OpenBLAS ~2^28 cycles, about 0.1 s), and would
# take a core from the next callable if that one uses another library's threads.
SPIN_PAUSE = 0.15


def measure(calls, repeats=7, min_time=0.02, warm_up=True, pause=0.0):
    """Median seconds per call of each callable in the dict ``calls``.

    Each callable first runs once untimed (compilation, caches) unless warm_up
    is False. With min_time > 0 it is then timed in batches of enough calls
    to last about min_time (one call otherwise). The repeats go round the
    callables, the first round in the dict's order and each later one in a
    shuffled order (a fixed seed), so that slow phases of a shared machine, and
    what the callable before leaves behind (another library's spinning threads,
    evicted caches), hit all of them alike: in a fixed order one library's
    short fits always came right after scikit-learn's and ran at half speed.
    ``pause`` seconds of sleep before each call (SPIN_PAUSE for callables whose
    thread pools differ).
    """
    numbers = {}
    for name, call in calls.items():
        if warm_up:
            call()
        numbers[name] = 1
        if min_time > 0:
            start = time.perf_counter()
            call()
            numbers[name] = max(1, math.ceil(min_time / max(time.perf_counter() - start, 1e-9)))
    samples = {name: [] for name in calls}
    names = list(calls)
    shuffle = np.random.default_rng(0)
    for repeat in range(repeats):
        for name in names if repeat == 0 else shuffle.permutation(names):
            call, number = calls[name], numbers[name]
            time.sleep(pause)
            start = time.perf_counter()
            for _ in range(number):
                call()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: float(np.median(times)) for name, times in samples.items()}


def gflops(flops, seconds):
    """Billions of floating-point operations per second."""
    return flops / seconds / 1e9


def gemm_rate(dtype=np.float32, n=2048, repeats=5):
    """GFLOP/s of an n x n x n matrix product (sgemm for float32, dgemm for float64)
    through NumPy's BLAS: the compute limit the kernels are compared with."""
    rng = np.random.default_rng(0)
    A, B = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype)
    seconds = measure({"gemm": lambda: np.matmul(A, B, out=out)}, repeats=repeats, min_time=0)["gemm"]
    return gflops(2.0 * n ** 3, seconds)


# --- kernels -------------------------------------------------------------------------------

LAYERS = ((784, 256), (256, 128), (128, 10))
BATCHES = (1, 32, 256, 8192)
# The default grid: every batch size on the widest layer, and the other layers at batch 256.
DEFAULT_SHAPES = tuple((batch, 784, 256) for batch in BATCHES) + ((256, 256, 128), (256, 128, 10))
FULL_SHAPES = tuple((batch, n_in, n_out) for n_in, n_out in LAYERS for batch in BATCHES)


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
    n_in·n_out + n_out parameters.
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
            return (rng.standard_normal(shape) * scale).astype(dtype)

        def empty(*shape):
            return np.empty(shape, dtype)

        X, W, b = normal(batch, n_in), normal(n_in, n_out, scale=n_in ** -0.5), normal(n_out)
        Z = normal(batch, n_out)
        labels = rng.integers(0, n_out, batch)
        onehot = np.eye(n_out, dtype=dtype)[labels]
        n_params = n_in * n_out + n_out
        relu = kernels.ACTIVATIONS["relu"]
        if self.kernel == "matmul":
            return X, W, empty(batch, n_out)
        if self.kernel == "dense_forward":
            return X, W, b, empty(batch, n_out), relu, 0.01
        if self.kernel == "activation_forward":
            return Z, empty(batch, n_out), relu, 0.01
        if self.kernel == "activation_backward":
            return np.maximum(Z, 0), normal(batch, n_out), empty(batch, n_out), relu, 0.01
        if self.kernel == "dense_backward":
            return X, W, Z, empty(n_in, n_out), empty(n_out), empty(batch, n_in)
        if self.kernel == "softmax":
            return Z, empty(batch, n_out)
        if self.kernel == "softmax_cross_entropy":
            return Z, labels, empty(batch, n_out), None
        if self.kernel in ("softmax_cross_entropy_soft", "mse", "bce_with_logits"):
            return Z, onehot, empty(batch, n_out), None
        params, grad = normal(n_params), normal(n_params, scale=1e-3)
        if self.kernel == "sgd_update":
            return params, grad, np.zeros(n_params, dtype), 1e-3, 0.9, False, 0.0
        return params, grad, np.zeros(n_params, dtype), np.zeros(n_params, dtype), 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False

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
    start = time.perf_counter()
    # Run in cache_dir: from a source checkout's root, `python -c` would import the uninstalled tree.
    subprocess.run([sys.executable, "-c", NUMBA_FIRST_STEP], env=env, cwd=cache_dir, check=True)
    return time.perf_counter() - start


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
    data, by a fastnn backend ('numba', 'cython', 'numpy') or a peer of fastnn.peers
    (fastnn.peers.PEERS: 'pytorch-1t', 'jax', 'scikit-learn', ...): the same net, optimizer and data for every framework."""

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
            start = time.perf_counter()
            model.fit(X_train, y_train, optimizer=optimizer, epochs=1, batch_size=batch_size, seed=rng, verbose=0)
            seconds += time.perf_counter() - start
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


# --- the runner ----------------------------------------------------------------------------

# What each plan runs: kernel shapes (batch, in, out); nets and modes for throughput (the peers
# train the peer_nets, all nets when absent; mode_samples replaces MODE_SAMPLES); gradient
# net widths; repeats per measurement and the least time of one timed batch of calls; runs per
# time-to-accuracy mode (0: none); the Numba cold start; the size of the sgemm measurement.
PLANS = {
    "quick": {"kernel_shapes": ((1, 784, 256), (256, 784, 256)), "nets": tuple(NETS), "modes": MODES,
              "peer_nets": ("784-256-128-10",), "mode_samples": 2048, "widths": GRADIENT_WIDTHS[:4],
              "repeats": 3, "min_time": 0.01, "accuracy_runs": 0, "cold_start": False, "gemm_size": 2048},
    "default": {"kernel_shapes": DEFAULT_SHAPES, "nets": tuple(NETS), "modes": MODES,
                "widths": GRADIENT_WIDTHS[:5], "repeats": 7, "min_time": 0.02, "accuracy_runs": 1,
                "cold_start": True, "gemm_size": 2048},
    "full": {"kernel_shapes": FULL_SHAPES, "nets": tuple(NETS), "modes": MODES, "widths": GRADIENT_WIDTHS,
             "repeats": 9, "min_time": 0.05, "accuracy_runs": 3,
             "cold_start": True, "gemm_size": 2048},
}


class Progress:
    """Numbered progress lines on a stream: '[3/40] kernels dense_forward ...: result'."""

    def __init__(self, total, stream=None):
        self.total, self.done, self.stream = total, 0, stream

    def __call__(self, text):
        self.done += 1
        if self.stream is not None:
            print(f"[{self.done}/{self.total}] {text}", file=self.stream, flush=True)


def _plan_size(plan, backends, with_accuracy):
    """The number of progress lines a run of the plan prints."""
    return (1 + len(plan["kernel_shapes"]) * len(kernels.KERNELS) + len(plan["nets"]) * len(plan["modes"])
            + (len(plan["modes"]) if with_accuracy else 0) + len(plan["widths"])
            + (1 if plan["cold_start"] and "numba" in backends else 0))


def run(plan="default", data_dir=None, stream=sys.stderr, backends=None, with_peers=True):
    """Run every case of a plan (a name of PLANS or a dict like them); returns the results
    as a dict ready for JSON. The training modes also run the installed peers (PyTorch, JAX,
    scikit-learn) unless with_peers is false. Progress goes to stream (None: silent)."""
    plan = PLANS[plan] if isinstance(plan, str) else plan
    backends = backends or kernels.available_backends()
    frameworks = list(backends) + (list(peers.installed()) if with_peers else [])
    data, skipped = None, None
    if plan["accuracy_runs"]:
        try:
            data = mnist_split(data_dir)
        except FileNotFoundError as error:
            skipped = f"MNIST digits not found: {error}"
    else:
        skipped = "not part of this plan (--quick)"
    progress = Progress(_plan_size(plan, backends, data is not None), stream)
    results = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_record(),
               "plan": plan, "backends": backends, "frameworks": frameworks}

    n = plan["gemm_size"]
    rates = {"float32": gemm_rate(np.float32, n)}
    results["gemm_gflops"] = rates
    progress(f"sgemm {n}x{n}x{n}: {rates['float32']:.1f} GFLOP/s")

    results["kernels"] = []
    for shape in plan["kernel_shapes"]:
        for kernel in kernels.KERNELS:
            case = KernelCase(kernel, *shape)
            # numpy's BLAS and the compiled backends' (SciPy's) are two thread pools
            pause = SPIN_PAUSE if case.flops is not None and shape[0] > 1 else 0.0
            times = measure({name: case.call(name) for name in backends}, plan["repeats"], plan["min_time"],
                            pause=pause)
            for name, seconds in times.items():
                results["kernels"].append({"backend": name, **kernel_results(case, seconds, rates["float32"])})
            progress(f"kernels {case.label}: " + ", ".join(f"{n} {s * 1e6:.1f} us" for n, s in times.items()))

    results["modes"] = []
    n_samples = plan.get("mode_samples", MODE_SAMPLES)
    for net in plan["nets"]:
        names = frameworks if net in plan.get("peer_nets", plan["nets"]) else backends
        # A net whose full batch can go multi-threaded (the lowest threshold is the Cython engine's
        # own threads'): pause between the frameworks' thread pools.
        pause = SPIN_PAUSE if step_flops(NETS[net][0], n_samples) >= OWN_TWO_THREAD_FLOPS else 0.0
        for batch_size in plan["modes"]:
            cases = {name: ModeCase(net, batch_size, name, n_samples=n_samples) for name in names}
            times = measure({name: case.run for name, case in cases.items()}, plan["repeats"], 0, pause=pause)
            for name, seconds in times.items():
                results["modes"].append(mode_results(cases[name], seconds))
            progress(f"modes {net} {mode_name(batch_size)}: " + ", ".join(
                f"{n} {cases[n].samples / s:,.0f} samples/s" for n, s in times.items()))

    results["time_to_accuracy"] = {"skipped": skipped, "runs": []}
    if data is not None:
        for batch_size in plan["modes"]:
            runs = sorted((time_to_accuracy(data, batch_size) for _ in range(plan["accuracy_runs"])),
                          key=lambda run_result: run_result["seconds"])
            run_result = dict(runs[len(runs) // 2], repeats=len(runs))
            results["time_to_accuracy"]["runs"].append(run_result)
            progress(f"time to {TARGET_ACCURACY:.0%} test accuracy, {mode_name(batch_size)}: "
                     f"{run_result['seconds']:.2f} s (median of {len(runs)}), {run_result['epochs']} epochs, "
                     f"accuracy {run_result['accuracy']:.4f}")

    cases = []
    for width in plan["widths"]:
        case = GradientCase(width)
        # backprop runs first and compiles every kernel the naive gradient calls.
        with one_blas_thread():
            times = measure({"backprop": case.backprop}, plan["repeats"], plan["min_time"])
            times.update(measure({"naive": case.naive}, max(3, plan["repeats"] // 3), 0, warm_up=False))
        cases.append({"width": width, "n_params": case.n_params, "naive_seconds": times["naive"],
                      "backprop_seconds": times["backprop"]})
        progress(f"gradient cost {case.n_params:,} parameters: naive {times['naive']:.4g} s, "
                 f"backprop {times['backprop']:.4g} s, ratio {times['naive'] / times['backprop']:,.0f}")
    results["gradient_cost"] = {"batch": GRADIENT_BATCH, "backend": kernels.get_backend().name, "blas_threads": 1,
                                "cases": cases, **gradient_summary(cases)}

    if plan["cold_start"] and "numba" in backends:
        with tempfile.TemporaryDirectory() as cache:
            cold = numba_first_step(cache)
            cached = numba_first_step(cache)
        results["numba_first_step"] = {"cold_seconds": cold, "cached_seconds": cached}
        progress(f"numba first training step in a new process: {cold:.2f} s compiling, {cached:.2f} s from the cache")
    return results


def write_json(results, path):
    """Write results to path atomically (a temporary file renamed into place)."""
    _atomic_write(Path(path), lambda tmp: tmp.write_text(json.dumps(results, indent=1, default=str)))


def _atomic_write(path, write):
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


# --- plots ---------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    _atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=72, bbox_inches="tight"))
    _pyplot().close(fig)


def plot_throughput(results, path):
    """Samples/s against batch size (online = 1, full-batch = all samples), a line per
    backend and (dashed) peer, a panel per net, log-log."""
    plt = _pyplot()
    nets = list(dict.fromkeys(r["net"] for r in results["modes"]))
    fig, axes = plt.subplots(1, len(nets), figsize=(4.5 * len(nets), 3.6), squeeze=False)
    for ax, net in zip(axes[0], nets):
        rows = [r for r in results["modes"] if r["net"] == net]
        for backend in dict.fromkeys(r["backend"] for r in rows):
            points = sorted((r["batch"], r["samples_per_second"]) for r in rows if r["backend"] == backend)
            peer = backend not in results["backends"]
            ax.plot(*zip(*points), marker="s" if peer else "o", linestyle="--" if peer else "-", label=backend)
        ax.set(xscale="log", yscale="log", title=net, xlabel="batch size (1 = online, last = full batch)",
               ylabel="training samples/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Training throughput, one epoch of fit, {results['machine']['cpu']}")
    _save(fig, path)


def plot_gradient_cost(results, path):
    """Seconds per gradient against parameter count, log-log, with the fitted lines; beside
    it the naive/backprop ratio."""
    plt = _pyplot()
    cost = results["gradient_cost"]
    params = np.array([case["n_params"] for case in cost["cases"]], float)
    fig, (ax, ratio_ax) = plt.subplots(1, 2, figsize=(10, 4))
    seconds = {method: np.array([case[f"{method}_seconds"] for case in cost["cases"]])
               for method in ("naive", "backprop")}
    series = [(ax, "naive", seconds["naive"], "o"), (ax, "backprop", seconds["backprop"], "s"),
              (ratio_ax, "naive / backprop", seconds["naive"] / seconds["backprop"], "^")]
    for axes, label, values, marker in series:
        slope, intercept = np.polyfit(np.log(params), np.log(values), 1)
        line, = axes.plot(params, values, marker, label=f"{label} (fitted slope {slope:.2f})")
        axes.plot(params, np.exp(intercept) * params ** slope, "-", color=line.get_color(), alpha=0.6)
    ax.set(ylabel="seconds per gradient",
           title=f"Gradient cost, batch {cost['batch']}, float64, {cost['backend']}, 1 BLAS thread")
    ratio_ax.set(ylabel="naive / backprop", title="Cost ratio")
    for axes in (ax, ratio_ax):
        axes.set(xscale="log", yscale="log", xlabel="parameters")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    fig.tight_layout()
    _save(fig, path)


def plot_kernels(results, path):
    """Time per call of each kernel, the backends side by side, a panel per shape (float32)."""
    plt = _pyplot()
    rows = results["kernels"]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    names = list(dict.fromkeys(r["kernel"] for r in rows))
    fig, axes = plt.subplots(len(shapes), 1, figsize=(11, 2.8 * len(shapes)), squeeze=False)
    width = 0.8 / len(backends)
    for ax, shape in zip(axes[:, 0], shapes):
        for i, backend in enumerate(backends):
            seconds = {r["kernel"]: r["seconds"] for r in rows if r["shape"] == shape and r["backend"] == backend}
            ax.bar(np.arange(len(names)) + (i - (len(backends) - 1) / 2) * width,
                   [seconds[name] * 1e6 for name in names], width, label=backend)
        ax.set(yscale="log", ylabel="µs per call", title=f"batch x in -> out = {shape}")
        ax.set_axisbelow(True)
        ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=len(backends))
    fig.tight_layout()
    _save(fig, path)


def plot_time_to_accuracy(results, path):
    """Seconds of training to the target test accuracy per mode (bars), epochs on top."""
    plt = _pyplot()
    runs = results["time_to_accuracy"]["runs"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bars = ax.bar([r["mode"] for r in runs], [r["seconds"] for r in runs])
    for bar, r in zip(bars, runs):
        note = f"{r['epochs']} ep" + ("" if r["reached"] else " (not reached)")
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    target = runs[0]["target"]
    ax.set(ylabel="seconds of training", title=f"Time to {target:.0%} test accuracy, MNIST 8k/2k, {runs[0]['backend']}")
    ax.tick_params(axis="x", labelrotation=20)
    _save(fig, path)


def write_outputs(results, out_dir):
    """results.json and the PNG plots of the groups that ran into out_dir; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json"]
    write_json(results, paths[0])
    plots = (("throughput.png", plot_throughput, results["modes"]),
             ("gradient_cost.png", plot_gradient_cost, results["gradient_cost"]["cases"]),
             ("kernels.png", plot_kernels, results["kernels"]),
             ("time_to_accuracy.png", plot_time_to_accuracy, results["time_to_accuracy"]["runs"]))
    for name, plot, rows in plots:
        if rows:
            paths.append(out / name)
            plot(results, paths[-1])
    return paths
