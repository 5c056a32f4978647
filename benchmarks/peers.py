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
import importlib.util
import platform
import time
from datetime import date

import numpy as np

import fastnn
from fastnn import engine as engines

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
LEARNING_RATES = {"sgd": 0.01, "adam": 1e-3}


def step_flops_per_sample(sizes):
    """Forward, weight gradients and input gradients (all layers but the first)."""
    products = [a * b for a, b in zip(sizes, sizes[1:])]
    return 2 * sum(products) + 2 * sum(products) + 2 * sum(products[1:])


def data(sizes, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, sizes[0]), dtype=np.float32), rng.integers(0, sizes[-1], n)


def sgemm_runner(n=2048):
    """A run of one n x n x n sgemm through NumPy's BLAS (all cores), and its flops."""
    A, B = (np.random.default_rng(i).random((n, n), dtype=np.float32) for i in range(2))
    out = np.empty((n, n), np.float32)
    return (lambda: np.matmul(A, B, out=out)), 2.0 * n ** 3


def fastnn_runner(backend):
    def make(sizes, activation, batch, optimizer, X, y):
        model = fastnn.mlp(sizes, activation=activation, seed=0)
        lr = LEARNING_RATES[optimizer]
        opt = fastnn.SGD(lr) if optimizer == "sgd" else fastnn.Adam(lr)

        def run():
            with fastnn.use_backend(backend):
                model.fit(X, y, optimizer=opt, epochs=1, batch_size=batch, verbose=0, engine=True)
        return run
    return make


def torch_runner():
    import torch

    def make(sizes, activation, batch, optimizer, X, y):
        torch.manual_seed(0)
        act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}[activation]
        layers = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(act())
        model = torch.nn.Sequential(*layers)
        lr = LEARNING_RATES[optimizer]
        opt = torch.optim.SGD(model.parameters(), lr) if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr)
        loss_fn = torch.nn.CrossEntropyLoss()
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def run():
            for lo in range(0, len(Xt), batch):
                opt.zero_grad()
                loss_fn(model(Xt[lo:lo + batch]), yt[lo:lo + batch]).backward()
                opt.step()
        return run
    return make


def jax_runner():
    import jax
    import jax.numpy as jnp

    def make(sizes, activation, batch, optimizer, X, y):
        act = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[activation]
        keys = jax.random.split(jax.random.PRNGKey(0), len(sizes) - 1)
        params = [(jax.random.normal(k, (a, b)) * np.sqrt(2 / a), jnp.zeros(b))
                  for k, a, b in zip(keys, sizes, sizes[1:])]
        lr = LEARNING_RATES[optimizer]

        def loss_fn(params, x, t):
            for W, b in params[:-1]:
                x = act(x @ W + b)
            W, b = params[-1]
            logits = x @ W + b
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), t[:, None], axis=1))

        grad = jax.grad(loss_fn)

        @jax.jit
        def sgd_step(state, x, t):
            return jax.tree_util.tree_map(lambda p, g: p - lr * g, state, grad(state, x, t))

        @jax.jit
        def adam_step(state, x, t):
            params, m, v, step = state
            g = grad(params, x, t)
            step = step + 1
            m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
            scale = lr * jnp.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + 1e-8), params, m, v)
            return params, m, v, step

        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        state = [params if optimizer == "sgd" else (params, zeros, zeros, 0.0)]
        step = sgd_step if optimizer == "sgd" else adam_step
        Xj, yj = jnp.asarray(X), jnp.asarray(y)
        batches = [(Xj[lo:lo + batch], yj[lo:lo + batch]) for lo in range(0, len(X), batch)]

        def run():
            for x, t in batches:
                state[0] = step(state[0], x, t)
            jax.block_until_ready(state[0])
        return run
    return make


def sklearn_runner():
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def make(sizes, activation, batch, optimizer, X, y):
        model = MLPClassifier(hidden_layer_sizes=sizes[1:-1], activation={"relu": "relu", "sigmoid": "logistic"}[
            activation], solver=optimizer, batch_size=batch, learning_rate_init=LEARNING_RATES[optimizer],
            max_iter=1, shuffle=False, momentum=0.0, random_state=0)

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.partial_fit(X, y, classes=np.arange(sizes[-1]))
        return run
    return make


