"""The clock of the benchmark tooling: a stopwatch, and interleaved medians of repeats.

``Timer`` times one block; ``measure`` warms callables up, then takes medians
of repeats interleaved across them, so that ratios compare measurements taken
side by side on a noisy machine.
"""
import math
import time

import numpy as np

# Idle time between two timed callables that run multi-threaded: a BLAS or OpenMP pool
# spins for a while after its last call (OpenBLAS ~2^28 cycles, about 0.1 s), and would
# take a core from the next callable if that one uses another library's threads.
SPIN_PAUSE = 0.15


class Timer:
    """Wall seconds of a with block (``time.perf_counter``): ``with Timer() as timer: ...``,
    then ``timer.seconds``."""

    __slots__ = ("start", "seconds")

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.seconds = time.perf_counter() - self.start


def measure(calls, repeats=7, min_time=0.02, warm_up=True, pause=0.0):
    """Median seconds per call of each callable in the dict ``calls``.

    Each callable first runs once untimed (compilation, caches) unless warm_up
    is False. With min_time > 0 it is then timed in batches of enough calls
    to last about min_time (one call otherwise). The repeats go round the
    callables, the first round in the dict's order and each later one in a
    shuffled order (a fixed seed), so that slow phases of a shared machine, and
    what the callable before leaves behind (another library's spinning threads,
    evicted caches), hit all of them alike: in a fixed order one library's
    short fits always came right after scikit-learn's and ran at half speed.
    ``pause`` seconds of sleep before each call (SPIN_PAUSE for callables whose
    thread pools differ).
    """
    numbers = {}
    for name, call in calls.items():
        if warm_up:
            call()
        numbers[name] = 1
        if min_time > 0:
            with Timer() as timer:
                call()
            numbers[name] = max(1, math.ceil(min_time / max(timer.seconds, 1e-9)))
    samples = {name: [] for name in calls}
    names = list(calls)
    shuffle = np.random.default_rng(0)
    for repeat in range(repeats):
        for name in names if repeat == 0 else shuffle.permutation(names):
            call, number = calls[name], numbers[name]
            time.sleep(pause)
            with Timer() as timer:
                for _ in range(number):
                    call()
            samples[name].append(timer.seconds / number)
    return {name: float(np.median(times)) for name, times in samples.items()}


def gflops(flops, seconds):
    """Billions of floating-point operations per second."""
    return flops / seconds / 1e9
