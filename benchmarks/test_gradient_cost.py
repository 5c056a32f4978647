"""Gradient cost: naive central differences vs backpropagation as the parameter count grows.

Nets [w, w, 10] with w = 10 ... 160 (about 2e2 to 3e4 parameters; up to
1e5 with FASTNN_BENCH_FULL=1), float64, a batch of 64, one BLAS thread. Each size's median goes
to the session, which fits the log-log slopes in the parameter count and
adds them to the JSON output ("gradient_cost_fit") and the terminal summary.
"""
import numpy as np
import pytest

from fastnn import bench, kernels

FULL = bench.full_grid()
WIDTHS = bench.GRADIENT_WIDTHS if FULL else bench.GRADIENT_WIDTHS[:-1]


@pytest.fixture(autouse=True)
def one_blas_thread():
    """One BLAS thread (recorded in extra_info): see bench.one_blas_thread."""
    with bench.one_blas_thread():
        yield


def _record(benchmark, gradient_results, method, case):
    benchmark.extra_info.update(bench.result_info(kernels.get_backend().name, np.float64, method=method,
                                                  n_params=case.n_params, batch=bench.GRADIENT_BATCH))
    if benchmark.stats is not None:
        gradient_results.append((method, case.n_params, benchmark.stats.stats.median))


@pytest.mark.benchmark(group="gradient cost: backprop", max_time=bench.MAX_TIME_FULL if FULL else bench.MAX_TIME)
@pytest.mark.parametrize("width", WIDTHS)
def test_backprop(benchmark, gradient_results, width):
    case = bench.GradientCase(width)
    case.backprop()  # compile and warm caches outside the timed region
    benchmark(case.backprop)
    _record(benchmark, gradient_results, "backprop", case)


@pytest.mark.benchmark(group="gradient cost: naive")
@pytest.mark.parametrize("width", WIDTHS)
def test_naive(benchmark, gradient_results, width):
    case = bench.GradientCase(width)
    case.backprop()  # compiles every kernel the naive gradient calls
    benchmark.pedantic(case.naive, rounds=3)
    _record(benchmark, gradient_results, "naive", case)
