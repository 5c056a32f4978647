"""Figures for training runs: learning curves (per epoch or per update, of one run, or the
band of many), decision regions, confusion matrices and heatmaps, misclassified images,
autoencoder reconstructions and sweep box plots.

Every function builds a ``matplotlib.figure.Figure`` without pyplot, so nothing
depends on a display or on global pyplot state, and returns it; those that take ``ax``
draw into that matplotlib Axes instead (to put several side by side) and return its
figure. With ``path`` the figure is also written there as a PNG (atomically: a
temporary file, then a rename).
"""
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .atomic import replacing
from .sweep_results import curves, iqm


def save(figure, path, dpi=100, bbox_inches=None):
    """Write figure to path as a PNG, atomically (fastnn.atomic.replacing); returns the Path.
    bbox_inches="tight" crops the figure to what it draws."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as file:
        figure.savefig(file, format="png", dpi=dpi, bbox_inches=bbox_inches)
    return path


def _axes(ax, figsize):
    """(figure, axes): a new figure of figsize with one axes, or ax and its figure."""
    if ax is None:
        figure = Figure(figsize=figsize)
        return figure, figure.subplots()
    return ax.figure, ax


def _finish(figure, path):
    figure.tight_layout()
    if path is not None:
        save(figure, path)
    return figure


def history(history, log_loss=False, title=None, path=None):
    """Loss and metric (accuracy or R²) per epoch from a fastnn History, training and,
    when recorded, validation. log_loss puts the loss on a log scale."""
    if not len(history):
        raise ValueError("history is empty: it has no epochs to plot")
    figure = Figure(figsize=(10, 4))
    loss_axes, metric_axes = figure.subplots(1, 2)
    epochs = np.asarray(history.epoch)
    for axes, train, validation, label in ((loss_axes, history.loss, history.val_loss, "loss"),
                                           (metric_axes, history.metric, history.val_metric,
                                            history.metric_name)):
        axes.plot(epochs, train, label=f"train {label}")
        recorded = [i for i, value in enumerate(validation) if value is not None]
        if recorded:
            axes.plot(epochs[recorded], [validation[i] for i in recorded], label=f"validation {label}")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    if log_loss:
        loss_axes.set_yscale("log")
    if title:
        figure.suptitle(title)
    return _finish(figure, path)


def _curve_axes(axes, ylabel, log, title, path):
    """Label, grid and legend the axes of a curve plot (log: a log y axis); finish its figure."""
    axes.set_ylabel(ylabel)
    if log:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    return _finish(axes.figure, path)


def update_loss(history, log=False, ax=None, label=None, title=None, path=None):
    """The training loss against the number of updates, from a History that fit recorded
    with loss_every=N (the mean of every N updates); log puts the loss on a log scale."""
    if not len(history.update_loss):
        raise ValueError("history has no update losses: fit(..., loss_every=N) records them")
    _, axes = _axes(ax, (7, 4))
    every = history.update_loss_every
    axes.plot(history.update_step, history.update_loss, linewidth=0.8,
              label=label or ("loss of each update" if every == 1 else f"mean loss of {every} updates"))
    axes.set_xlabel("update")
    return _curve_axes(axes, "loss", log, title, path)


def history_band(histories, key="loss", ax=None, label=None, log=False, title=None, path=None):
    """One curve of many runs: per epoch, the interquartile mean of key over the runs
    (the mean of those between the 25th and 75th percentile) and the band between
    those percentiles.

    histories is a list of fastnn History objects or of dicts of per-epoch lists
    (History.as_dict()), all recording the same metrics over the same number of epochs
    (fastnn.sweep_results.curves; a SweepResult keeps no curves, only one number per metric and
    run). key is what to plot ('loss', 'val_loss', 'accuracy', ...); label names the
    curve in the legend (default: key); log puts the y axis on a log scale.
    """
    values = curves(histories, key)
    _, axes = _axes(ax, (6, 4))
    epochs = np.arange(1, values.shape[1] + 1)
    q1, q3 = np.percentile(values, [25, 75], axis=0)
    name = label or key
    line, = axes.plot(epochs, iqm(values, axis=0), label=f"{name}: IQM of {len(values)} runs")
    axes.fill_between(epochs, q1, q3, color=line.get_color(), alpha=0.25, label=f"{name}: 25th-75th percentile")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _curve_axes(axes, key, log, title, path)


def decision_regions(model, X, y, resolution=200, margin=0.25, title=None, ax=None, path=None):
    """The class ``model.predict`` gives over a grid covering the 2-D points X (with a
    margin), with the points on top coloured by their label y."""
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (n_samples, 2) for decision regions; got {X.shape}")
    if len(y) != len(X):
        raise ValueError(f"X and y must have the same number of samples; got {len(X)} and {len(y)}")
    low, high = X.min(axis=0), X.max(axis=0)
    pad = margin * np.maximum(high - low, 1e-9)
    xs = np.linspace(low[0] - pad[0], high[0] + pad[0], resolution)
    ys = np.linspace(low[1] - pad[1], high[1] + pad[1], resolution)
    grid_x, grid_y = np.meshgrid(xs, ys)
    grid = np.column_stack([grid_x.ravel(), grid_y.ravel()])
    regions = np.asarray(model.predict(grid)).reshape(resolution, resolution)
    classes = np.union1d(np.unique(regions), np.unique(y))
    figure, axes = _axes(ax, (5, 5))
    levels = np.concatenate([classes - 0.5, [classes[-1] + 0.5]])
    axes.contourf(grid_x, grid_y, regions, levels=levels, cmap="coolwarm", alpha=0.35)
    axes.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", vmin=classes[0], vmax=classes[-1],
                 edgecolors="k", linewidths=0.5, s=30)
    axes.set_xlabel("$x_1$")
    axes.set_ylabel("$x_2$")
    if title:
        axes.set_title(title)
    return _finish(figure, path)


def confusion_matrix(y_true, y_pred, labels=None, normalize=False, title=None, path=None):
    """Counts of (true, predicted) label pairs as an annotated image: rows true, columns
    predicted. labels names the classes 0..k-1; normalize shows each row as fractions."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of equal length; got {y_true.shape} and {y_pred.shape}")
    if y_true.size and min(y_true.min(), y_pred.min()) < 0:
        raise ValueError("labels must be non-negative integers")
    k = max(int(y_true.max(initial=0)), int(y_pred.max(initial=0))) + 1
    if labels is not None:
        if len(labels) < k:
            raise ValueError(f"labels names {len(labels)} classes but the data hold {k}")
        k = len(labels)
    matrix = np.zeros((k, k), np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    names = list(labels) if labels is not None else [str(i) for i in range(k)]
    size = max(4.0, 0.5 * k + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    texts = [[f"{value:.2f}" for value in row] for row in shown] if normalize else matrix.astype(str)
    _annotated_image(axes, shown, texts, "Blues")
    axes.set_xticks(range(k), names, rotation=45 if labels is not None else 0)
    axes.set_yticks(range(k), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title or f"accuracy {np.trace(matrix) / max(matrix.sum(), 1):.4f}")
    return _finish(figure, path)


def _annotated_image(axes, values, texts, cmap):
    """values as an image with a colour bar and texts[i][j] written on each cell, in
    black or white by the cell's brightness."""
    image = axes.imshow(values, cmap=cmap)
    axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            axes.text(j, i, texts[i][j], ha="center", va="center", fontsize=8, color="white" if dark else "black")
    return image


def heatmap(values, row_labels, column_labels, xlabel="", ylabel="", fmt=".3g", cmap="viridis", title=None,
            ax=None, path=None):
    """A 2-D table of numbers (e.g. a loss per configuration of a two-parameter grid) as an
    image, each cell written with format fmt: rows labelled by row_labels from the top,
    columns by column_labels. NaN cells (runs that failed) stay blank."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or not values.size:
        raise ValueError(f"values must be a non-empty 2-D array; got shape {values.shape}")
    if (len(row_labels), len(column_labels)) != values.shape:
        raise ValueError(f"row_labels and column_labels must name the {values.shape[0]} rows and "
                         f"{values.shape[1]} columns of values; got {len(row_labels)} and {len(column_labels)}")
    figure, axes = _axes(ax, (max(4.0, 0.9 * values.shape[1] + 2), max(3.0, 0.6 * values.shape[0] + 1.5)))
    texts = [["" if np.isnan(value) else format(value, fmt) for value in row] for row in values]
    _annotated_image(axes, values, texts, cmap)
    axes.set_xticks(range(values.shape[1]), [str(label) for label in column_labels])
    axes.set_yticks(range(values.shape[0]), [str(label) for label in row_labels])
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    return _finish(figure, path)


def _image_shape(n_features, shape):
    if shape is not None:
        if math.prod(shape) != n_features:
            raise ValueError(f"shape {tuple(shape)} does not hold {n_features} features")
        return tuple(shape)
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"{n_features} features are not a square image: give shape=(height, width)")
    return side, side


def misclassified(X, y_true, y_pred, n=25, shape=None, labels=None, title=None, path=None):
    """A grid of the first n images whose prediction is wrong, each titled 'true → predicted'
    (class names from labels when given). shape defaults to a square image."""
    X = np.asarray(X)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not len(X) == len(y_true) == len(y_pred):
        raise ValueError(f"X, y_true and y_pred must have the same length; got {len(X)}, {len(y_true)}, {len(y_pred)}")
    shape = _image_shape(X.shape[1], shape)
    wrong = np.flatnonzero(y_true != y_pred)[:n]
    name = (lambda c: str(labels[c])) if labels is not None else str
    columns = math.ceil(math.sqrt(max(len(wrong), 1)))
    rows = max(1, math.ceil(len(wrong) / columns))
    figure = Figure(figsize=(1.6 * columns, 1.8 * rows + 0.4))
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid:
        axes.axis("off")
    for axes, i in zip(grid, wrong):
        axes.imshow(X[i].reshape(shape), cmap="gray_r")
        axes.set_title(f"{name(y_true[i])} → {name(y_pred[i])}", fontsize=9)
    if not len(wrong):
        grid[0].text(0.5, 0.5, "no misclassified samples", ha="center", va="center")
    figure.suptitle(title or f"misclassified (true → predicted): {np.count_nonzero(y_true != y_pred)} "
                             f"of {len(y_true)}, first {len(wrong)} shown")
    return _finish(figure, path)


def reconstructions(originals, reconstructed, n=10, shape=None, title=None, path=None):
    """Autoencoder images in rows: the first n originals, then each reconstruction.
    reconstructed is an array, or a dict {row label: array} for several rows (e.g. noisy
    inputs and their denoised outputs)."""
    rows = {"original": np.asarray(originals)}
    if isinstance(reconstructed, dict):
        rows.update({label: np.asarray(images) for label, images in reconstructed.items()})
    else:
        rows["reconstruction"] = np.asarray(reconstructed)
    n = min([n] + [len(images) for images in rows.values()])
    if n < 1:
        raise ValueError("reconstructions needs at least one image per row")
    shape = _image_shape(rows["original"].shape[1], shape)
    figure = Figure(figsize=(1.2 * n + 1.2, 1.3 * len(rows) + 0.4))
    grid = figure.subplots(len(rows), n, squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            axes = grid[r, c]
            axes.imshow(np.clip(images[c].reshape(shape), 0, 1), cmap="gray_r", vmin=0, vmax=1)
            axes.set_xticks([])
            axes.set_yticks([])
        grid[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        figure.suptitle(title)
    return _finish(figure, path)


def boxplot(groups, ylabel="", title=None, path=None):
    """Box plots of several samples side by side: groups is a dict {label: values}
    (e.g. one configuration's metric over seeds). Each box is drawn with its points; a
    legend names the median line and the mean marker."""
    if not groups:
        raise ValueError("boxplot needs at least one group")
    labels = list(groups)
    values = [np.asarray(groups[label], np.float64) for label in labels]
    figure = Figure(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 4.5))
    axes = figure.subplots()
    boxes = axes.boxplot(values, showmeans=True)
    axes.legend([boxes["medians"][0], boxes["means"][0]], ["median", "mean"], loc="best")
    axes.set_xticks(range(1, len(labels) + 1), labels)
    jitter = np.random.default_rng(0)
    for i, sample in enumerate(values, start=1):
        axes.scatter(i + jitter.uniform(-0.08, 0.08, len(sample)), sample, s=10, alpha=0.5, color="k")
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    if len(labels) > 3 or max(len(str(label)) for label in labels) > 12:
        for tick in axes.get_xticklabels():
            tick.set_rotation(30)
            tick.set_ha("right")
    if title:
        axes.set_title(title)
    return _finish(figure, path)
