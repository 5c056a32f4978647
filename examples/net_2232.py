"""The 2-2-3-2 sigmoid network on the 10-point two-class set, trained by online SGD
(one point per update, lr 0.05) for 5×10^5 updates with squared error on one-hot
targets, recording the loss of every update. Figures: that loss on a log scale, and the
decision regions."""
import time

import numpy as np

import fastnn
from fastnn import datasets, plot

from common import figure_path

UPDATES = 500_000


class ArgMax:
    """Class predictions (argmax of the two sigmoid outputs) for the decision-region plot."""

    def __init__(self, model):
        self.model = model

    def predict(self, X):
        return self.model.predict(X).argmax(axis=1)


def main():
    X, y = datasets.ten_points()
    targets = np.eye(2)[y]
    model = fastnn.mlp([2, 2, 3, 2], activation="sigmoid", output_activation="sigmoid",
                       init="xavier_normal", seed=0, dtype=np.float64)
    start = time.perf_counter()
    history = model.fit(X, targets, loss="mse", optimizer="sgd", lr=0.05, epochs=UPDATES // len(X),
                        batch_size=1, seed=0, verbose=0, loss_every=1)
    seconds = time.perf_counter() - start
    predicted = ArgMax(model).predict(X)
    print(f"{UPDATES:,} online SGD updates in {seconds:.1f} s ({UPDATES / seconds:,.0f} updates/s)")
    print(f"loss: first epoch {history.loss[0]:.4f}, last {history.loss[-1]:.2e}; "
          f"training accuracy {np.mean(predicted == y):.2f}")
    print(f"{len(history.update_loss):,} update losses recorded: first {history.update_loss[0]:.4f}, "
          f"last {history.update_loss[-1]:.2e}")
    figure = plot.update_loss(history, log=True, title="2-2-3-2 sigmoid, online SGD lr 0.05")
    axes = figure.axes[0]
    axes.plot(np.arange(1, len(history) + 1) * len(X), history.loss, color="k", linewidth=1,
              label="mean over each epoch (10 updates)")
    axes.legend()
    plot.save(figure, figure_path("net_2232_history.png"))
    plot.decision_regions(ArgMax(model), X, y, title="2-2-3-2: decision regions",
                          path=figure_path("net_2232_regions.png"))


if __name__ == "__main__":
    main()
