"""fastnn against PyTorch, JAX and scikit-learn, each run the way its experts run it.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/peers.py [--repeats 5]
        [--dtype float64] [--data random|mnist|both] [--only throughput bf16 many accuracy study]
        [--study full|quick]

Three sections by default, every framework training the same net from the same initial weights in
the same batch order (fastnn.bench.peers says how each peer is set up):

- throughput: training samples/s of the 784-256-128-10 ReLU MLP at batch sizes 1 (SGD
  and Adam), 32, 128 and 8192 (Adam), and of the 2-5-5-5-2 sigmoid net with online SGD,
  on random data and on the real MNIST digits (for the tiny net: the 10-point set of
  examples/net_2232.py), with every BLAS provider's sgemm rate measured among them;
- many models: 15 seeds of 784-64-32-10 ReLU (Adam 1e-3, batch 128, 5 epochs on the
  8,000 training digits) and of the 2-5-5-5-2 sigmoid net (online SGD lr 0.05, 2,000
  epochs of the 10-point set): model-updates/s of fastnn one fit after another,
  fastnn.sweep, one fastnn Stack.fit of the 15 (one batch order shared by all, and one
  order per seed; the others train in X's order), JAX vmap + lax.scan and PyTorch with
  bmm over the stacked models;
- time to accuracy: 784-256-128-10 and 784-64-32-10, Adam 1e-3, batch 32 and 128, on
  the 8,000/2,000 split of the real digits (the 8,000 in one seeded order, the same every
  epoch): training seconds and epochs until the test accuracy reaches 96% (evaluation
  timed apart; compilation done before, in a warm-up run);
- bf16: the 784-256-128-10 Adam cases at batch 32, 128 and 8192 with fit's
  precision='bf16' against fastnn float32, PyTorch float32 and PyTorch with its switch that
  sends float32 products through bf16 (torch.backends.mkldnn.matmul.fp32_precision),
  float32 runs only, on CPUs with AVX512-BF16 (elsewhere skipped, with a note);
- study (opt-in, minutes: --only study): 240 trainings, 16 configurations x 15 seeds of
  784-width-32-10 (activation relu/tanh/sigmoid, batch 8-256, width 16-128, SGD/momentum/
  Adam; fastnn.bench.cases.study_configurations), 10 epochs of the 8,000 digits: one
  fastnn Stack.fit per configuration against fastnn.sweep of the 240 single fits, each
  model shuffled by its seed; --study quick: 4 configurations, 2 epochs of 2,000 digits.

Repeats go round the frameworks in shuffled order (A B A B, fastnn.bench.measure);
medians are printed, with the ratio of fastnn's best to the best peer. The JAX form with
a jitted step per Python call is shown as a labelled extra column, never as the peer a
ratio is taken against. The real digits come from --data-dir, else $FASTNN_DATA, else
../shared/data; a missing set skips what needs it, with a note. Peers that are not
installed are skipped (`pip install "fastnn[peers]"`). FASTNN_BENCH_BACKENDS=numba (a
comma-separated list) times only the fastnn backends it names; FASTNN_BENCH_BLAS=openblas,mkl
times each fastnn backend on each BLAS provider named (default: the provider in use). The
sgemm rate is the best provider's, measured in the same run.
"""
import argparse
import functools
import os
import time
from datetime import date

import numpy as np
from threadpoolctl import threadpool_info

from fastnn import bench
from fastnn import blas
from fastnn.kernels import gemm
from fastnn.bench import MANY_CASES, STUDIES, measure_many, measure_study, ordered_digits, peers, \
    repeated_ten_points, study_name
from fastnn import engine as engines
from fastnn.threads import step_flops

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
ACCURACY_NETS = ([784, 256, 128, 10], [784, 64, 32, 10])
ACCURACY_BATCHES = (32, 128)
TARGET_ACCURACY = 0.96
MAX_EPOCHS = 50
EXTRA = "jax step/call (extra)"


def data(sizes, n, dtype=np.float32, seed=0):
    """Random data of the net's shape: X uniform in [0, 1), labels uniform."""
    rng = np.random.default_rng(seed)
    return rng.random((n, sizes[0]), dtype=dtype), rng.integers(0, sizes[-1], n)


