"""What a benchmark result ran on: CPU, cores, BLAS libraries and their threads, the
thread variables in force, versions and backends."""
import os
import platform

import numpy as np

from ..config import config_info

# The environment variables that change what the BLAS and the training engine do.
THREAD_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "FASTNN_NUM_THREADS")


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, else what the platform module knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record():
    """CPU model and core count, BLAS libraries with kernel and threads (threadpoolctl),
    the OpenBLAS and fastnn thread variables in force, versions and backends: what a result
    ran on."""
    info = config_info()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": info["platform"],
        "python": info["python"],
        "fastnn": info["fastnn"],
        "versions": info["versions"],
        "backends": info["backends_available"],
        "blas": [lib for lib in info["threadpools"] if lib["user_api"] == "blas"],
        "openmp": [lib for lib in info["threadpools"] if lib["user_api"] == "openmp"],
        "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


def blas_summary():
    """The BLAS libraries in one line, e.g. 'openblas 0.3.30 SkylakeX 2 threads'."""
    return "; ".join(f"{lib['internal_api']} {lib['version']} {lib['architecture']} {lib['num_threads']} "
                     f"thread{'' if lib['num_threads'] == 1 else 's'}" for lib in machine_record()["blas"])


def result_info(backend, dtype, **details):
    """The fields every single result carries (pytest-benchmark's extra_info)."""
    return {"backend": backend, "dtype": np.dtype(dtype).name, "cpu": cpu_model(), "cores": os.cpu_count(),
            "blas": blas_summary(), **details}
