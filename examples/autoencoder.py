"""Autoencoder 784-128-64-32-64-128-784 (ReLU, sigmoid output, MSE, Adam 1e-3, batch 128)
on the real MNIST split (8,000 train / 2,000 test); a denoising variant trained on inputs
with Gaussian noise σ 0.2 and shown at σ 0.2 and 0.6; and the 32-d bottleneck features
fed to a small 32-32-10 classifier. Figures: reconstructions, denoising, learning curves."""
import time

import numpy as np

import fastnn
from fastnn import plot

from common import figure_path, mnist_split

SIZES = [784, 128, 64, 32, 64, 128, 784]
EPOCHS = 20


def train_autoencoder(inputs, targets, validation):
    model = fastnn.mlp(SIZES, activation="relu", output_activation="sigmoid", seed=0)
    history = model.fit(inputs, targets, loss="mse", optimizer="adam", lr=1e-3, epochs=EPOCHS,
                        batch_size=128, validation_data=validation, seed=0, verbose=0)
    return model, history


def encode(model, X):
    """The 32-d bottleneck: the first three Dense + ReLU pairs."""
    model.train(False)
    for layer in model.layers[:6]:
        X = layer.forward(X)
    return np.array(X)


def noisy(X, sigma, seed):
    return np.clip(X + sigma * np.random.default_rng(seed).standard_normal(X.shape, np.float32), 0, 1)


def main():
    (X_train, y_train), (X_test, y_test) = mnist_split()
    start = time.perf_counter()
    model, history = train_autoencoder(X_train, X_train, (X_test, X_test))
    print(f"autoencoder: test MSE {model.evaluate(X_test, X_test)['loss']:.4f} "
          f"(predicting the mean image: {np.mean((X_test - X_train.mean(0)) ** 2):.4f}), "
          f"{time.perf_counter() - start:.1f} s")
    plot.history(history, title="autoencoder 784-128-64-32-64-128-784", path=figure_path("autoencoder_history.png"))
    plot.reconstructions(X_test, model.predict(X_test), n=10, title="test digits and their reconstructions",
                         path=figure_path("autoencoder_reconstructions.png"))

    start = time.perf_counter()
    denoiser, _ = train_autoencoder(noisy(X_train, 0.2, seed=1), X_train, (noisy(X_test, 0.2, seed=2), X_test))
    rows = {}
    for sigma in (0.2, 0.6):
        corrupted = noisy(X_test, sigma, seed=3)
        rows[f"noisy σ={sigma}"] = corrupted
        rows[f"denoised σ={sigma}"] = denoised = denoiser.predict(corrupted)
        print(f"denoising at σ={sigma}: MSE to the clean digits {np.mean((corrupted - X_test) ** 2):.4f} (noisy) -> "
              f"{np.mean((denoised - X_test) ** 2):.4f} (denoised)")
    print(f"denoising autoencoder trained at σ=0.2 in {time.perf_counter() - start:.1f} s")
    plot.reconstructions(X_test, rows, n=10, title="denoising autoencoder trained at σ=0.2",
                         path=figure_path("autoencoder_denoising.png"))

    features_train, features_test = encode(model, X_train), encode(model, X_test)
    classifier = fastnn.mlp([32, 32, 10], activation="relu", seed=0)
    classifier.fit(features_train, y_train, optimizer="adam", lr=1e-3, epochs=50, batch_size=64, seed=0, verbose=0)
    accuracy = classifier.evaluate(features_test, y_test)["accuracy"]
    print(f"32-32-10 classifier on the 32-d bottleneck features: test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
