"""A sweep of an MLPSpec (stacks) against the same sweep of a run callable (single fits).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE FASTNN_BACKEND=numba python benchmarks/sweep_stacks.py \
        [--repeats 5] [--n-jobs 2]

16 configurations (4 learning rates x 4 batch sizes) x 15 seeds of 784-64-32-10 ReLU,
Adam, 2 epochs on the first 2,000 MNIST test digits (--data-dir, else $FASTNN_DATA, else
../shared/data), float32, in joblib worker processes: the MLPSpec sweep trains 4 stacks
of 60 models, the callable one 240 single fits, and both report the same rows (checked).
Repeats alternate the two (A B A B) after a warm-up of each; medians are printed.
"""
import argparse
import functools
import os
import statistics
import time


import fastnn
from fastnn import datasets

SIZES, EPOCHS, N_TRAIN = [784, 64, 32, 10], 2, 2000
GRID = {"lr": [3e-4, 1e-3, 3e-3, 1e-2], "batch_size": [32, 64, 128, 256]}


def single_fit(seed, lr, batch_size, data):
    """One run of the callable form: the fit the MLPSpec sweep makes of model (config, seed)."""
    X, y, X_test, y_test = data
    model = fastnn.mlp(SIZES, seed=seed)
    history = model.fit(X, y, optimizer=fastnn.Adam(lr), epochs=EPOCHS, batch_size=batch_size, seed=seed,
                        verbose=0)
    test = {f"test_{name}": value for name, value in model.evaluate(X_test, y_test).items()}
    return {"train_loss": history.loss[-1], "train_accuracy": history.metric[-1],
            "diverged": float(history.diverged), **test}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("FASTNN_DATA", "../shared/data"))
    args = parser.parse_args()
    X, y = datasets.load_mnist(args.data_dir, kind="t10k")
    data = (X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:2 * N_TRAIN], y[N_TRAIN:2 * N_TRAIN])
    spec = fastnn.MLPSpec(SIZES, epochs=EPOCHS)
    forms = {"MLPSpec (stacks)": lambda: fastnn.sweep(spec, GRID, seeds=15, data=data, n_jobs=args.n_jobs,
                                                      verbose=0),
             "callable (single fits)": lambda: fastnn.sweep(functools.partial(single_fit, data=data), GRID,
                                                            seeds=15, n_jobs=args.n_jobs, verbose=0)}
    results = {name: form() for name, form in forms.items()}  # warm-up: worker processes, Numba's cache
    rows = [[(row["config"], row["seed"], row["metrics"]) for row in result.rows] for result in results.values()]
    assert rows[0] == rows[1] and not any(result.errors for result in results.values())
    seconds = {name: [] for name in forms}
    for _ in range(args.repeats):
        for name, form in forms.items():
            start = time.perf_counter()
            form()
            seconds[name].append(time.perf_counter() - start)
    print(f"{len(rows[0])} runs ({len(results['MLPSpec (stacks)'].configs)} configurations x 15 seeds), "
          f"{fastnn.get_backend().name} backend, {args.n_jobs} worker processes, load {os.getloadavg()[0]:.1f}")
    for name, times in seconds.items():
        print(f"{name:<24} median {statistics.median(times):6.2f} s  ({', '.join(f'{t:.2f}' for t in times)})")
    print(f"ratio callable / MLPSpec: {statistics.median(seconds['callable (single fits)']) / statistics.median(seconds['MLPSpec (stacks)']):.2f}")
    print(f"test accuracy, median over seeds:\n{results['MLPSpec (stacks)'].table('test_accuracy')}")


if __name__ == "__main__":
    main()
