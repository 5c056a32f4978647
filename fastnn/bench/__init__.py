"""fastnn's benchmark tooling: the cases the benchmarks measure and ``fastnn bench``,
``fastnn profile`` and the peers fastnn is measured against.

- cases: what is measured (kernels, training modes, gradient cost, many models);
- timing: the one stopwatch and the interleaved medians of repeats;
- machine: what a result ran on;
- plans: how much a run measures;
- runner: ``fastnn bench``, results.json; plots: its PNG plots;
- peers: the same training in PyTorch, JAX and scikit-learn; trainers: fastnn's own;
- profile: ``fastnn profile``.

The names below are those of the pytest-benchmark suites in benchmarks/ and of the CLI.
"""
from ..threads import step_flops
from .cases import (BATCHES, DEFAULT_MAX_EPOCHS, DEFAULT_SHAPES, FULL_SHAPES, GRADIENT_BATCH, GRADIENT_WIDTHS,
                    LAYERS, MANY_CASES, MANY_SEEDS, MAX_EPOCHS, MODE_LEARNING_RATES, MODE_SAMPLES, MODES, NETS,
                    NUMBA_FIRST_STEP, STUDIES, STUDY_GRID, TARGET_ACCURACY, TEN_POINT_EPOCHS, GradientCase,
                    KernelCase, ModeCase, default_data_dir, epoch_samples, gemm_rate, gradient_summary, kernel_flops,
                    kernel_results, loglog_slope, many_data, measure_many, measure_study, mnist_split, mode_name,
                    mode_results, numba_first_step, one_blas_thread, ordered_digits, repeated_ten_points,
                    study_configurations, study_name, study_trainer, time_to_accuracy)
from .machine import THREAD_VARIABLES, blas_summary, cpu_model, machine_record, result_info
from .plans import MAX_TIME, MAX_TIME_FULL, PLANS, full_grid
from .runner import Progress, run, write_json, write_outputs
from .timing import SPIN_PAUSE, Timer, gflops, measure

__all__ = [
    "BATCHES", "DEFAULT_MAX_EPOCHS", "DEFAULT_SHAPES", "FULL_SHAPES", "GRADIENT_BATCH", "GRADIENT_WIDTHS", "LAYERS",
    "MANY_CASES", "MANY_SEEDS", "MAX_EPOCHS", "MAX_TIME", "MAX_TIME_FULL", "MODE_LEARNING_RATES", "MODE_SAMPLES",
    "MODES", "NETS", "NUMBA_FIRST_STEP", "PLANS", "SPIN_PAUSE", "STUDIES", "STUDY_GRID", "TARGET_ACCURACY",
    "TEN_POINT_EPOCHS", "THREAD_VARIABLES", "GradientCase", "KernelCase", "ModeCase", "Progress", "Timer",
    "blas_summary", "cpu_model", "default_data_dir", "epoch_samples", "full_grid", "gemm_rate", "gflops",
    "gradient_summary", "kernel_flops", "kernel_results", "loglog_slope", "machine_record", "many_data", "measure",
    "measure_many", "measure_study", "mnist_split", "mode_name", "mode_results", "numba_first_step",
    "one_blas_thread", "ordered_digits", "plot_gradient_cost", "plot_kernels", "plot_throughput",
    "plot_time_to_accuracy", "repeated_ten_points", "result_info", "run", "step_flops", "study_configurations",
    "study_name", "study_trainer", "time_to_accuracy", "write_json", "write_outputs",
]

# The plots load matplotlib on first use, not with fastnn.bench (which the fastnn command imports).
_PLOTS = ("plot_gradient_cost", "plot_kernels", "plot_throughput", "plot_time_to_accuracy")


def __getattr__(name):
    if name in _PLOTS:
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'fastnn.bench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PLOTS))
