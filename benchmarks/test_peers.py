"""The peers comparison (benchmarks/peers.py) as pytest-benchmark groups: every
throughput case on random and on the real digits, the many-models cases and the time to
96% test accuracy, fit(precision='bf16') against float32 and PyTorch's bf16 switch, for fastnn's engines and each installed peer set up as its experts
run it (fastnn.bench.peers). Peers that are not installed, and the real digits when absent,
are skipped with a reason. The rate lands in extra_info.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks/test_peers.py --benchmark-only

The configuration study (minutes) runs only when FASTNN_BENCH_STUDY names its size,
full or quick (fastnn.bench.STUDIES).
"""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnn import bench
from fastnn.bench import peers as peers_module
from fastnn.bench.peers import BF16_PEERS, PEERS, STACK_PEERS
from fastnn.kernels import gemm

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402

MODULES = {name: module for name, (module, _) in {**PEERS, **STACK_PEERS, **BF16_PEERS}.items()}


def available(framework, found):
    if framework not in found:
        module = MODULES.get(framework, "fastnn")
        pytest.skip(f"{module} is not installed" if importlib.util.find_spec(module) is None
                    else f"{framework} has no engine")
    return found[framework]


def real_digits():
    try:
        return bench.ordered_digits(bench.default_data_dir())
    except (FileNotFoundError, ValueError) as error:
        pytest.skip(f"the real MNIST digits are not there: {error}")


@pytest.mark.parametrize("source", ["random", "mnist"])
@pytest.mark.parametrize("framework", ["fastnn-numba", "fastnn-cython", *PEERS, peers.EXTRA])
@pytest.mark.parametrize("case", peers.CASES, ids=[case[0] for case in peers.CASES])
def test_peers(benchmark, case, framework, source):
    throughput(benchmark, "peers", case, framework, available(framework, peers.frameworks(extra=True)), source)


def throughput(benchmark, group, case, framework, make, source):
    """Time one epoch of a throughput case on random data or the real digits."""
    name, sizes, activation, batch, optimizer, n = case
    if source == "random":
        X, y = peers.data(sizes, n)
    else:
        real_digits()
        X, y = peers.real_data(sizes, n, np.float32, bench.default_data_dir())
    run = make(sizes, activation, batch, optimizer, X, y).run
    run()  # compile, allocate, warm caches
    benchmark.group = f"{group}: {name}, {source} data"
    benchmark.extra_info.update(framework=framework, samples=len(X), cpu=bench.cpu_model())
    benchmark.pedantic(run, rounds=5, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_second"] = len(X) / benchmark.stats.stats.median


BF16_CASES = [case for case in peers.CASES if case[0] in peers.BF16_CASES]


@pytest.mark.skipif(gemm.bf16_unsupported() is not None, reason=f"no bf16 products: {gemm.bf16_unsupported()}")
@pytest.mark.parametrize("source", ["random", "mnist"])
@pytest.mark.parametrize("framework", [f"fastnn-{backend}{precision}" for backend in ("numba", "cython")
                                       for precision in ("", " bf16")]
                         + [name for name in PEERS if name.startswith("pytorch")] + list(BF16_PEERS))
@pytest.mark.parametrize("case", BF16_CASES, ids=[case[0] for case in BF16_CASES])
def test_bf16(benchmark, case, framework, source):
    """fit(precision='bf16') against float32 and against PyTorch with its bf16 switch."""
    throughput(benchmark, "bf16", case, framework, available(framework, peers.bf16_frameworks()), source)


STACKS = [f"fastnn-{backend} stack, {order} order" for backend in ("numba", "cython")
          for order in peers_module.FastnnStack.ORDERS]


@pytest.mark.parametrize("framework", ["fastnn-numba one by one", "fastnn-cython one by one", "fastnn.sweep",
                                       *STACKS, *STACK_PEERS])
@pytest.mark.parametrize("case", bench.MANY_CASES, ids=[case[0] for case in bench.MANY_CASES])
def test_many_models(benchmark, case, framework):
    make = available(framework, peers.stack_frameworks())
    name, sizes, activation, batch, optimizer, lr, epochs, source = case
    if source == "digits":
        real_digits()
    X, y = bench.many_data(source, data_dir=bench.default_data_dir())
    run = make(sizes, activation, batch, optimizer, X, y, seeds=bench.MANY_SEEDS, epochs=epochs, lr=lr).run
    run()
    benchmark.group = f"many models: {name}"
    updates = len(bench.MANY_SEEDS) * epochs * -(-len(X) // batch)
    benchmark.extra_info.update(framework=framework, model_updates=updates, cpu=bench.cpu_model())
    benchmark.pedantic(run, rounds=3, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["model_updates_per_second"] = updates / benchmark.stats.stats.median


@pytest.mark.parametrize("framework", ["stacks", "fastnn.sweep"])
def test_configuration_study(benchmark, framework):
    study = os.environ.get("FASTNN_BENCH_STUDY")
    if study not in bench.STUDIES:
        pytest.skip(f"the configuration study runs with FASTNN_BENCH_STUDY={' or '.join(bench.STUDIES)}")
    real_digits()
    trainers = peers_module.study_trainers(peers.fastnn_backends()[-1])
    name = next(n for n in trainers if framework in n)
    bench.study_trainer("quick", trainers[name], data_dir=bench.default_data_dir()).run()  # compile, start workers
    trainer = bench.study_trainer(study, trainers[name], data_dir=bench.default_data_dir())
    benchmark.group = f"configuration study: {bench.study_name(study)}"
    benchmark.extra_info.update(framework=name, cpu=bench.cpu_model())
    benchmark.pedantic(trainer.run, rounds=1, iterations=1)


@pytest.mark.parametrize("framework", ["fastnn-numba", "fastnn-cython", *PEERS])
@pytest.mark.parametrize("batch", peers.ACCURACY_BATCHES)
@pytest.mark.parametrize("sizes", peers.ACCURACY_NETS, ids=lambda sizes: "-".join(map(str, sizes)))
def test_time_to_accuracy(benchmark, sizes, batch, framework):
    make = available(framework, peers.frameworks())
    train, test = real_digits()
    make(sizes, "relu", batch, "adam", train[0][:2 * batch], train[1][:2 * batch]).run()  # compile
    benchmark.group = f"time to {peers.TARGET_ACCURACY:.0%}: {'-'.join(map(str, sizes))}, batch {batch}"
    result = benchmark.pedantic(peers.time_to_accuracy, args=(lambda X, y: make(sizes, "relu", batch, "adam", X, y),
                                                               train, test), rounds=1, iterations=1)
    benchmark.extra_info.update(framework=framework, training_seconds=result[0], epochs=result[1],
                                evaluation_seconds=result[2], cpu=bench.cpu_model())
