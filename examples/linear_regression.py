"""Linear regression as a one-layer network: a 1-1 Dense layer trained with MSE on
y = 2x + 1 + noise (σ 0.1) recovers the slope and intercept; compared with least squares.
Figure: the learning curves."""
import numpy as np

import fastnn
from fastnn import datasets, plot

from common import figure_path


def main():
    X, y = datasets.linear(200, slope=2.0, intercept=1.0, noise=0.1, seed=0)
    model = fastnn.mlp([1, 1], seed=0, dtype=np.float64)
    history = model.fit(X, y, loss="mse", optimizer="sgd", lr=0.1, epochs=200, batch_size=20, seed=0, verbose=0)
    layer = model.dense_layers[0]
    (slope, intercept), *_ = np.linalg.lstsq(np.column_stack([X[:, 0], np.ones(len(X))]), y, rcond=None)
    print("true:          slope 2.0000, intercept 1.0000")
    print(f"least squares: slope {slope:.4f}, intercept {intercept:.4f}")
    print(f"fastnn (SGD):  slope {layer.W[0, 0]:.4f}, intercept {layer.b[0]:.4f}, "
          f"R² {model.evaluate(X, y)['r2']:.4f}")
    plot.history(history, log_loss=True, title="linear regression, 1-1 network, SGD lr 0.1",
                 path=figure_path("linear_history.png"))


if __name__ == "__main__":
    main()
