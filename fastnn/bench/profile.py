"""``fastnn profile``: time one kernel on every backend, or split a training step by kernel.

``profile_kernel`` times every backend's variant of one kernel on the same
arrays (interleaved medians). ``profile_step`` runs training steps of the
per-module path (each layer's forward and backward called from Python, as in
fit without the compiled engine) with the backend's kernels wrapped in a
timing proxy, and reports the time of every kernel call site per step and
its share of the step. The proxy exists only while the profiled steps run.
"""
import contextlib
from unittest import mock

import numpy as np

from .. import blas, kernels
from ..grad import forward_backward
from ..losses import SoftmaxCrossEntropy
from ..model import mlp
from ..optim import get_optimizer
from .cases import KernelCase
from .timing import Timer, gflops, measure

OTHER = "Python layer (argument checks, allocations, glue)"


def profile_kernel(kernel, shape, dtype=np.float32, repeats=15, min_time=0.02, backends=None):
    """Median time per call of ``kernel`` on each backend for shape = (batch, n_in, n_out)
    (see fastnn.bench.cases.KernelCase for the arrays each kernel gets). Returns a dict with one row
    per backend: seconds, GFLOP/s (matrix kernels) and speed relative to NumPy."""
    case = KernelCase(kernel, *shape, dtype=dtype)
    backends = backends or kernels.available_backends()
    times = measure({name: case.call(name) for name in backends}, repeats, min_time)
    rows = []
    for name, seconds in times.items():
        rows.append({"backend": name, "seconds": seconds,
                     "gflops": None if case.flops is None else gflops(case.flops, seconds),
                     "speedup_vs_numpy": times["numpy"] / seconds if "numpy" in times else None})
    return {"kernel": kernel, "shape": case.shape, "dtype": case.dtype.name, "flops": case.flops,
            "repeats": repeats, "rows": rows}


def _call_site(kernel, args):
    """A short description of a kernel call: the layer for dense kernels, else the shape."""
    if kernel in ("dense_forward", "dense_backward"):
        X, W = args[0], args[1]
        site = f"{X.shape[0]}x{W.shape[0]}->{W.shape[1]}"
        if kernel == "dense_backward":
            site += " (no dX)" if len(args) < 6 or args[5] is None else ""
        return site
    first = args[0]
    return "x".join(map(str, first.shape)) if isinstance(first, np.ndarray) else ""


class _TimedKernels:
    """Stands in for a backend's raw kernel module: every kernel call is timed into records,
    keyed by (kernel, call site); any other attribute comes from the module."""

    def __init__(self, module, records):
        self._module = module
        for name in kernels.KERNELS:
            setattr(self, name, self._timed(name, getattr(module, name), records))

    @staticmethod
    def _timed(name, kernel, records):
        def timed_kernel(*args):
            with Timer() as timer:
                result = kernel(*args)
            records.setdefault((name, _call_site(name, args)), []).append(timer.seconds)
            return result

        return timed_kernel

    def __getattr__(self, name):
        return getattr(self._module, name)


@contextlib.contextmanager
def timed_backend(name, records):
    """While active, the selected backend is ``name`` with every kernel call timed into records."""
    backend = kernels.Backend(name, _TimedKernels(kernels.get_backend(name).raw, records))
    with mock.patch.object(kernels, "get_backend", lambda requested=None: backend):
        yield backend


def profile_step(sizes, batch_size=128, activation="relu", optimizer="sgd", backend=None,
                 dtype=np.float32, steps=30, seed=0):
    """Where one training step of an MLP goes, kernel call by kernel call.

    A step is what fit does per batch on the per-module path: forward, fused
    softmax cross-entropy and its gradient, backward, one optimizer update.
    The steps run once unprofiled (the step's median time) and once with the
    timing proxy, which gives each call site's time per step and its share of
    the profiled step (means over the faster half of the profiled steps);
    what the kernels do not account for is the Python layer.
    """
    backend = kernels.get_backend(backend).name
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch_size, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], batch_size)
    model = mlp(sizes, activation=activation, dtype=dtype, seed=seed)
    model.train(True)
    loss = SoftmaxCrossEntropy()
    optimizer = get_optimizer(optimizer, lr=1e-3)
    optimizer.bind(model.n_params, model.dtype)

    def step():
        forward_backward(model, X, labels, loss)
        optimizer.step(model.params, model.grads)

    with kernels.use_backend(backend):
        unprofiled = measure({"step": step}, repeats=steps, min_time=0)["step"]
    records, totals = {}, []
    with timed_backend(backend, records):
        step()  # the proxy's first calls, outside the records
        records.clear()
        for _ in range(steps):
            with Timer() as timer:
                step()
            totals.append(timer.seconds)
    # The faster half of the steps, spared the slow phases of a shared machine; means over
    # the same steps keep the rows adding up to the step.
    totals = np.array(totals)
    kept = totals <= np.median(totals)
    total = float(totals[kept].mean())
    rows = []
    for (kernel, site), times in records.items():
        calls = len(times) // steps
        per_step = np.reshape(times, (steps, calls)).sum(axis=1)
        seconds = float(per_step[kept].mean())
        rows.append({"kernel": kernel, "call": site, "calls": calls, "seconds": seconds,
                     "percent": 100.0 * seconds / total})
    kernel_seconds = sum(row["seconds"] for row in rows)
    rows.append({"kernel": OTHER, "call": "", "calls": None, "seconds": total - kernel_seconds,
                 "percent": 100.0 * (total - kernel_seconds) / total})
    return {"model": "-".join(map(str, sizes)), "activation": activation, "batch_size": batch_size,
            "optimizer": type(optimizer).__name__, "backend": backend, "dtype": np.dtype(dtype).name,
            "steps": steps, "step_seconds": unprofiled, "profiled_step_seconds": total, "rows": rows}


