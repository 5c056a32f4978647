"""Autoencoder latent studies on the real MNIST split (8,000 train / 2,000 test digits).

- Latent dimension (4, 8, 16, 32, 64) × depth (1-5 Dense layers per side, widths shrinking
  geometrically from 784 to the latent size; ReLU, a linear code), each trained with MSE
  on a sigmoid output and with binary cross-entropy on the pixels (BCEWithLogits), Adam
  2e-3, batch 128, GRID_EPOCHS epochs: two heatmaps of the test reconstruction loss.
- The 4-d code of the depth that reconstructs best under MSE, trained LATENT_EPOCHS epochs:
  a 2-D t-SNE of the test digits' codes coloured by class; a 5-nearest-neighbour
  classifier on the codes (fit on the training codes) with its per-class TP/FP/FN/TN and
  accuracy; and the decoded class centroids (diagonal) and midpoints of every pair of
  centroids (off the diagonal) as one 10×10 grid of images.

The epochs are few (GRID_EPOCHS) to keep the 50 autoencoders of the grid near a minute
and a half on two cores: the grid compares configurations at an equal, short budget, not
converged nets."""
import time

import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from sklearn.neighbors import KNeighborsClassifier

import fastnn
from fastnn import plot

from common import figure_path, mnist_split

LATENTS = (4, 8, 16, 32, 64)
DEPTHS = (1, 2, 3, 4, 5)
LOSSES = {"mse": "MSE", "bce": "binary cross-entropy"}
GRID_EPOCHS, LATENT_EPOCHS, LR = 3, 30, 2e-3


def widths(latent, depth):
    """784, then depth - 1 hidden widths shrinking geometrically, then the latent size."""
    return [784] + [round(784 * (latent / 784) ** (i / depth)) for i in range(1, depth)] + [latent]


def autoencoder(latent, depth, loss, seed=0):
    """Encoder Dense+ReLU layers down to a linear latent Dense, then the mirror image up to
    784 outputs: sigmoid under MSE, logits under BCE (BCEWithLogits applies the sigmoid)."""
    rng = np.random.default_rng(seed)
    down = widths(latent, depth)
    sizes = down + down[-2::-1]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(fastnn.Dense(n_in, n_out, init="he_uniform", seed=rng))
        if i == len(sizes) - 2:
            if loss == "mse":
                layers.append(fastnn.Sigmoid())
        elif n_out != latent or i != depth - 1:
            layers.append(fastnn.ReLU())
    return fastnn.Sequential(*layers, loss=loss)


def split(model, depth):
    """The encoder and decoder modules of an autoencoder() of this depth."""
    cut = 2 * depth - 1  # depth Dense layers with depth - 1 ReLUs between them
    return model.layers[:cut], model.layers[cut:]


def run(modules, X):
    for module in modules:
        X = module.forward(X)
    return np.array(X)


def train(latent, depth, loss, epochs, X_train):
    model = autoencoder(latent, depth, loss)
    model.fit(X_train, X_train, optimizer="adam", lr=LR, epochs=epochs, batch_size=128, seed=0, verbose=0)
    model.train(False)
    return model


def grid_study(X_train, X_test):
    """Test reconstruction loss {loss: (depths × latents) array}, printed as it goes."""
    losses = {loss: np.full((len(DEPTHS), len(LATENTS)), np.nan) for loss in LOSSES}
    for loss in LOSSES:
        start = time.perf_counter()
        for i, depth in enumerate(DEPTHS):
            for j, latent in enumerate(LATENTS):
                losses[loss][i, j] = train(latent, depth, loss, GRID_EPOCHS, X_train).evaluate(X_test, X_test)["loss"]
            print(f"{loss}, depth {depth}: test loss " + " ".join(f"{value:.4f}" for value in losses[loss][i])
                  + f" for latent {', '.join(map(str, LATENTS))}", flush=True)
        print(f"{loss} grid: {len(DEPTHS) * len(LATENTS)} autoencoders in {time.perf_counter() - start:.1f} s")
    figure = Figure(figsize=(12, 4.5))
    for axes, loss in zip(figure.subplots(1, 2), LOSSES):
        plot.heatmap(losses[loss], DEPTHS, LATENTS, xlabel="latent dimension", ylabel="layers per side",
                     fmt=".4f", cmap="viridis_r",
                     title=f"test {LOSSES[loss]} after {GRID_EPOCHS} epochs", ax=axes)
    plot.save(figure, figure_path("autoencoder_latent_grid.png"))
    return losses


