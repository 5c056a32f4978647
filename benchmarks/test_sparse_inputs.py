"""Sparse inputs: one epoch on the real MNIST digits (19 % non-zero) with the first layer
multiplied entry by entry (the csr_ kernels) against densely (BLAS), per engine, batch size
and setting: a model alone on one thread, on fit's default threads, and a stack of four
models; samples/s in extra_info. What fit picks on its own is engine._csr_pays's rule
(docs/engine.md#sparse-inputs). Skipped when the digits are absent.
"""
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import bench
from fastnn import engine as engines

FULL = bench.full_grid()
DATA_DIR = Path(__file__).parents[1].parent / "shared" / "data"
SETTINGS = {"alone, 1 thread": (1, 1), "alone, default threads": (1, None), "stack of 4": (4, None)}

pytestmark = pytest.mark.benchmark(max_time=bench.MAX_TIME_FULL if FULL else bench.MAX_TIME)


@pytest.fixture(scope="module")
def digits():
    try:
        X, y, _, _ = bench.mnist_split(DATA_DIR)
    except FileNotFoundError as error:
        pytest.skip(f"the MNIST t10k digits are not in {DATA_DIR}: {error}")
    return (X / np.float32(255)).astype(np.float32)[:4096], y[:4096]


@pytest.mark.parametrize("first_layer", ["entry by entry", "dense"])
@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("batch_size", [8, 16, 32])
@pytest.mark.parametrize("backend", [name for name in ("cython", "numba") if name in fastnn.available_backends()])
def test_sparse_first_layer(benchmark, monkeypatch, digits, backend, batch_size, setting, first_layer):
    X, y = digits
    n_models, n_threads = SETTINGS[setting]
    monkeypatch.setattr(engines, "_csr_pays", lambda *args: first_layer == "entry by entry")
    seeds = range(n_models) if n_models > 1 else 0
    model = fastnn.mlp([784, 256, 128, 10], seed=seeds)
    optimizer = fastnn.Adam()

    def epoch():
        model.fit(X, y, optimizer=optimizer, epochs=1, batch_size=batch_size, n_threads=n_threads, verbose=0,
                  seed=list(range(n_models)) if n_models > 1 else 0)

    with fastnn.use_backend(backend):
        epoch()  # compile and allocate outside the timed region
        benchmark.group = f"sparse first layer, MNIST digits, {backend}, batch {batch_size}, {setting}"
        benchmark.extra_info.update(bench.result_info(backend, np.float32, batch=batch_size, setting=setting,
                                                      first_layer=first_layer))
        benchmark(epoch)
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_second"] = n_models * len(X) / benchmark.stats.stats.median