def frameworks():
    """name -> runner factory, for fastnn's engines and each installed peer."""
    found = {f"fastnn-{name}": fastnn_runner(name) for name in ("numba", "cython")
             if engines.engine_module(name) is not None}
    for name, module, runner in (("pytorch", "torch", torch_runner), ("jax", "jax", jax_runner),
                                 ("scikit-learn", "sklearn", sklearn_runner)):
        if importlib.util.find_spec(module) is not None:
            found[name] = runner()
    return found


def measure_case(case, runners, repeats):
    """Median samples/s per framework for one case, the frameworks interleaved with each
    other and with an sgemm, whose rate (GFLOP/s) comes back under 'sgemm'."""
    name, sizes, activation, batch, optimizer, n = case
    X, y = data(sizes, n)
    sgemm, sgemm_flops = sgemm_runner()
    runs = {"sgemm": sgemm}
    for framework, make in runners.items():
        run = make(sizes, activation, batch, optimizer, X, y)
        run()  # compile, allocate, warm caches
        runs[framework] = run
    times = {framework: [] for framework in runs}
    for _ in range(repeats):
        for framework, run in runs.items():
            start = time.perf_counter()
            run()
            times[framework].append(time.perf_counter() - start)
    rates = {framework: n / np.median(t) for framework, t in times.items()}
    rates["sgemm"] = sgemm_flops / np.median(times["sgemm"]) / 1e9
    return rates


def ten_point_seconds(backend, repeats):
    """Median seconds of fit(X, y, epochs=50_000, batch_size=1, optimizer=SGD) on the
    10-point set of the 2-2-3-2 example with a 2-5-5-5-2 sigmoid net (after a warm-up)."""
    x1 = [0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7]
    x2 = [0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6]
    X, y = np.c_[x1, x2], np.repeat([0, 1], 5)
    times = []
    with fastnn.use_backend(backend):
        fastnn.mlp(SMALL, activation="sigmoid", seed=0).fit(X, y, epochs=2, batch_size=1, optimizer="sgd", verbose=0)
        for _ in range(repeats):
            model = fastnn.mlp(SMALL, activation="sigmoid", seed=0)
            start = time.perf_counter()
            model.fit(X, y, epochs=50_000, batch_size=1, optimizer=fastnn.SGD(0.5))
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", help="substrings of the case names to run")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_info

    blas = {(lib["internal_api"], lib["architecture"], lib["num_threads"]) for lib in threadpool_info()
            if lib["user_api"] == "blas"}
    print(f"{date.today()}  {platform.processor() or platform.machine()}, BLAS {sorted(blas)}")
    runners = frameworks()
    per_sample = step_flops_per_sample(BIG)
    print(f"frameworks: {', '.join(runners)}; {args.repeats} repeats, medians; sgemm measured within each case")
    print(f"{'-'.join(map(str, BIG))}: {per_sample / 1e6:.3f} MFLOP per sample and training step\n")
    header = f"{'case':<32}" + "".join(f"{name:>15}" for name in runners)
    print(header + f"{'sgemm GFLOP/s':>15}   fastnn / best peer")
    for case in CASES:
        if args.cases and not any(part in case[0] for part in args.cases):
            continue
        rates = measure_case(case, runners, args.repeats)
        ours = max(v for k, v in rates.items() if k.startswith("fastnn"))
        peers = {k: v for k, v in rates.items() if k in runners and not k.startswith("fastnn")}
        ratios = ", ".join(f"{ours / v:.2f}x {k}" for k, v in peers.items())
        if case[1] is BIG:
            ratios += f", {ours * per_sample / (rates['sgemm'] * 1e9):.0%} of sgemm"
        line = f"{case[0]:<32}" + "".join(f"{rates[name]:>15,.0f}" for name in runners)
        print(line + f"{rates['sgemm']:>15,.0f}   " + ratios, flush=True)
    for backend in (name[len("fastnn-"):] for name in runners if name.startswith("fastnn-")):
        print(f"10-point set, 50,000 epochs online SGD, fastnn-{backend}: "
              f"{ten_point_seconds(backend, args.repeats):.3f} s")


if __name__ == "__main__":
    main()
