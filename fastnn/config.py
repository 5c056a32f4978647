"""What fastnn really runs on (backends, BLAS, OpenMP, Numba, versions), and getting
it ready: the engine compiled ahead of time."""
import importlib.metadata
import os
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info

from . import kernels
from .kernels import gemm
from .blas import blas_info
from .engine import Engine, OneModel, engine_module
from .losses import SoftmaxCrossEntropy
from .model import mlp
from .optim import SGD


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _numba_info():
    import numba

    layer = numba.config.THREADING_LAYER
    try:
        # Only known once a parallel function has run in this process.
        layer = f"{numba.threading_layer()} (in use)"
    except ValueError:
        layer = f"{layer} (requested; none started yet)"
    cache = numba.config.CACHE_DIR or "next to each module's source (__pycache__)"
    return {"threading_layer": layer, "num_threads": numba.config.NUMBA_NUM_THREADS, "cache_dir": cache}


def _cython_openmp():
    if "cython" not in kernels.available_backends():
        return {"openmp": False, "detail": kernels.UNAVAILABLE.get("cython", "cython backend missing")}
    return kernels.get_backend("cython").raw.openmp_info()


def _cython_kernels():
    """The Cython kernels build loaded here (the AVX2 one where the CPU has AVX2 and FMA)."""
    if "cython" not in kernels.available_backends():
        return None
    return kernels.get_backend("cython").raw.__name__.rsplit(".", 1)[-1]


def _cython_engine():
    """The Cython engine build fit loads here (the AVX2 one where the CPU has AVX2 and FMA)."""
    module = engine_module("cython")
    return None if module is None else module.__name__.rsplit(".", 1)[-1]


def config_info():
    """The configuration as a dict (what show_config prints)."""
    # Loaded native libraries are only visible after the backends imported
    # (they are, through fastnn.kernels).
    libraries = [
        {key: entry.get(key) for key in
         ("user_api", "internal_api", "version", "architecture", "num_threads", "threading_layer", "filepath")}
        for entry in threadpool_info()
    ]
    return {
        "fastnn": _version("fastnn"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "backends_available": kernels.available_backends(),
        "backends_unavailable": dict(kernels.UNAVAILABLE),
        "backend_selected": kernels.get_backend().name,
        "FASTNN_BACKEND": os.environ.get("FASTNN_BACKEND"),
        "blas": blas_info(),
        "bf16_products": gemm.bf16_unsupported() or "available (AVX512-BF16): fit(..., precision='bf16')",
        "threadpools": libraries,
        "cython_openmp": _cython_openmp(),
        "cython_kernels": _cython_kernels(),
        "cython_engine": _cython_engine(),
        "numba": _numba_info(),
        "versions": {name: _version(name) for name in
                     ("numpy", "scipy", "numba", "llvmlite", "Cython", "threadpoolctl")},
    }


def show_config(file=None):
    """Print the backends available and selected, the BLAS provider and why, BLAS and OpenMP libraries
    with their kernels and thread counts, Numba's threading layer and cache,
    and library versions."""
    info = config_info()
    lines = [
        f"fastnn {info['fastnn']} on Python {info['python']}, {info['platform']}, {info['cpu_count']} CPUs",
        f"backends available: {', '.join(info['backends_available'])}",
    ]
    lines += [f"backend unavailable: {name}: {why}" for name, why in info["backends_unavailable"].items()]
    lines.append(f"backend selected:   {info['backend_selected']}"
                 + (f" (FASTNN_BACKEND={info['FASTNN_BACKEND']})" if info["FASTNN_BACKEND"] else ""))
    blas = info["blas"]
    lines.append(f"BLAS provider:      {blas['provider']} {blas['version']}, kernel {blas['kernel']}, "
                 f"{blas['threads']} threads ({blas['reason']})")
    lines.append(f"    {blas['library']}; providers on this machine: {', '.join(blas['available'])}")
    lines.append(f"bf16 products:      {info['bf16_products']}")
    lines.append("native thread pools (threadpoolctl):")
    for lib in info["threadpools"]:
        lines.append(
            f"  {lib['user_api']}: {lib['internal_api']} {lib['version']}, kernel {lib['architecture']}, "
            f"{lib['num_threads']} threads, {lib['threading_layer'] or ''}".rstrip(", ")
        )
        lines.append(f"    {lib['filepath']}")
    # The cython backend is compiled at install; the Cython package only builds it.
    built = "built" if info["cython_kernels"] else "not built"
    lines.append(f"cython backend: {built}; the Cython compiler (needed to build it, not to run it): "
                 f"{info['versions']['Cython']}")
    lines.append(f"cython build OpenMP: {info['cython_openmp']}")
    lines.append(f"cython kernels: {info['cython_kernels']}")
    lines.append(f"cython training engine: {info['cython_engine']}")
    numba_info = info["numba"]
    lines.append(f"numba threading layer: {numba_info['threading_layer']}, {numba_info['num_threads']} threads")
    lines.append(f"numba cache: {numba_info['cache_dir']}")
    lines.append("installed: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "Cython"))
    print("\n".join(lines), file=file or sys.stdout)


def warmup(backend="numba"):
    """Compile the backend's engine ahead of time for float32 and float64, both loops
    (mini-batch and online); with Numba's on-disk cache (NUMBA_CACHE_DIR, else
    __pycache__ beside the sources, else a user-wide directory) later processes load
    it instead. Each loop that compiles says so on stderr before, and how long it took
    after. Returns the seconds it took."""
    module = engine_module(backend)
    if module is None:
        raise ValueError(f"backend {backend!r} has no compiled engine; use 'numba' or 'cython'")
    start = time.perf_counter()
    loss = SoftmaxCrossEntropy()
    for dtype in (np.float32, np.float64):
        model = mlp([2, 2], dtype=dtype, seed=0)
        X, labels = np.zeros((2, 2), dtype), np.array([0, 1])
        for batch in (1, 2):
            Engine(module, OneModel(model).bind(SGD(0.1)), loss, X, labels, None, batch, None).run(None, 1)
    return time.perf_counter() - start