def real_data(sizes, n, dtype, data_dir):
    """The real data of a case: the first n of the 10,000 digits (the 8,000 training digits
    in their seeded order, then the 2,000 test digits) for MNIST-shaped nets, the 10-point
    set repeated to n samples for the tiny net."""
    if sizes[0] == 2:
        return repeated_ten_points(n // 10, dtype)
    (X, y), (X_test, y_test) = ordered_digits(data_dir)
    return np.concatenate([X, X_test])[:n].astype(dtype), np.concatenate([y, y_test])[:n]


def sgemm_runners(n=2048, dtype=np.float32):
    """{"sgemm <provider>": a run of one n x n x n GEMM in dtype on that BLAS provider (all
    cores)} for every provider on this machine that loads, and the GEMM's flops."""
    products = {}
    for name in blas.available():
        try:
            products[f"sgemm {name}"] = blas.Product(blas.load(name), n, n, n, dtype=dtype)
        except gemm.ProviderError as error:
            print(f"  (no sgemm of {name}: {error})", flush=True)
    return products, 2.0 * n ** 3


def providers():
    """The BLAS providers fastnn's columns run on: those named in $FASTNN_BENCH_BLAS
    (comma-separated), else [None], the provider in use."""
    named = [name.strip() for name in os.environ.get("FASTNN_BENCH_BLAS", "").split(",") if name.strip()]
    return named or [None]


def fastnn_backends():
    """fastnn's backends with an engine, those named in $FASTNN_BENCH_BACKENDS (comma-separated) when set."""
    chosen = os.environ.get("FASTNN_BENCH_BACKENDS", "numba,cython").split(",")
    return [name for name in ("numba", "cython") if name in chosen and engines.engine_module(name) is not None]


def frameworks(extra=False):
    """name -> single-model trainer factory (fastnn.bench.peers): fastnn's engines, each
    installed peer, and with ``extra`` the step-per-call JAX."""
    found = {f"fastnn-{name}" + (f"/{provider}" if provider else ""):
             functools.partial(peers.FastnnTrainer, backend=name, provider=provider)
             for name in fastnn_backends() for provider in providers()}
    found.update(peers.installed())
    if extra and "jax" in found:
        found[EXTRA] = peers.JaxStepTrainer
    return found


def stack_frameworks():
    """name -> many-models trainer factory taking seeds=."""
    return peers.many_trainers(fastnn_backends())


def best(rates, peer):
    """(name, value) of the highest rate among fastnn's (peer False) or the peers' columns."""
    chosen = {k: v for k, v in rates.items() if k.startswith("fastnn") != peer and not k.startswith("sgemm")
              and k != EXTRA}
    name = max(chosen, key=chosen.get)
    return name, chosen[name]


def measure_case(case, runners, repeats, dtype=np.float32, source="random", data_dir=None):
    """Median samples/s per framework for one case, the frameworks interleaved with each
    other and with a GEMM in dtype on each BLAS provider, whose rates (GFLOP/s) come back
    under 'sgemm <provider>', the best of them under 'sgemm' and its name under
    'sgemm_provider'."""
    name, sizes, activation, batch, optimizer, n = case
    X, y = data(sizes, n, dtype) if source == "random" else real_data(sizes, n, dtype, data_dir)
    sgemms, sgemm_flops = sgemm_runners(dtype=dtype)
    in_use = blas.in_use()
    runs = dict(sgemms)
    for framework, make in runners.items():
        runs[framework] = make(sizes, activation, batch, optimizer, X, y).run
    # Each run once untimed (compile, allocate, warm caches), then the repeats in turn,
    # with a pause before each so that the previous framework's threads stop spinning.
    seconds = bench.measure(runs, repeats, min_time=0, pause=bench.SPIN_PAUSE)
    gemm.install(in_use)  # as it was before the trainers of named providers ran
    rates = {framework: len(X) / s for framework, s in seconds.items()}
    for product in sgemms:
        rates[product] = sgemm_flops / seconds[product] / 1e9
    best_product = max(sgemms, key=rates.get)
    rates["sgemm"], rates["sgemm_provider"] = rates[best_product], best_product.split()[1]
    return rates


def time_to_accuracy(make, train, test, target=TARGET_ACCURACY, max_epochs=MAX_EPOCHS):
    """(training seconds, epochs, evaluation seconds) of epochs until the test accuracy
    reaches target (epochs None when max_epochs do not)."""
    trainer, train_seconds, eval_seconds = make(*train), 0.0, 0.0
    for epoch in range(1, max_epochs + 1):
        with bench.Timer() as training:
            trainer.run()
        with bench.Timer() as evaluation:
            accuracy = trainer.accuracy(*test)
        train_seconds += training.seconds
        eval_seconds += evaluation.seconds
        if accuracy >= target:
            return train_seconds, epoch, eval_seconds
    return train_seconds, None, eval_seconds


def measure_accuracy(sizes, batch, runners, repeats, dtype, data_dir):
    """Per framework the median (training seconds, epochs, evaluation seconds) to reach
    TARGET_ACCURACY, the frameworks in shuffled order in each repeat."""
    (X, y), (X_test, y_test) = ordered_digits(data_dir)
    train, test = (X.astype(dtype), y), (X_test.astype(dtype), y_test)
    makers = {name: functools.partial(make, sizes, "relu", batch, "adam") for name, make in runners.items()}
    for make in makers.values():  # compile and warm up
        make(X[:2 * batch].astype(dtype), y[:2 * batch]).run()
    results = {name: [] for name in makers}
    shuffle = np.random.default_rng(0)
    for _ in range(repeats):
        for name in shuffle.permutation(list(makers)):
            time.sleep(bench.SPIN_PAUSE)
            results[name].append(time_to_accuracy(makers[name], train, test))
    return {name: (float(np.median([r[0] for r in runs])), runs[len(runs) // 2][1],
                   float(np.median([r[2] for r in runs]))) for name, runs in results.items()}


def describe(dtype):
    """What the results ran on: date, CPU, BLAS, and each framework's configuration."""
    libraries = sorted({(lib["internal_api"], lib["version"], str(lib.get("architecture")), lib["num_threads"])
                        for lib in threadpool_info() if lib["user_api"] == "blas"})
    info = blas.blas_info()
    lines = [f"{date.today()}  {bench.cpu_model()}, {os.cpu_count()} cores; {np.dtype(dtype).name}; "
             f"BLAS libraries {libraries}; fastnn's provider {info['provider']} ({info['reason']})"]
    X, y = data([2, 3, 2], 8, dtype)
    stacks = stack_frameworks()
    for name, make in {**frameworks(extra=True), **stacks}.items():
        try:
            config = make([2, 3, 2], "relu", 4, "sgd", X, y, **({"seeds": [0]} if name in stacks else {})).config
        except Exception as error:  # a broken peer install: say so, run the rest
            config = f"unavailable ({type(error).__name__}: {error})"
        lines.append(f"  {name}: {config}")
    return "\n".join(lines)


def table(title, columns, rows):
    """A Markdown table: title row of columns, then (label, cells) rows."""
    lines = [f"| {title} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def selected(args, name):
    """Whether the throughput case called name is among those --cases asks for."""
    return not args.cases or any(part in name for part in args.cases)


def run_throughput(args, dtype, sources):
    runners = frameworks(extra=True)
    per_sample = step_flops(BIG)
    for source in sources:
        rows = []
        for case in CASES:
            if not selected(args, case[0]):
                continue
            rates = measure_case(case, runners, args.repeats, dtype, source, args.data_dir)
            (_, our_rate), (peer, peer_rate) = best(rates, False), best(rates, True)
            ratio = f"{our_rate / peer_rate:.2f}× {peer}"
            if case[1] is BIG:
                ratio += f", {our_rate * per_sample / (rates['sgemm'] * 1e9):.0%} of {rates['sgemm_provider']} sgemm"
            rows.append((case[0], [f"{rates[name]:,.0f}" for name in runners]
                         + [f"{rates['sgemm']:,.0f} {rates['sgemm_provider']}", ratio]))
            print(f"  {case[0]}: {ratio}", flush=True)
        print("\n" + table(f"samples/s, {source} data", list(runners) + ["best sgemm GFLOP/s", "best fastnn ÷ best peer"],
                           rows) + "\n", flush=True)


BF16_CASES = ("batch 32, Adam", "batch 128, Adam", "batch 8192, Adam")


def bf16_frameworks():
    """name -> trainer factory of the bf16 section: fastnn's and PyTorch's trainers of
    frameworks(), and each fastnn engine with precision='bf16' and PyTorch with its bf16
    switch."""
    found = {name: make for name, make in frameworks().items() if name.startswith(("fastnn", "pytorch"))}
    found.update({f"fastnn-{name} bf16": functools.partial(peers.FastnnTrainer, backend=name, precision="bf16")
                  for name in fastnn_backends()})
    return {**found, **peers.installed_bf16()}


def run_bf16(args, dtype, sources):
    reason = gemm.bf16_unsupported() or (dtype != np.float32 and "bf16 products are for float32 models")
    if reason:
        print(f"note: no bf16 section ({reason})\n")
        return
    runners = bf16_frameworks()

    def top(rates, fastnn, bf16):
        chosen = {k: v for k, v in rates.items() if k in runners and k.startswith("fastnn") == fastnn
                  and k.endswith(" bf16") == bf16}
        return max(chosen.values()) if chosen else float("nan")

    for source in sources:
        rows = []
        for case in CASES:
            if case[0] not in BF16_CASES or not selected(args, case[0]):
                continue
            rates = measure_case(case, runners, args.repeats, dtype, source, args.data_dir)
            ours = top(rates, True, True)
            ratio = (f"{ours / top(rates, True, False):.2f}× fastnn float32, "
                     f"{ours / top(rates, False, True):.2f}× PyTorch bf16, {ours / top(rates, False, False):.2f}× PyTorch")
            rows.append((case[0], [f"{rates[name]:,.0f}" for name in runners] + [ratio]))
            print(f"  {case[0]} bf16: {ratio}", flush=True)
        print("\n" + table(f"samples/s, bf16 products, {source} data", list(runners) + ["best fastnn bf16 ÷"],
                           rows) + "\n", flush=True)


def run_many(args, dtype, have_digits):
    runners = stack_frameworks()
    rows = []
    for case in MANY_CASES:
        if case[-1] == "digits" and not have_digits:
            continue
        rates, seconds = measure_many(case, runners, args.repeats, dtype, args.data_dir)
        (_, our_rate), (peer, peer_rate) = best(rates, False), best(rates, True)
        rows.append((case[0], [f"{rates[name]:,.0f} ({seconds[name]:.2f} s)" for name in runners]
                     + [f"{our_rate / peer_rate:.2f}× {peer}"]))
        print(f"  {case[0]}: {rows[-1][1][-1]}", flush=True)
    print("\n" + table("model-updates/s (seconds per study)", list(runners) + ["best fastnn ÷ best peer"], rows)
          + "\n", flush=True)


def run_study(args, dtype):
    """The configuration study (opt-in: --only study; --study quick for the small variant)."""
    trainers = peers.study_trainers(fastnn_backends()[-1])
    seconds = measure_study(args.study, trainers, args.repeats, dtype, args.data_dir)
    stacks, swept = seconds[next(iter(trainers))], seconds["fastnn.sweep"]
    row = [f"{s:.2f} s" for s in seconds.values()] + [f"{swept / stacks:.2f}×"]
    print("\n" + table("seconds per study", list(trainers) + ["sweep ÷ stacks"], [(study_name(args.study), row)])
          + "\n", flush=True)


def run_accuracy(args, dtype):
    runners = {name: make for name, make in frameworks().items()}
    rows = []
    for sizes in ACCURACY_NETS:
        for batch in ACCURACY_BATCHES:
            results = measure_accuracy(sizes, batch, runners, args.repeats, dtype, args.data_dir)
            reached = {name: r[0] for name, r in results.items() if r[1] is not None}
            label = f"{'-'.join(map(str, sizes))}, batch {batch}"
            cells = [f"{r[0]:.2f} s, {r[1] or f'>{MAX_EPOCHS}'} ep (eval {r[2]:.2f} s)" for r in results.values()]
            ratio = "—"
            if any(k.startswith("fastnn") for k in reached) and any(not k.startswith("fastnn") for k in reached):
                ours = min(v for k, v in reached.items() if k.startswith("fastnn"))
                peer = min((v, k) for k, v in reached.items() if not k.startswith("fastnn"))
                ratio = f"{peer[0] / ours:.2f}× {peer[1]}"
            rows.append((label, cells + [ratio]))
            print(f"  {label}: {ratio}", flush=True)
    print("\n" + table(f"seconds to {TARGET_ACCURACY:.0%} test accuracy", list(runners) + ["best peer ÷ best fastnn"],
                       rows) + "\n", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", nargs="*", help="substrings of the throughput case names to run")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--data", choices=["random", "mnist", "both"], default="both")
    parser.add_argument("--data-dir", default=bench.default_data_dir(),
                        help="directory with the MNIST t10k IDX files (default: $FASTNN_DATA, else ../shared/data)")
    parser.add_argument("--only", nargs="*", choices=["throughput", "bf16", "many", "accuracy", "study"],
                        default=["throughput", "bf16", "many", "accuracy"],
                        help="sections to run (default: all but study, the long configuration study)")
    parser.add_argument("--study", choices=list(STUDIES), default="full",
                        help="the configuration study's size (with --only study; default: %(default)s)")
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype).type
    try:
        ordered_digits(args.data_dir)
        have_digits = True
    except (FileNotFoundError, ValueError) as error:
        have_digits = False
        print(f"note: no MNIST digits ({error}); only random data\n")
    print(describe(dtype) + f"\n{args.repeats} repeats, medians\n", flush=True)
    sources = {"random": ["random"], "mnist": ["mnist"], "both": ["random", "mnist"]}[args.data]
    if "throughput" in args.only:
        run_throughput(args, dtype, [s for s in sources if s == "random" or have_digits])
    if "bf16" in args.only:
        run_bf16(args, dtype, [s for s in sources if s == "random" or have_digits])
    if "many" in args.only:
        run_many(args, dtype, have_digits)
    if have_digits and "accuracy" in args.only:
        run_accuracy(args, dtype)
    if have_digits and "study" in args.only:
        run_study(args, dtype)


if __name__ == "__main__":
    main()
