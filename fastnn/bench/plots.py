"""The PNG plots of ``fastnn bench``'s results: throughput per batch size, gradient cost,
kernel times and time to accuracy.

Each builds a ``matplotlib.figure.Figure`` without pyplot (as fastnn.plot does), so
plotting never changes the user's pyplot backend or figures, and writes it atomically.
"""
import numpy as np
from matplotlib.figure import Figure

from ..plot import save

DPI = 72


def plot_throughput(results, path):
    """Samples/s against batch size (online = 1, full-batch = all samples), a line per
    backend and (dashed) peer, a panel per net, log-log."""
    nets = list(dict.fromkeys(r["net"] for r in results["modes"]))
    fig = Figure(figsize=(4.5 * len(nets), 3.6))
    axes = fig.subplots(1, len(nets), squeeze=False)
    for ax, net in zip(axes[0], nets):
        rows = [r for r in results["modes"] if r["net"] == net]
        for backend in dict.fromkeys(r["backend"] for r in rows):
            points = sorted((r["batch"], r["samples_per_second"]) for r in rows if r["backend"] == backend)
            peer = backend not in results["backends"]
            ax.plot(*zip(*points), marker="s" if peer else "o", linestyle="--" if peer else "-", label=backend)
        ax.set(xscale="log", yscale="log", title=net, xlabel="batch size (1 = online, last = full batch)",
               ylabel="training samples/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Training throughput, one epoch of fit, {results['machine']['cpu']}")
    save(fig, path, dpi=DPI, bbox_inches="tight")


def plot_gradient_cost(results, path):
    """Seconds per gradient against parameter count, log-log, with the fitted lines; beside
    it the naive/backprop ratio."""
    cost = results["gradient_cost"]
    params = np.array([case["n_params"] for case in cost["cases"]], float)
    fig = Figure(figsize=(10, 4))
    ax, ratio_ax = fig.subplots(1, 2)
    seconds = {method: np.array([case[f"{method}_seconds"] for case in cost["cases"]])
               for method in ("naive", "backprop")}
    series = [(ax, "naive", seconds["naive"], "o"), (ax, "backprop", seconds["backprop"], "s"),
              (ratio_ax, "naive / backprop", seconds["naive"] / seconds["backprop"], "^")]
    for axes, label, values, marker in series:
        slope, intercept = np.polyfit(np.log(params), np.log(values), 1)
        line, = axes.plot(params, values, marker, label=f"{label} (fitted slope {slope:.2f})")
        axes.plot(params, np.exp(intercept) * params ** slope, "-", color=line.get_color(), alpha=0.6)
    ax.set(ylabel="seconds per gradient",
           title=f"Gradient cost, batch {cost['batch']}, float64, {cost['backend']}, 1 BLAS thread")
    ratio_ax.set(ylabel="naive / backprop", title="Cost ratio")
    for axes in (ax, ratio_ax):
        axes.set(xscale="log", yscale="log", xlabel="parameters")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    fig.tight_layout()
    save(fig, path, dpi=DPI, bbox_inches="tight")


def plot_kernels(results, path):
    """Time per call of each kernel, the backends side by side, a panel per shape (float32)."""
    rows = results["kernels"]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    names = list(dict.fromkeys(r["kernel"] for r in rows))
    fig = Figure(figsize=(11, 2.8 * len(shapes)))
    axes = fig.subplots(len(shapes), 1, squeeze=False)
    width = 0.8 / len(backends)
    for ax, shape in zip(axes[:, 0], shapes):
        for i, backend in enumerate(backends):
            seconds = {r["kernel"]: r["seconds"] for r in rows if r["shape"] == shape and r["backend"] == backend}
            ax.bar(np.arange(len(names)) + (i - (len(backends) - 1) / 2) * width,
                   [seconds[name] * 1e6 for name in names], width, label=backend)
        ax.set(yscale="log", ylabel="µs per call", title=f"batch x in -> out = {shape}")
        ax.set_axisbelow(True)
        ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=len(backends))
    fig.tight_layout()
    save(fig, path, dpi=DPI, bbox_inches="tight")


def plot_time_to_accuracy(results, path):
    """Seconds of training to the target test accuracy per mode (bars), epochs on top."""
    runs = results["time_to_accuracy"]["runs"]
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    bars = ax.bar([r["mode"] for r in runs], [r["seconds"] for r in runs])
    for bar, r in zip(bars, runs):
        note = f"{r['epochs']} ep" + ("" if r["reached"] else " (not reached)")
        ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    target = runs[0]["target"]
    ax.set(ylabel="seconds of training", title=f"Time to {target:.0%} test accuracy, MNIST 8k/2k, {runs[0]['backend']}")
    ax.tick_params(axis="x", labelrotation=20)
    save(fig, path, dpi=DPI, bbox_inches="tight")