def class_table(y_true, y_pred):
    """Per class: TP, FP, FN, TN and the one-against-the-rest accuracy (TP + TN) / N, as
    text; and the mean of those accuracies (not the accuracy: every error is a FP of one
    class and a FN of another, so it is 1 - error rate / 5 for ten classes)."""
    lines, accuracies = ["class    TP    FP    FN    TN  accuracy"], []
    for c in range(10):
        tp = np.count_nonzero((y_pred == c) & (y_true == c))
        fp = np.count_nonzero((y_pred == c) & (y_true != c))
        fn = np.count_nonzero((y_pred != c) & (y_true == c))
        tn = len(y_true) - tp - fp - fn
        accuracies.append((tp + tn) / len(y_true))
        lines.append(f"{c:>5} {tp:>5} {fp:>5} {fn:>5} {tn:>5}  {accuracies[-1]:.4f}")
    return "\n".join(lines), float(np.mean(accuracies))


def tsne_figure(codes, y):
    start = time.perf_counter()
    embedded = TSNE(n_components=2, init="pca", max_iter=500, random_state=0).fit_transform(codes)
    print(f"t-SNE of {len(codes)} codes in {time.perf_counter() - start:.1f} s")
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    points = axes.scatter(embedded[:, 0], embedded[:, 1], c=y, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    figure.colorbar(points, ax=axes, ticks=range(10), label="digit")
    axes.set_title("t-SNE of the 4-d codes of the test digits")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    plot.save(figure, figure_path("autoencoder_latent_tsne.png"))


def centroid_grid(decoder, codes, y, loss):
    """Decoded centroid of each class's codes on the diagonal, decoded midpoints of two
    centroids off it, as a 10×10 grid of images."""
    centroids = np.stack([codes[y == c].mean(axis=0) for c in range(10)])
    midpoints = ((centroids[:, None, :] + centroids[None, :, :]) / 2).reshape(100, -1).astype(np.float32)
    images = run(decoder, midpoints)
    if loss == "bce":
        images = 1 / (1 + np.exp(-images))
    figure = Figure(figsize=(8, 8.4))
    grid = figure.subplots(10, 10)
    for k, axes in enumerate(grid.ravel()):
        axes.imshow(images[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        axes.set_xticks([])
        axes.set_yticks([])
    for c in range(10):
        grid[c, 0].set_ylabel(str(c), rotation=0, ha="right", va="center")
        grid[-1, c].set_xlabel(str(c))
    figure.suptitle("decoded class centroids (diagonal) and midpoints of two centroids")
    figure.tight_layout()
    plot.save(figure, figure_path("autoencoder_latent_centroids.png"))


def main():
    (X_train, y_train), (X_test, y_test) = mnist_split()
    losses = grid_study(X_train, X_test)

    loss, depth = "mse", DEPTHS[int(np.argmin(losses["mse"][:, 0]))]
    start = time.perf_counter()
    model = train(4, depth, loss, LATENT_EPOCHS, X_train)
    print(f"4-d code, depth {depth} ({'-'.join(map(str, widths(4, depth)))}), {loss}, {LATENT_EPOCHS} epochs: "
          f"test loss {model.evaluate(X_test, X_test)['loss']:.4f}, {time.perf_counter() - start:.1f} s")
    encoder, decoder = split(model, depth)
    codes_train, codes_test = run(encoder, X_train), run(encoder, X_test)
    tsne_figure(codes_test, y_test)
    predicted = KNeighborsClassifier(n_neighbors=5).fit(codes_train, y_train).predict(codes_test)
    table, mean_accuracy = class_table(y_test, predicted)
    print(f"5-NN on the 4-d codes: test accuracy {np.mean(predicted == y_test):.4f}; the mean of the per-class "
          f"one-against-the-rest accuracies {mean_accuracy:.4f}")
    print(table)
    centroid_grid(decoder, codes_train, y_train, loss)


if __name__ == "__main__":
    main()
