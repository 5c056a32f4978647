"""A busy machine: a default fit while another process holds one core.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/busy.py [--repeats 5]

Starts ``python -c "while True: pass"`` (one core taken by another program), then
times fit of the 784-256-128-10 ReLU MLP (float32, Adam, batch 128, 3 epochs of 8192
random samples) with the default thread choice and with n_threads=1, in turn (A B A
B ...), and prints the medians and their ratio: the default should cost at most 1.15x
the single thread. --idle runs the same without the busy process. The load average
and the number of running tasks before the run, and the thread counts the default
chose, are printed: other users of the machine change the figure.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import fastnn
from fastnn import threads
from fastnn.bench import Timer

SIZES = [784, 256, 128, 10]
SAMPLES, EPOCHS, BATCH = 8192, 3, 128


def timed_fit(X, y, n_threads):
    """Seconds of one default fit (n_threads None) or one with n_threads threads."""
    model = fastnn.mlp(SIZES, seed=0)
    with Timer() as timer:
        model.fit(X, y, epochs=EPOCHS, batch_size=BATCH, seed=0, verbose=0, n_threads=n_threads)
    return timer.seconds


def running_tasks():
    """The 'running/total' field of /proc/loadavg, or '?' where there is none."""
    try:
        with open("/proc/loadavg") as file:
            return file.read().split()[3]
    except OSError:
        return "?"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--idle", action="store_true", help="no busy process")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X, y = rng.random((SAMPLES, SIZES[0]), dtype=np.float32), rng.integers(0, SIZES[-1], SAMPLES)
    print(f"fastnn {fastnn.__version__}, backend {fastnn.get_backend().name}, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}, running tasks {running_tasks()}")
    timed_fit(X, y, None)  # load and warm everything before the busy process starts
    busy = None if args.idle else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        times = {"default": [], "n_threads=1": []}
        chosen = []
        for _ in range(args.repeats):
            chosen.append(threads.thread_count(None, fastnn.mlp(SIZES, seed=0), BATCH, engine_threads=True))
            times["default"].append(timed_fit(X, y, None))
            times["n_threads=1"].append(timed_fit(X, y, 1))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    default, single = (statistics.median(t) for t in times.values())
    print(f"{'idle' if args.idle else 'one core busy'}: medians of {args.repeats}: default {default:.3f} s, "
          f"n_threads=1 {single:.3f} s, ratio {default / single:.2f}x; the default chose "
          f"{' '.join(map(str, chosen))} threads")
    for name, values in times.items():
        print(f"  {name}: " + " ".join(f"{t:.3f}" for t in values))


if __name__ == "__main__":
    main()
