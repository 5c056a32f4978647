"""Kernel benchmarks: every kernel x backend x layer shape, grouped by kernel x shape x dtype.

Default grid: batch 1, 32, 256 and 8192 on the 784 -> 256 layer, and the
256 -> 128 and 128 -> 10 layers at batch 256, in float32. FASTNN_BENCH_FULL=1
runs every batch on every layer in float32 and float64, with longer timings.
The matrix kernels report GFLOP/s and their share of the GEMM rate measured
in the same session.
"""
import tempfile

import numpy as np
import pytest

from fastnn import bench, kernels

FULL = bench.full_grid()
SHAPES = bench.FULL_SHAPES if FULL else bench.DEFAULT_SHAPES
DTYPES = (np.float32, np.float64) if FULL else (np.float32,)

pytestmark = pytest.mark.benchmark(max_time=bench.MAX_TIME_FULL if FULL else bench.MAX_TIME)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "{}x{}->{}".format(*s))
@pytest.mark.parametrize("kernel", kernels.KERNELS)
@pytest.mark.parametrize("backend", kernels.available_backends())
def test_kernel(benchmark, gemm_gflops, backend, kernel, shape, dtype):
    case = bench.KernelCase(kernel, *shape, dtype=dtype)
    call = case.call(backend)
    call()  # compile and warm caches outside the timed region
    benchmark.group = f"kernel {case.label}"
    benchmark.extra_info.update(bench.result_info(backend, dtype, kernel=kernel, shape=case.shape))
    benchmark(call)
    if benchmark.stats is not None and case.flops is not None:
        result = bench.kernel_results(case, benchmark.stats.stats.median, gemm_gflops(dtype))
        benchmark.extra_info.update(gflops=result["gflops"], gemm_gflops=gemm_gflops(dtype),
                                    percent_of_gemm=result["percent_of_gemm"])


@pytest.mark.parametrize("cache", ["cold", "cached"])
def test_numba_first_step(benchmark, cache):
    """JIT compile time as its own benchmark: a new process from its start to the end of its
    first training step's Numba kernels, with an empty cache (compiling) or a filled one."""
    if "numba" not in kernels.available_backends():
        pytest.skip("the numba backend is not available")
    benchmark.group = "numba first step in a new process"
    benchmark.extra_info.update(bench.result_info("numba", np.float32, cache=cache))
    with tempfile.TemporaryDirectory() as root:
        filled = tempfile.mkdtemp(dir=root)
        bench.numba_first_step(filled)

        def setup():
            return (tempfile.mkdtemp(dir=root) if cache == "cold" else filled,), {}

        benchmark.pedantic(bench.numba_first_step, setup=setup, rounds=3)