def _time(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


def format_kernel(result):
    """The profile_kernel result as a text table."""
    lines = [f"{result['kernel']} {result['shape']} {result['dtype']}: median of {result['repeats']} "
             f"interleaved repeats per backend",
             f"{'backend':<8}{'time/call':>12}{'GFLOP/s':>10}{'vs numpy':>10}"]
    for row in result["rows"]:
        rate = "" if row["gflops"] is None else f"{row['gflops']:.1f}"
        ratio = "" if row["speedup_vs_numpy"] is None else f"{row['speedup_vs_numpy']:.2f}x"
        lines.append(f"{row['backend']:<8}{_time(row['seconds']):>12}{rate:>10}{ratio:>10}")
    return "\n".join(lines)


def profile_blas(batch_size=128):
    """Every BLAS provider's GFLOP/s on the float32 products of one 784-256-128-10 step at
    this batch size, on one BLAS thread and on every core; with the provider in use."""
    info = blas.blas_info()
    cases = {"1": blas.gemm_rates(batch_size, 1), "all": blas.gemm_rates(batch_size, None)}
    return {"batch_size": batch_size, "in_use": info["provider"], "reason": info["reason"],
            "rows": [{"threads": threads, "provider": name, **row}
                     for threads, rates in cases.items() for name, rows in rates.items() for row in rows]}


def format_blas(result):
    """The profile_blas result as a text table: one column per provider and threads."""
    columns = list(dict.fromkeys((row["provider"], row["threads"]) for row in result["rows"]))
    products = list(dict.fromkeys(row["product"] for row in result["rows"]))
    rate = {(row["provider"], row["threads"], row["product"]): row["gflops"] for row in result["rows"]}
    width = max(len(product) for product in products + ["step"])
    head = [f"{name} ({threads} thr)" for name, threads in columns]
    lines = [f"GFLOP/s of the float32 products of a 784-256-128-10 step at batch {result['batch_size']}; "
             f"in use: {result['in_use']} ({result['reason']})",
             f"{'product':<{width}}" + "".join(f"{h:>20}" for h in head)]
    for product in products:
        lines.append(f"{product:<{width}}" + "".join(f"{rate[(*column, product)]:>20.1f}" for column in columns))
    steps = [blas.step_rate([row for row in result["rows"] if (row["provider"], row["threads"]) == column])
             for column in columns]
    lines.append(f"{'step':<{width}}" + "".join(f"{step:>20.1f}" for step in steps))
    return "\n".join(lines)


def format_step(result):
    """The profile_step result as a text table, largest share first."""
    head = (f"{result['model']} {result['activation']}, batch {result['batch_size']}, {result['optimizer']}, "
            f"{result['backend']} backend, {result['dtype']}: one training step "
            f"{_time(result['step_seconds'])} (median of {result['steps']}; "
            f"{_time(result['profiled_step_seconds'])} profiled, faster half)")
    width = max(len(row["kernel"]) for row in result["rows"])
    lines = [head, f"{'kernel':<{width}}  {'call':<22}{'calls':>6}{'time/step':>12}{'%':>7}"]
    for row in sorted(result["rows"], key=lambda row: -row["seconds"]):
        calls = "" if row["calls"] is None else str(row["calls"])
        lines.append(f"{row['kernel']:<{width}}  {row['call']:<22}{calls:>6}{_time(row['seconds']):>12}"
                     f"{row['percent']:>7.1f}")
    lines.append(f"{'total':<{width}}  {'':<22}{'':>6}{_time(result['profiled_step_seconds']):>12}{100.0:>7.1f}")
    return "\n".join(lines)


def parse_sizes(text, count=None):
    """'784,256,128,10' as a list of positive ints (exactly count of them when given)."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or (count is not None and len(sizes) != count):
        what = f"{count} " if count else ""
        raise ValueError(f"expected {what}comma-separated integers >= 1; got {text!r}")
    if count is None and len(sizes) < 2:
        raise ValueError(f"expected at least an input and an output size; got {text!r}")
    return sizes

