"""The ``fastnn`` command: ``fastnn demo`` and ``fastnn config``."""
import argparse
import statistics
import sys
import time

import numpy as np

from . import kernels
from .config import show_config


def _median_seconds(run, repeats):
    run()  # compile / warm caches outside the timed region
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def demo(batch=256, n_in=784, n_out=256, dtype=np.float32, repeats=20, seed=0, file=None):
    """One training step of a dense ReLU layer under a softmax cross-entropy
    loss on every backend; prints each one's loss, its deviation from the NumPy
    reference and its median time, and returns {backend: (loss, seconds)}."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, n_in)).astype(dtype)
    labels = rng.integers(0, n_out, batch)
    n_weights = n_in * n_out
    initial = np.concatenate([rng.standard_normal(n_weights) * np.sqrt(2 / n_in), np.zeros(n_out)])
    A, grad, dZ = (np.empty((batch, n_out), dtype) for _ in range(3))
    flat_grad = np.empty(n_weights + n_out, dtype)
    dW, db = flat_grad[:n_weights].reshape(n_in, n_out), flat_grad[n_weights:]

    def step(backend, params, velocity):
        W, b = params[:n_weights].reshape(n_in, n_out), params[n_weights:]
        backend.dense_forward(X, W, b, A, "relu")
        loss = backend.softmax_cross_entropy(A, labels, grad)
        backend.activation_backward(A, grad, dZ, "relu")
        backend.dense_backward(X, W, dZ, dW, db)
        backend.sgd_update(params, flat_grad, velocity, 0.1, 0.9, False, 0.0)
        return loss

    print(f"one training step: dense {batch}x{n_in} -> {n_out} relu, softmax cross-entropy, "
          f"backward, SGD with momentum; {np.dtype(dtype).name}", file=file)
    results, reference_params = {}, None
    for name in ["numpy"] + [n for n in kernels.available_backends() if n != "numpy"]:
        backend = kernels.get_backend(name)
        params, velocity = initial.astype(dtype), np.zeros(initial.size, dtype)
        loss = step(backend, params, velocity)
        if reference_params is None:
            reference_params = params.copy()
        error = np.abs(params - reference_params).max()
        seconds = _median_seconds(lambda: step(backend, params, velocity), repeats)
        results[name] = (loss, seconds)
        print(f"  {name:7s} loss {loss:.6f}  max |params - numpy| {error:.1e}  "
              f"median {seconds * 1e3:7.3f} ms", file=file)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run one training step on every kernel backend")
    demo_parser.add_argument("--batch-size", type=int, default=256)
    demo_parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    commands.add_parser("config", help="show backends, BLAS, OpenMP, Numba and versions")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.batch_size < 1:
            parser.error(f"--batch-size must be >= 1; got {args.batch_size}")
        demo(batch=args.batch_size, dtype=np.dtype(args.dtype))
    else:
        show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
