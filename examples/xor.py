"""XOR: the four-point truth table learned by 2-4-2 tanh (full-batch Adam), then the
noisy XOR quadrants by 2-16-2 tanh. Figures: decision regions of both."""
import fastnn
from fastnn import datasets, plot

from common import figure_path


def main():
    X, y = datasets.xor_truth_table()
    model = fastnn.mlp([2, 4, 2], activation="tanh", seed=0)
    history = model.fit(X, y, optimizer="adam", lr=0.05, epochs=500, batch_size="full", seed=0, verbose=0)
    print(f"truth table: predictions {model.predict(X).tolist()} for targets {y.tolist()}, "
          f"final loss {history.loss[-1]:.2e}")
    plot.decision_regions(model, X, y, title="XOR truth table, 2-4-2 tanh", path=figure_path("xor_table.png"))

    X, y = datasets.xor(1000, noise=0.1, seed=0)
    model = fastnn.mlp([2, 16, 2], activation="tanh", seed=0)
    model.fit(X[:800], y[:800], optimizer="adam", lr=0.01, epochs=100, batch_size=32, seed=0, verbose=0)
    accuracy = model.evaluate(X[800:], y[800:])["accuracy"]
    print(f"noisy XOR quadrants (noise 0.1), 2-16-2 tanh: test accuracy {accuracy:.4f}")
    plot.decision_regions(model, X[800:], y[800:], title=f"noisy XOR, test accuracy {accuracy:.3f}",
                          path=figure_path("xor_quadrants.png"))


if __name__ == "__main__":
    main()
