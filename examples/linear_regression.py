"""Linear regression as a one-layer network: a 1-1 Dense layer trained with MSE on
y = 2x + 1 + noise (σ 0.1) recovers the slope and intercept; compared with least squares,
over 25 seeds (initial weights and batch order). Figures: the learning curves of seed 0,
the loss over the seeds (interquartile mean and band), and the lines of the median and
of the worst run by final loss, side by side."""
import numpy as np
from matplotlib.figure import Figure

import fastnn
from fastnn import datasets, plot
from fastnn.sweeps import iqm, median_and_worst

from common import figure_path

SEEDS = range(25)


def main():
    X, y = datasets.linear(200, slope=2.0, intercept=1.0, noise=0.1, seed=0)
    runs = []
    for seed in SEEDS:
        model = fastnn.mlp([1, 1], seed=seed, dtype=np.float64)
        history = model.fit(X, y, loss="mse", optimizer="sgd", lr=0.1, epochs=200, batch_size=20, seed=seed,
                            verbose=0)
        runs.append((model, history))
    (slope, intercept), *_ = np.linalg.lstsq(np.column_stack([X[:, 0], np.ones(len(X))]), y, rcond=None)
    model, history = runs[0]
    layer = model.dense_layers[0]
    print("true:          slope 2.0000, intercept 1.0000")
    print(f"least squares: slope {slope:.4f}, intercept {intercept:.4f}")
    print(f"fastnn (SGD):  slope {layer.W[0, 0]:.4f}, intercept {layer.b[0]:.4f}, "
          f"R² {model.evaluate(X, y)['r2']:.4f} (seed 0)")
    plot.history(history, log_loss=True, title="linear regression, 1-1 network, SGD lr 0.1",
                 path=figure_path("linear_history.png"))

    histories = [history for _, history in runs]
    final = np.array([history.loss[-1] for history in histories])
    slopes = np.array([model.dense_layers[0].W[0, 0] for model, _ in runs])
    intercepts = np.array([model.dense_layers[0].b[0] for model, _ in runs])
    print(f"{len(runs)} seeds: final loss median {np.median(final):.5f}, IQM {iqm(final):.5f}, max {final.max():.5f}; "
          f"slope {slopes.min():.4f}..{slopes.max():.4f}, intercept {intercepts.min():.4f}..{intercepts.max():.4f}")
    plot.history_band(histories, log=True, label="training loss (MSE)",
                      title=f"linear regression: loss over {len(runs)} seeds", path=figure_path("linear_band.png"))
    median, worst = median_and_worst(histories)
    figure = Figure(figsize=(10, 4.5))
    line = np.linspace(X.min(), X.max(), 2)
    for axes, index, which in zip(figure.subplots(1, 2, sharey=True), (median, worst), ("median", "worst")):
        axes.scatter(X[:, 0], y, s=8, alpha=0.5, color="k", label="data")
        axes.plot(line, slopes[index] * line + intercepts[index], color="C3",
                  label=f"fastnn: {slopes[index]:.4f}x + {intercepts[index]:.4f}")
        axes.plot(line, slope * line + intercept, color="C0", linestyle="--",
                  label=f"least squares: {slope:.4f}x + {intercept:.4f}")
        axes.set_title(f"{which} run: seed {index}, final loss {final[index]:.5f}")
        axes.set_xlabel("x")
        axes.legend()
    figure.axes[0].set_ylabel("y")
    figure.tight_layout()
    plot.save(figure, figure_path("linear_median_worst.png"))


if __name__ == "__main__":
    main()
