"""XOR: the four-point truth table learned by 2-4-2 tanh (full-batch Adam), then the
noisy XOR quadrants by 2-16-2 tanh, each over 25 seeds (initial weights and batch order).
Figures per problem: the training loss over the seeds (interquartile mean and band) and
the decision regions of the median and of the worst run by final loss, side by side."""
import numpy as np
from matplotlib.figure import Figure

import fastnn
from fastnn import datasets, plot
from fastnn.sweeps import iqm, median_and_worst

from common import figure_path

SEEDS = range(25)


def fit_seeds(sizes, X, y, **fit):
    """A model and its History for every seed."""
    runs = []
    for seed in SEEDS:
        model = fastnn.mlp(sizes, activation="tanh", seed=seed)
        runs.append((model, model.fit(X, y, optimizer="adam", seed=seed, verbose=0, **fit)))
    return runs


def report(name, runs, X, y):
    """Prints the final training losses and the accuracies on X, y over the seeds, and plots the loss
    band and the median and worst runs' decision regions (on X, y)."""
    histories = [history for _, history in runs]
    final = np.array([history.loss[-1] for history in histories])
    accuracy = np.array([model.evaluate(X, y)["accuracy"] for model, _ in runs])
    median, worst = median_and_worst(histories)
    print(f"{name}, {len(runs)} seeds: final loss median {np.median(final):.2e}, IQM {iqm(final):.2e}, "
          f"worst {final.max():.2e} (seed {worst}); accuracy median {np.median(accuracy):.3f}, "
          f"min {accuracy.min():.3f}")
    plot.history_band(histories, log=True, label="training loss", title=f"{name}: loss over {len(runs)} seeds",
                      path=figure_path(f"xor_{name.split()[0]}_band.png"))
    figure = Figure(figsize=(10, 5))
    for axes, index, which in zip(figure.subplots(1, 2), (median, worst), ("median", "worst")):
        plot.decision_regions(runs[index][0], X, y, title=f"{which} run: seed {index}\nfinal loss "
                              f"{final[index]:.2e}, accuracy {accuracy[index]:.3f}", ax=axes)
    plot.save(figure, figure_path(f"xor_{name.split()[0]}_median_worst.png"))


def main():
    X, y = datasets.xor_truth_table()
    runs = fit_seeds([2, 4, 2], X, y, lr=0.05, epochs=500, batch_size="full")
    model = runs[0][0]
    print(f"truth table, seed 0: predictions {model.predict(X).tolist()} for targets {y.tolist()}, "
          f"final loss {runs[0][1].loss[-1]:.2e}")
    plot.decision_regions(model, X, y, title="XOR truth table, 2-4-2 tanh", path=figure_path("xor_table.png"))
    report("table 2-4-2", runs, X, y)

    X, y = datasets.xor(1000, noise=0.1, seed=0)
    runs = fit_seeds([2, 16, 2], X[:800], y[:800], lr=0.01, epochs=100, batch_size=32)
    model = runs[0][0]
    accuracy = model.evaluate(X[800:], y[800:])["accuracy"]
    print(f"noisy XOR quadrants (noise 0.1), 2-16-2 tanh, seed 0: test accuracy {accuracy:.4f}")
    plot.decision_regions(model, X[800:], y[800:], title=f"noisy XOR, test accuracy {accuracy:.3f}",
                          path=figure_path("xor_quadrants.png"))
    report("quadrants 2-16-2", runs, X[800:], y[800:])


if __name__ == "__main__":
    main()
