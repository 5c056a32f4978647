"""fastnn against PyTorch, JAX and scikit-learn: training samples per second.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/peers.py [--repeats 5]

Trains the 784-256-128-10 ReLU MLP (float32, softmax cross-entropy, random
MNIST-shaped data) at batch sizes 1 (SGD and Adam), 32, 128 and 8192 (Adam),
and the 2-5-5-5-2 sigmoid net with online SGD, in fastnn (each backend with an
engine) and each installed peer. Every repeat runs all frameworks of a case in
turn (A B A B ...), with an sgemm among them, so they share the machine's
state; the medians, the ratios of fastnn's faster engine to each peer and to
the sgemm rate (the compute limit: 1.007 MFLOP per sample and step for the big
net) are printed.
Peers that are not installed are skipped (`pip install "fastnn[peers]"`).
"""
import argparse
import functools
import platform
import time
from datetime import date

import numpy as np

import fastnn
from fastnn import engine as engines
from fastnn import bench, datasets, peers

BIG = [784, 256, 128, 10]
SMALL = [2, 5, 5, 5, 2]
# (name, sizes, activation, batch size, optimizer, samples per repeat)
CASES = [
    ("batch 1, SGD", BIG, "relu", 1, "sgd", 2000),
    ("batch 1, Adam", BIG, "relu", 1, "adam", 1000),
    ("batch 32, Adam", BIG, "relu", 32, "adam", 8192),
    ("batch 128, Adam", BIG, "relu", 128, "adam", 8192),
    ("batch 8192, Adam", BIG, "relu", 8192, "adam", 8192),
    ("2-5-5-5-2 sigmoid, online SGD", SMALL, "sigmoid", 1, "sgd", 20000),
]


def data(sizes, n, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, sizes[0]), dtype=dtype), rng.integers(0, sizes[-1], n)


def sgemm_runner(n=2048, dtype=np.float32):
    """A run of one n x n x n GEMM through NumPy's BLAS (all cores) in dtype, and its flops."""
    A, B = (np.random.default_rng(i).random((n, n), dtype=dtype) for i in range(2))
    out = np.empty((n, n), dtype)
    return (lambda: np.matmul(A, B, out=out)), 2.0 * n ** 3


def frameworks():
    """name -> trainer factory (fastnn.peers), for fastnn's engines and each installed peer."""
    found = {f"fastnn-{name}": functools.partial(peers.FastnnTrainer, backend=name)
             for name in ("numba", "cython") if engines.engine_module(name) is not None}
    return {**found, **peers.installed()}


def measure_case(case, runners, repeats, dtype=np.float32):
    """Median samples/s per framework for one case, the frameworks interleaved with each
    other and with a GEMM in dtype, whose rate (GFLOP/s) comes back under 'sgemm'."""
    name, sizes, activation, batch, optimizer, n = case
    X, y = data(sizes, n, dtype)
    sgemm, sgemm_flops = sgemm_runner(dtype=dtype)
    runs = {"sgemm": sgemm}
    for framework, make in runners.items():
        runs[framework] = make(sizes, activation, batch, optimizer, X, y).run
    # Each run once untimed (compile, allocate, warm caches), then the repeats in turn,
    # with a pause before each so that the previous framework's threads stop spinning.
    seconds = bench.measure(runs, repeats, min_time=0, pause=bench.SPIN_PAUSE)
    rates = {framework: n / s for framework, s in seconds.items()}
    rates["sgemm"] = sgemm_flops / seconds["sgemm"] / 1e9
    return rates


def ten_point_seconds(backend, repeats, dtype=np.float32):
    """Median seconds of fit(X, y, epochs=50_000, batch_size=1, optimizer=SGD) on the
    10-point set of the 2-2-3-2 example with a 2-5-5-5-2 sigmoid net (after a warm-up)."""
    X, y = datasets.ten_points()
    X = X.astype(dtype)
    times = []
    with fastnn.use_backend(backend):
        fastnn.mlp(SMALL, activation="sigmoid", dtype=dtype, seed=0).fit(X, y, epochs=2, batch_size=1, optimizer="sgd", verbose=0)
        for _ in range(repeats):
            model = fastnn.mlp(SMALL, activation="sigmoid", dtype=dtype, seed=0)
            start = time.perf_counter()
            model.fit(X, y, epochs=50_000, batch_size=1, optimizer=fastnn.SGD(0.5))
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", help="substrings of the case names to run")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype).type
    from threadpoolctl import threadpool_info

    blas = {(lib["internal_api"], lib["architecture"], lib["num_threads"]) for lib in threadpool_info()
            if lib["user_api"] == "blas"}
    print(f"{date.today()}  {platform.processor() or platform.machine()}, BLAS {sorted(blas)}")
    runners = frameworks()
    per_sample = engines.step_flops(BIG)
    print(f"frameworks: {', '.join(runners)}; {args.dtype}; {args.repeats} repeats, medians; "
          f"the GEMM rate measured within each case")
    print(f"{'-'.join(map(str, BIG))}: {per_sample / 1e6:.3f} MFLOP per sample and training step\n")
    header = f"{'case':<32}" + "".join(f"{name:>15}" for name in runners)
    print(header + f"{'GEMM GFLOP/s':>15}   fastnn / each peer")
    for case in CASES:
        if args.cases and not any(part in case[0] for part in args.cases):
            continue
        rates = measure_case(case, runners, args.repeats, dtype)
        ours = max(v for k, v in rates.items() if k.startswith("fastnn"))
        others = {k: v for k, v in rates.items() if k in runners and not k.startswith("fastnn")}
        ratios = ", ".join(f"{ours / v:.2f}x {k}" for k, v in others.items())
        if case[1] is BIG:
            ratios += f", {ours * per_sample / (rates['sgemm'] * 1e9):.0%} of GEMM"
        line = f"{case[0]:<32}" + "".join(f"{rates[name]:>15,.0f}" for name in runners)
        print(line + f"{rates['sgemm']:>15,.0f}   " + ratios, flush=True)
    for backend in (name[len("fastnn-"):] for name in runners if name.startswith("fastnn-")):
        print(f"10-point set, 50,000 epochs online SGD, fastnn-{backend}: "
              f"{ten_point_seconds(backend, args.repeats, dtype):.3f} s")


if __name__ == "__main__":
    main()
