"""Activation × initialization on 784-256-128-64-32-10: sigmoid, tanh, relu and leaky_relu
hidden layers, each from zeros, he_uniform and xavier_normal initial weights, trained by
Adam (lr 1e-3, batch 128) for 5 epochs on the real MNIST split (8,000 train / 2,000 test),
2 seeds each, run in parallel with fastnn.sweep. Figure: box plots of test accuracy."""
import functools
import os
import time

import fastnn
from fastnn import sweep

from common import data_dir, figure_path, mnist_split

SIZES = [784, 256, 128, 64, 32, 10]


@functools.lru_cache(maxsize=1)
def split():
    """The MNIST split, loaded once per worker process from $FASTNN_DATA (set by main)."""
    return mnist_split(os.environ["FASTNN_DATA"])


def run(seed, activation, init):
    (X_train, y_train), test = split()
    model = fastnn.mlp(SIZES, activation=activation, init=init, seed=seed)
    model.fit(X_train, y_train, optimizer="adam", lr=1e-3, epochs=5, batch_size=128, seed=seed, verbose=0)
    return {"test_accuracy": model.evaluate(*test)["accuracy"]}


def main():
    if not data_dir():
        raise SystemExit("give --data-dir or set FASTNN_DATA: the directory with the MNIST t10k files")
    start = time.perf_counter()
    grid = {"activation": ["sigmoid", "tanh", "relu", "leaky_relu"], "init": ["zeros", "he_uniform", "xavier_normal"]}
    # Workers import run from this module by name, so each keeps its cached split; a
    # function of __main__ would travel by value, without the cache.
    import activation_init

    result = sweep(activation_init.run, grid, seeds=2, n_jobs=2)
    if result.errors:
        print(f"{len(result.errors)} runs failed; first error:\n{result.errors[0]['error']}")
    print("test accuracy after 5 epochs, 2 seeds:")
    print(result.table("test_accuracy"))
    result.boxplot("test_accuracy", title="784-256-128-64-32-10: activation × initialization",
                   path=figure_path("activation_init.png"))
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
