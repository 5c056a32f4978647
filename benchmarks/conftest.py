"""Setup shared by the benchmark suites (run with `pytest benchmarks --benchmark-only`).

Every result records what it ran on: the session's machine_info gets
fastnn's machine record (CPU, cores, BLAS libraries with kernel and threads,
OpenBLAS variables, versions) and each benchmark's extra_info its backend,
dtype, CPU and BLAS. The gradient-cost fits, which need every size's
result, are added to the JSON output and printed at the end.
"""
import os

import numpy as np
import pytest

from fastnn import bench

GRADIENT_KEY = pytest.StashKey[list]()


def pytest_configure(config):
    if config.getoption("dist", "no") != "no" or os.environ.get("PYTEST_XDIST_WORKER"):
        raise pytest.UsageError("the benchmarks must run without xdist (-n): parallel runs share the cores "
                                "and spoil each other's timings")
    config.stash[GRADIENT_KEY] = []


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastnn"] = bench.machine_record()


@pytest.fixture(scope="session")
def gemm_gflops():
    """The GEMM rate per dtype, measured once per session when first asked for."""
    rates = {}

    def rate(dtype):
        name = np.dtype(dtype).name
        if name not in rates:
            rates[name] = bench.gemm_rate(dtype)
        return rates[name]

    return rate


@pytest.fixture(scope="session")
def gradient_results(request):
    """Where the gradient-cost benchmarks leave (method, n_params, median seconds)."""
    return request.config.stash[GRADIENT_KEY]


def _gradient_summary(config):
    rows = config.stash.get(GRADIENT_KEY, [])
    by_size = {}
    for method, n_params, seconds in rows:
        by_size.setdefault(n_params, {"n_params": n_params})[f"{method}_seconds"] = seconds
    cases = [case for _, case in sorted(by_size.items()) if len(case) == 3]
    return bench.gradient_summary(cases) if len(cases) >= 2 else None


def pytest_benchmark_update_json(config, benchmarks, output_json):
    summary = _gradient_summary(config)
    if summary is not None:
        output_json["gradient_cost_fit"] = summary


def pytest_terminal_summary(terminalreporter, config):
    summary = _gradient_summary(config)
    if summary is None:
        return
    terminalreporter.section("gradient cost: log-log slopes in the parameter count")
    line = (f"naive {summary['naive_slope']:.2f}, backprop {summary['backprop_slope']:.2f}, "
            f"naive / backprop {summary['ratio_slope']:.2f} over all sizes")
    if summary["naive_slope_largest"] is not None:
        line += (f"; naive {summary['naive_slope_largest']:.2f}, backprop {summary['backprop_slope_largest']:.2f} "
                 "over the three largest")
    terminalreporter.write_line(line)
    for n_params, ratio in summary["ratios"].items():
        terminalreporter.write_line(f"{int(n_params):>8,} parameters: naive / backprop = {ratio:,.0f}")
