"""Training-mode benchmarks: full-batch vs mini-batch 512/128/32/8 vs online SGD.

Throughput: one epoch of fit on random data per net, mode and backend
(samples/s in extra_info), grouped by net and dtype. Time to accuracy: seconds
of training until the MNIST t10k digits' last 2000 reach the target accuracy
when trained on the first 8000, per mode; skipped when the digits are absent.
"""
from pathlib import Path

import numpy as np
import pytest

from fastnn import bench, kernels

FULL = bench.full_grid()
DATA_DIR = Path(__file__).parents[1].parent / "shared" / "data"

pytestmark = pytest.mark.benchmark(max_time=bench.MAX_TIME_FULL if FULL else bench.MAX_TIME)


@pytest.mark.parametrize("batch_size", bench.MODES, ids=bench.mode_name)
@pytest.mark.parametrize("net", bench.NETS)
@pytest.mark.parametrize("backend", kernels.available_backends())
def test_throughput(benchmark, backend, net, batch_size):
    case = bench.ModeCase(net, batch_size, backend)
    case.run()  # compile and warm caches outside the timed region
    benchmark.group = f"modes {net} float32"
    benchmark.extra_info.update(bench.result_info(backend, np.float32, net=net, mode=bench.mode_name(batch_size),
                                                  samples_per_epoch=case.samples, updates_per_epoch=case.updates))
    benchmark(case.run)
    if benchmark.stats is not None:
        result = bench.mode_results(case, benchmark.stats.stats.median)
        benchmark.extra_info.update(samples_per_second=result["samples_per_second"], gflops=result["gflops"])


@pytest.fixture(scope="module")
def mnist():
    try:
        return bench.mnist_split(DATA_DIR)
    except FileNotFoundError as error:
        pytest.skip(f"the MNIST t10k digits are not in {DATA_DIR}: {error}")


@pytest.mark.parametrize("batch_size", bench.MODES, ids=bench.mode_name)
def test_time_to_accuracy(benchmark, mnist, batch_size):
    """The benchmark's own time includes scoring the test set between epochs; extra_info's
    train_seconds is the training alone."""
    backend = kernels.get_backend().name
    benchmark.group = f"time to {bench.TARGET_ACCURACY:.0%} test accuracy, MNIST 784-256-128-10"
    benchmark.extra_info.update(bench.result_info(backend, np.float32, mode=bench.mode_name(batch_size)))
    bench.ModeCase("784-256-128-10", batch_size, backend, n_samples=len(mnist[0])).run()  # warm-up
    result = benchmark.pedantic(bench.time_to_accuracy, args=(mnist, batch_size), kwargs={"backend": backend},
                                rounds=3 if FULL else 1)
    benchmark.extra_info.update(train_seconds=result["seconds"], epochs=result["epochs"], updates=result["updates"],
                                samples=result["samples"], accuracy=result["accuracy"], reached=result["reached"],
                                lr=result["lr"], target=result["target"])
