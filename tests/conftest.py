import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
import fastnn.kernels as K
from engine_cases import ENGINE_BACKENDS

FLOAT_DTYPES = [np.float32, np.float64]
COMPILED_BACKENDS = ["numba", "cython"]


@pytest.fixture(params=ENGINE_BACKENDS)
def engine_backend(request):
    """Each backend with a compiled engine, selected for the test."""
    with fastnn.use_backend(request.param):
        yield request.param


@pytest.fixture(params=FLOAT_DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture(params=COMPILED_BACKENDS + ["cython-portable"])
def backend(request):
    """Each compiled backend; tests compare it with the NumPy reference. cython-portable:
    the Cython kernels' build for any CPU, where the backend here is the AVX2 build."""
    if request.param != "cython-portable":
        return K.get_backend(request.param)
    portable = importlib.import_module("fastnn.kernels.cython_kernels")
    if K.get_backend("cython").raw is portable:
        pytest.skip("the cython backend here is its portable build")
    return K.Backend("cython", portable)


@pytest.fixture(params=["numpy"] + COMPILED_BACKENDS)
def any_backend(request):
    return K.get_backend(request.param)


@pytest.fixture
def reference():
    return K.get_backend("numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _assert_close(got, want, dtype, scale=1.0):
    """Compare with the reference at the precision of dtype.

    ``scale`` is the magnitude of the terms of a reduction (e.g. sqrt(k) for a
    dot product over k terms), so small results of large cancelling sums are
    judged against it rather than against zero.
    """
    if np.dtype(dtype) == np.float32:
        rtol, atol = 2e-5, 2e-6 * scale
    else:
        rtol, atol = 1e-11, 1e-13 * scale
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.fixture
def assert_close():
    return _assert_close


@pytest.fixture
def isolated(tmp_path):
    """run(code): the code's CompletedProcess in a fresh interpreter (in tmp_path, so the
    installed fastnn is imported), where a crash ends that process, not the test run."""
    def run(code, timeout=240):
        return subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def cluster():
    """A Dask LocalCluster of two single-threaded worker processes, for the sweep tests."""
    distributed = pytest.importorskip("dask.distributed")
    import dask

    # A worker that dies fails its task at once instead of being retried on another.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as local:
            yield local
