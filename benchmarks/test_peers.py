"""The peers comparison (benchmarks/peers.py) as a pytest-benchmark group per case:
fastnn's engines, PyTorch, JAX and scikit-learn training the same net on the same
data; peers that are not installed are skipped. samples/s lands in extra_info.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks/test_peers.py --benchmark-only
"""
import importlib.util
import sys
from pathlib import Path

import pytest

from fastnn.peers import PEERS

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402

FRAMEWORKS = ["fastnn-numba", "fastnn-cython", *PEERS]
MODULES = {name: module for name, (module, _) in PEERS.items()}


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("case", peers.CASES, ids=[case[0] for case in peers.CASES])
def test_peers(benchmark, case, framework):
    available = peers.frameworks()
    if framework not in available:
        pytest.skip(f"{MODULES.get(framework, framework)} is not installed"
                    if importlib.util.find_spec(MODULES.get(framework, "fastnn")) is None
                    else f"{framework} has no engine")
    name, sizes, activation, batch, optimizer, n = case
    X, y = peers.data(sizes, n)
    run = available[framework](sizes, activation, batch, optimizer, X, y).run
    run()  # compile, allocate, warm caches
    benchmark.group = f"peers: {name}"
    benchmark.extra_info.update(framework=framework, samples=n)
    benchmark.pedantic(run, rounds=5, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_second"] = n / benchmark.stats.stats.median
