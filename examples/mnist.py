"""MNIST on the real 10k test digits (first 8,000 train, last 2,000 test): 784-100-10 tanh
by SGD (lr 0.1, batch 100) and 784-64-32-10 ReLU by Adam (lr 1e-3, batch 128), 20 epochs
each. Figures: learning curves, confusion matrix and misclassified digits of each net.
When PyTorch is installed, the same nets are trained there on the same split, from the
same initial weights, with the same hyper-parameters and batch order."""
import time

import numpy as np

import fastnn
from fastnn import plot

from common import figure_path, mnist_split

EPOCHS = 20
NETS = {
    "784-100-10 tanh, SGD 0.1, batch 100": dict(sizes=[784, 100, 10], activation="tanh", optimizer="sgd",
                                                lr=0.1, batch_size=100, slug="tanh_sgd"),
    "784-64-32-10 relu, Adam 1e-3, batch 128": dict(sizes=[784, 64, 32, 10], activation="relu",
                                                    optimizer="adam", lr=1e-3, batch_size=128,
                                                    slug="relu_adam"),
}


def train_fastnn(spec, train, test):
    model = fastnn.mlp(spec["sizes"], activation=spec["activation"], seed=0)
    initial = [(layer.W.copy(), layer.b.copy()) for layer in model.dense_layers]
    start = time.perf_counter()
    history = model.fit(*train, optimizer=spec["optimizer"], lr=spec["lr"], epochs=EPOCHS,
                        batch_size=spec["batch_size"], validation_data=test, seed=0, verbose=0)
    seconds = time.perf_counter() - start
    return model, history, seconds, initial


def train_torch(spec, train, test, initial):
    """The same net in PyTorch: same initial weights, hyper-parameters and batches."""
    import torch

    torch.manual_seed(0)
    layers = []
    for i, (W, b) in enumerate(initial):
        dense = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            dense.weight.copy_(torch.from_numpy(W.T.copy()))
            dense.bias.copy_(torch.from_numpy(b))
        layers.append(dense)
        if i < len(initial) - 1:
            layers.append(torch.nn.Tanh() if spec["activation"] == "tanh" else torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    optimizer = (torch.optim.SGD if spec["optimizer"] == "sgd" else torch.optim.Adam)(net.parameters(), lr=spec["lr"])
    X, y = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    X_test, y_test = torch.from_numpy(test[0]), torch.from_numpy(test[1])
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(X)))
        for lo in range(0, len(X), spec["batch_size"]):
            rows = order[lo:lo + spec["batch_size"]]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(X[rows]), y[rows]).backward()
            optimizer.step()
        with torch.no_grad():  # the per-epoch validation fastnn's fit does too
            logits = net(X_test)
            torch.nn.functional.cross_entropy(logits, y_test)
            accuracy = (logits.argmax(1) == y_test).float().mean().item()
    seconds = time.perf_counter() - start
    return accuracy, seconds


def main():
    train, test = mnist_split()
    try:
        import torch  # noqa: F401
    except ImportError:
        torch = None
        print("PyTorch is not installed: the PyTorch comparison is skipped")
    fastnn.warmup()  # compile (or load from Numba's cache) outside the timed fits
    for name, spec in NETS.items():
        model, history, seconds, initial = train_fastnn(spec, train, test)
        accuracy = model.evaluate(*test)["accuracy"]
        print(f"{name}: fastnn test accuracy {accuracy:.4f}, training {seconds:.1f} s "
              f"({EPOCHS * len(train[0]) / seconds:,.0f} samples/s)")
        slug = spec["slug"]
        plot.history(history, title=f"MNIST 8k/2k: {name}", path=figure_path(f"mnist_{slug}_history.png"))
        predicted = model.predict(test[0])
        plot.confusion_matrix(test[1], predicted, title=f"{name}: test accuracy {accuracy:.4f}",
                              path=figure_path(f"mnist_{slug}_confusion.png"))
        plot.misclassified(test[0], test[1], predicted, n=25, path=figure_path(f"mnist_{slug}_misclassified.png"))
        if torch is not None:
            torch_accuracy, torch_seconds = train_torch(spec, train, test, initial)
            print(f"{name}: PyTorch test accuracy {torch_accuracy:.4f}, training {torch_seconds:.1f} s")


if __name__ == "__main__":
    main()
