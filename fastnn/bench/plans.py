"""How much each benchmark run measures: the plans of ``fastnn bench`` (quick, default,
full), and the grid and time budget of the pytest-benchmark suites."""
import os

from .cases import DEFAULT_SHAPES, FULL_SHAPES, GRADIENT_WIDTHS, MANY_CASES, MODES, NETS


def full_grid():
    """Whether the benchmark suites run their full grid (FASTNN_BENCH_FULL=1)."""
    return os.environ.get("FASTNN_BENCH_FULL") == "1"


# pytest-benchmark's time budget per benchmark: short for the default grid, its own default
# (1 s) for the full one.
MAX_TIME = 0.1
MAX_TIME_FULL = 1.0

# What each plan runs: kernel shapes (batch, in, out); nets and modes for throughput (the peers
# train the peer_nets, all nets when absent; mode_samples replaces MODE_SAMPLES); gradient
# net widths; repeats per measurement and the least time of one timed batch of calls; runs per
# time-to-accuracy mode (0: none); the Numba cold start; the size of the sgemm measurement;
# the (batch, BLAS threads: None = all) of the BLAS providers' rates on a step's products;
# the many-models cases, their seeds and repeats, and the configuration study (None, or a key of
# cases.STUDIES: opt-in, ``fastnn bench --study``).
PLANS = {
    "quick": {"kernel_shapes": ((1, 784, 256), (256, 784, 256)), "nets": tuple(NETS), "modes": MODES,
              "peer_nets": ("784-256-128-10",), "mode_samples": 2048, "widths": GRADIENT_WIDTHS[:4],
              "repeats": 3, "min_time": 0.01, "accuracy_runs": 0, "cold_start": False, "gemm_size": 2048,
              "blas_cases": ((128, 1), (2048, None)),
              "many_cases": (), "many_seeds": 15, "many_repeats": 3, "study": None},
    "default": {"kernel_shapes": DEFAULT_SHAPES, "nets": tuple(NETS), "modes": MODES,
                "widths": GRADIENT_WIDTHS[:5], "repeats": 7, "min_time": 0.02, "accuracy_runs": 1,
                "cold_start": True, "gemm_size": 2048, "blas_cases": ((32, 1), (128, 1), (8192, None)),
                "many_cases": MANY_CASES, "many_seeds": 15, "many_repeats": 3, "study": None},
    "full": {"kernel_shapes": FULL_SHAPES, "nets": tuple(NETS), "modes": MODES, "widths": GRADIENT_WIDTHS,
             "repeats": 9, "min_time": 0.05, "accuracy_runs": 3,
             "cold_start": True, "gemm_size": 2048, "blas_cases": ((32, 1), (128, 1), (128, None), (8192, None)),
             "many_cases": MANY_CASES, "many_seeds": 15, "many_repeats": 5, "study": None},
}
