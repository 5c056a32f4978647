"""Two concentric circles with one tanh hidden layer: a learning-rate study (1, 0.03,
0.001) and a batch-size study (1, 16, 64, full batch), each over 8 seeds with
fastnn.sweep, reporting test accuracy. Figures: box plots of both studies, the
learning curves and the decision regions of one network."""
import time

import fastnn
from fastnn import datasets, plot, sweep

from common import figure_path

HIDDEN, EPOCHS = 8, 100


def run(seed, lr=0.03, batch_size=16):
    """Train 2-8-2 tanh by SGD on 800 noisy circle points; test accuracy on 200 more."""
    X, y = datasets.circles(1000, noise=0.15, factor=0.5, seed=seed)
    model = fastnn.mlp([2, HIDDEN, 2], activation="tanh", seed=seed)
    model.fit(X[:800], y[:800], optimizer="sgd", lr=lr, epochs=EPOCHS, batch_size=batch_size,
              seed=seed, verbose=0)
    return {"test_accuracy": model.evaluate(X[800:], y[800:])["accuracy"]}


def main():
    start = time.perf_counter()
    lr_study = sweep(run, {"lr": [1.0, 0.03, 0.001]}, seeds=8, n_jobs=2)
    print("learning rate (batch 16, 100 epochs), test accuracy over 8 seeds:")
    print(lr_study.table("test_accuracy"))
    lr_study.boxplot("test_accuracy", title="circles: learning rate (batch 16)",
                     path=figure_path("circles_lr.png"))

    batch_study = sweep(run, {"batch_size": [1, 16, 64, "full"]}, seeds=8, n_jobs=2)
    print("\nbatch size (lr 0.03, 100 epochs), test accuracy over 8 seeds:")
    print(batch_study.table("test_accuracy"))
    batch_study.boxplot("test_accuracy", title="circles: batch size (lr 0.03)",
                        path=figure_path("circles_batch.png"))

    X, y = datasets.circles(1000, noise=0.15, factor=0.5, seed=0)
    model = fastnn.mlp([2, HIDDEN, 2], activation="tanh", seed=0)
    history = model.fit(X[:800], y[:800], optimizer="sgd", lr=0.03, epochs=EPOCHS, batch_size=16,
                        validation_data=(X[800:], y[800:]), seed=0, verbose=0)
    print(f"\nseed 0, lr 0.03, batch 16: test accuracy {history.val_metric[-1]:.4f}")
    plot.history(history, title="circles, 2-8-2 tanh, SGD lr 0.03", path=figure_path("circles_history.png"))
    plot.decision_regions(model, X[800:], y[800:], title="circles: test points and decision regions",
                          path=figure_path("circles_regions.png"))
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
