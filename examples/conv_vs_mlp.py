"""Convolution against an MLP on the real MNIST split (first 8,000 train, last 2,000 test):
LeNet-5 (conv 6@5x5 pad 2, relu, maxpool 2, conv 16@5x5, relu, maxpool 2, 120, 84, 10,
the per-module path) and the 784-300-50-10 ReLU MLP (the compiled engine), both by Adam
(lr 1e-3, batch 64) for the same epochs, on one BLAS thread. Then the translation test:
the accuracy of each on the test digits shifted right, and down, by 1 to 4 pixels (zero
fill). Figure: accuracy against shift, and a test digit at each shift."""
import time

import numpy as np
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

import fastnn
from fastnn import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential, plot

from common import figure_path, mnist_split

EPOCHS = 15
SHIFTS = [0, 1, 2, 3, 4]


def lenet(seed):
    rng = np.random.default_rng(seed)
    return Sequential(Conv2D(1, 6, 5, padding=2, seed=rng), ReLU(), MaxPool2D(2),
                      Conv2D(6, 16, 5, seed=rng), ReLU(), MaxPool2D(2), Flatten(),
                      Dense(400, 120, init="he_uniform", seed=rng), ReLU(),
                      Dense(120, 84, init="he_uniform", seed=rng), ReLU(), Dense(84, 10, init="he_uniform", seed=rng))


def shifted(images, pixels, axis):
    """(n, 28, 28) images moved ``pixels`` towards higher indices along axis (1: down,
    2: right), the pixels moved in zero."""
    out = np.roll(images, pixels, axis=axis)
    index = [slice(None)] * 3
    index[axis] = slice(0, pixels)
    out[tuple(index)] = 0
    return out


def translation_figure(results, digit):
    figure = Figure(figsize=(9, 7), layout="constrained")
    curves, strip = figure.subfigures(2, 1, height_ratios=[2.6, 1])
    axes = curves.subplots()
    for (name, direction), accuracies in results.items():
        axes.plot(SHIFTS, accuracies, marker="o", linestyle="-" if direction == "right" else "--",
                  color="C0" if name.startswith("LeNet") else "C1", label=f"{name}, shifted {direction}")
    axes.set_xticks(SHIFTS)
    axes.set_xlabel("shift (pixels)")
    axes.set_ylabel("test accuracy")
    axes.set_title("MNIST 8k/2k: accuracy on shifted test digits (trained on unshifted ones)")
    axes.grid(alpha=0.3)
    axes.legend()
    for shift, cell in zip(SHIFTS, strip.subplots(1, len(SHIFTS))):
        cell.imshow(shifted(digit[None], shift, 2)[0], cmap="gray_r", vmin=0, vmax=1)
        cell.set_title(f"shifted right {shift}", fontsize=9)
        cell.set_xticks([])
        cell.set_yticks([])
    return figure


def main():
    (X_train, y_train), (X_test, y_test) = mnist_split()
    images_train, images_test = X_train.reshape(-1, 1, 28, 28), X_test.reshape(-1, 28, 28)
    nets = {"LeNet-5": (lenet(0), images_train, lambda images: images[:, None]),
            "MLP 784-300-50-10": (fastnn.mlp([784, 300, 50, 10], seed=0), X_train,
                                  lambda images: images.reshape(len(images), -1))}
    fastnn.warmup()  # compile (or load from Numba's cache) outside the timed fits
    results = {}
    with threadpool_limits(1, user_api="blas"):
        for name, (model, X, as_input) in nets.items():
            start = time.perf_counter()
            model.fit(X, y_train, optimizer="adam", lr=1e-3, epochs=EPOCHS, batch_size=64, seed=0, verbose=0)
            seconds = time.perf_counter() - start
            print(f"{name}: {model.n_params:,} parameters, test accuracy "
                  f"{model.evaluate(as_input(images_test), y_test)['accuracy']:.4f}, training {seconds:.1f} s "
                  f"({seconds / EPOCHS:.2f} s per epoch)")
            for direction, axis in (("right", 2), ("down", 1)):
                accuracies = [model.evaluate(as_input(shifted(images_test, shift, axis)), y_test)["accuracy"]
                              for shift in SHIFTS]
                results[name, direction] = accuracies
                print(f"  shifted {direction} by {SHIFTS}: " + ", ".join(f"{a:.4f}" for a in accuracies))
    plot.save(translation_figure(results, images_test[3]), figure_path("conv_vs_mlp_translation.png"))


if __name__ == "__main__":
    main()
