import numpy as np
import pytest

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from fastnn import datasets, mlp, plot  # noqa: E402
from fastnn.train import History  # noqa: E402


def assert_png(path, min_std=0.05):
    """path decodes as a PNG (its signature, then its pixels) that is not blank."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > min_std, "the image is (nearly) one colour"
    assert not list(path.parent.glob(f".{path.name}.*")), "a temporary file was left behind"


def small_history(validation=True):
    history = History("accuracy")
    for epoch in range(1, 21):
        val = (1.2 / epoch, 0.5 + epoch / 50) if validation else (None, None)
        history.record(epoch, 1.0 / epoch, 0.5 + epoch / 45, *val, 0.01)
    return history


@pytest.mark.parametrize("validation", [True, False])
def test_history(tmp_path, validation):
    figure = plot.history(small_history(validation), log_loss=True, title="curves", path=tmp_path / "h.png")
    assert isinstance(figure, Figure)
    loss_axes, metric_axes = figure.axes
    assert loss_axes.get_yscale() == "log"
    assert len(loss_axes.lines) == len(metric_axes.lines) == (2 if validation else 1)
    np.testing.assert_allclose(loss_axes.lines[0].get_ydata(), 1.0 / np.arange(1, 21))
    assert_png(tmp_path / "h.png")


def test_history_of_a_real_fit(tmp_path):
    X, y = datasets.circles(200, seed=0)
    model = mlp([2, 8, 2], activation="tanh", seed=0)
    history = model.fit(X, y, epochs=5, batch_size=20, validation_split=0.2, seed=0, verbose=0)
    figure = plot.history(history, path=tmp_path / "fit.png")
    assert_png(tmp_path / "fit.png")
    for axes in figure.axes:  # whole epochs only on the x axis
        ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
        assert ticks and all(t == round(t) for t in ticks)


def test_update_loss_of_a_real_fit(tmp_path):
    X, y = datasets.ten_points()
    history = mlp([2, 3, 2], activation="sigmoid", seed=0).fit(X, y, optimizer="sgd", lr=0.1, epochs=30, batch_size=1,
                                                               seed=0, verbose=0, loss_every=4)
    figure = plot.update_loss(history, log=True, title="per update", path=tmp_path / "u.png")
    line, = figure.axes[0].lines
    np.testing.assert_array_equal(line.get_xdata(), np.arange(4, 301, 4))
    np.testing.assert_array_equal(line.get_ydata(), history.update_loss)
    assert figure.axes[0].get_yscale() == "log"
    assert_png(tmp_path / "u.png")
    with pytest.raises(ValueError, match="loss_every"):
        plot.update_loss(mlp([2, 3, 2], seed=0).fit(X, y, epochs=1, verbose=0))


def test_empty_history():
    with pytest.raises(ValueError, match="history is empty"):
        plot.history(History("accuracy"))


def test_decision_regions_follow_the_model(tmp_path):
    class LeftRight:
        def predict(self, grid):
            return (grid[:, 0] > 0).astype(np.int64)

    X = np.array([[-1.0, 0.0], [1.0, 0.0], [-0.5, 1.0], [0.5, -1.0]])
    y = np.array([0, 1, 0, 1])
    figure = plot.decision_regions(LeftRight(), X, y, resolution=50, title="x > 0", path=tmp_path / "d.png")
    assert figure.axes[0].get_title() == "x > 0"
    assert_png(tmp_path / "d.png")
    pixels = imread(tmp_path / "d.png")[..., :3]
    middle = pixels.shape[0] // 2
    # The two halves of the plot are shaded in different colours.
    left, right = pixels[middle, pixels.shape[1] // 4], pixels[middle, 3 * pixels.shape[1] // 4]
    assert np.abs(left - right).max() > 0.1


def test_decision_regions_checks_its_input():
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
        plot.decision_regions(None, np.zeros((3, 3)), np.zeros(3))


def test_decision_regions_of_a_new_fastnn_model():
    X = np.random.default_rng(0).standard_normal((30, 2))
    figure = plot.decision_regions(mlp([2, 16, 2], seed=0), X, (X[:, 0] > 0).astype(int), resolution=40)
    assert figure.axes[0].collections


def test_confusion_matrix(tmp_path):
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
    figure = plot.confusion_matrix(y_true, y_pred, labels=["a", "b", "c"], path=tmp_path / "c.png")
    axes = figure.axes[0]
    np.testing.assert_array_equal(axes.images[0].get_array(), [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    assert [t.get_text() for t in axes.texts] == ["1", "1", "0", "0", "2", "0", "1", "0", "2"]
    assert axes.get_title() == f"accuracy {5 / 7:.4f}"
    assert_png(tmp_path / "c.png")
    normalized = plot.confusion_matrix(y_true, y_pred, normalize=True).axes[0].images[0].get_array()
    np.testing.assert_allclose(normalized.sum(axis=1), 1)


def test_confusion_matrix_checks_labels():
    with pytest.raises(ValueError, match="labels names 2 classes but the data hold 3"):
        plot.confusion_matrix([0, 2], [0, 1], labels=["a", "b"])


def test_misclassified(tmp_path):
    X, y = datasets.digits()
    pred = y.copy()
    pred[[3, 10, 11]] = (y[[3, 10, 11]] + 1) % 10
    figure = plot.misclassified(X, y, pred, path=tmp_path / "m.png")
    titles = [axes.get_title() for axes in figure.axes if axes.images]
    assert titles == [f"{y[i]} → {pred[i]}" for i in (3, 10, 11)]
    assert_png(tmp_path / "m.png")
    with pytest.raises(ValueError, match="not a square image"):
        plot.misclassified(X[:, :10], y, pred)


def test_reconstructions(tmp_path):
    X, _ = datasets.digits()
    rows = {"noisy": np.clip(X + 0.3, 0, 1), "denoised": X[::-1]}
    figure = plot.reconstructions(X, rows, n=6, shape=(8, 8), path=tmp_path / "r.png")
    assert len(figure.axes) == 18
    assert [figure.axes[i].get_ylabel() for i in (0, 6, 12)] == ["original", "noisy", "denoised"]
    assert_png(tmp_path / "r.png")
    assert len(plot.reconstructions(X[:3], X[:3]).axes) == 6


def test_boxplot(tmp_path):
    rng = np.random.default_rng(0)
    groups = {"lr=1": rng.normal(0.9, 0.02, 15), "lr=0.03": rng.normal(0.95, 0.01, 15)}
    figure = plot.boxplot(groups, ylabel="accuracy", path=tmp_path / "b.png")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["lr=1", "lr=0.03"]
    legend = figure.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["median", "mean"]
    mean = legend.legend_handles[1]
    assert mean.get_marker() != "None" and any(
        (line.get_marker(), line.get_markerfacecolor()) == (mean.get_marker(), mean.get_markerfacecolor())
        and len(line.get_xdata()) == 1 for line in figure.axes[0].lines)
    assert_png(tmp_path / "b.png")


def test_save_creates_the_directory(tmp_path):
    figure = plot.boxplot({"a": [1, 2, 3]})
    path = plot.save(figure, tmp_path / "new" / "box.png")
    assert_png(path)


def loss_history(losses, metric_name="accuracy"):
    history = History(metric_name)
    for epoch, loss in enumerate(losses, start=1):
        history.record(epoch, loss, 0.5, None, None, 0.01)
    return history


def test_history_band(tmp_path):
    # Four runs: per epoch the IQM drops the lowest and the highest run and averages the middle two.
    runs = [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, 1000.0]]
    histories = [loss_history(runs[0]), loss_history(runs[1]), loss_history(runs[2]).as_dict(),
                 {"epoch": [1, 2], "loss": runs[3], "accuracy": [0.5, 0.5], "val_loss": [None, None],
                  "val_accuracy": [None, None], "time": [0.0, 0.0]}]
    figure = plot.history_band(histories, log=True, label="train", path=tmp_path / "band.png")
    axes = figure.axes[0]
    np.testing.assert_allclose(axes.lines[0].get_ydata(), [2.5, 25.0])
    band = axes.collections[0].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([band.min(), band.max()], [1.75, 272.5])  # 25th of epoch 1, 75th of epoch 2
    assert axes.get_yscale() == "log"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["train: IQM of 4 runs",
                                                                    "train: 25th-75th percentile"]
    assert_png(tmp_path / "band.png")


def test_history_band_draws_into_given_axes():
    figure = Figure()
    left, right = figure.subplots(1, 2)
    histories = [loss_history([3.0, 2.0, 1.0]) for _ in range(3)]
    assert plot.history_band(histories, ax=right) is figure
    assert not left.lines and len(right.lines) == 1
    plot.history_band(histories, key="accuracy", ax=right)
    assert len(right.lines) == 2


@pytest.mark.parametrize("histories, key, error, message", [
    ([], "loss", ValueError, "histories is empty"),
    ([loss_history([1.0]), loss_history([1.0], "r2")], "loss", ValueError, "same metrics"),
    ([loss_history([1.0])], "lr", ValueError, "key 'lr' is not recorded"),
    ([loss_history([1.0]), loss_history([1.0, 0.5])], "loss", ValueError, "same number of epochs"),
    ([loss_history([1.0])], "val_loss", ValueError, r"histories\[0\]\[.val_loss.\] has epochs with no value"),
    (loss_history([1.0]), "loss", TypeError, "histories must be a list"),
    ([1.0], "loss", TypeError, r"histories\[0\] must be a History"),
])
def test_history_band_checks_its_input(histories, key, error, message):
    with pytest.raises(error, match=message):
        plot.history_band(histories, key=key)


def test_history_band_refuses_a_sweep_result():
    from fastnn.sweeps import SweepResult

    with pytest.raises(TypeError, match="got SweepResult"):
        plot.history_band(SweepResult([{}], [{"config": {}, "seed": 0, "metrics": {"loss": 1.0},
                                               "time": 0.0, "error": None}]))


def test_decision_regions_side_by_side():
    figure = Figure(figsize=(10, 5))
    left, right = figure.subplots(1, 2)
    X = np.random.default_rng(0).standard_normal((30, 2))
    y = (X[:, 0] > 0).astype(int)
    assert plot.decision_regions(mlp([2, 4, 2], seed=0), X, y, resolution=20, title="a", ax=left) is figure
    plot.decision_regions(mlp([2, 4, 2], seed=1), X, y, resolution=20, title="b", ax=right)
    assert [axes.get_title() for axes in figure.axes] == ["a", "b"]


def test_heatmap(tmp_path):
    values = np.array([[0.5, 0.25, 0.125], [1.0, np.nan, 2.0]])
    figure = plot.heatmap(values, ["mse", "bce"], [4, 8, 16], xlabel="latent", ylabel="loss", fmt=".2f",
                          title="grid", path=tmp_path / "heat.png")
    axes = figure.axes[0]
    np.testing.assert_array_equal(axes.images[0].get_array(), values)
    assert [t.get_text() for t in axes.texts] == ["0.50", "0.25", "0.12", "1.00", "", "2.00"]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["4", "8", "16"]
    assert [t.get_text() for t in axes.get_yticklabels()] == ["mse", "bce"]
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("latent", "loss", "grid")
    # Text stays readable: white on the darkest cell of viridis, black on the brightest.
    assert axes.texts[2].get_color() == "white" and axes.texts[5].get_color() == "black"
    assert_png(tmp_path / "heat.png")


def test_heatmaps_side_by_side():
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert plot.heatmap([[1, 2]], ["a"], ["x", "y"], ax=left) is figure
    plot.heatmap([[3, 4]], ["b"], ["x", "y"], ax=right)
    assert len(left.images) == len(right.images) == 1


@pytest.mark.parametrize("values, rows, columns, message", [
    ([1, 2], ["a"], ["x", "y"], "non-empty 2-D array"),
    (np.zeros((0, 2)), [], ["x", "y"], "non-empty 2-D array"),
    ([[1, 2]], ["a", "b"], ["x", "y"], "name the 1 rows and 2 columns"),
    ([[1, 2]], ["a"], ["x"], "name the 1 rows and 2 columns"),
])
def test_heatmap_checks_its_input(values, rows, columns, message):
    with pytest.raises(ValueError, match=message):
        plot.heatmap(values, rows, columns)
