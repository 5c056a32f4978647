import gzip
import hashlib
import io
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnn import datasets

MNIST_DIR = Path(__file__).parents[1].parent / "shared/data/mnist"
T10K_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                                 reason=f"the MNIST t10k files are not in {MNIST_DIR}")


def idx_bytes(magic, dims, payload):
    """An IDX file: big-endian magic, big-endian dimensions, then the uint8 payload."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + bytes(payload)


def write_mnist(directory, kind="t10k", n_images=5, n_labels=None, compress=False, seed=0):
    """Write a small MNIST-format pair of files; returns (images uint8, labels uint8)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n_images if n_labels is None else n_labels, dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    suffix, opener = (".gz", gzip.open) if compress else ("", open)
    with opener(directory / f"{kind}-images-idx3-ubyte{suffix}", "wb") as file:
        file.write(idx_bytes(2051, images.shape, images.tobytes()))
    with opener(directory / f"{kind}-labels-idx1-ubyte{suffix}", "wb") as file:
        file.write(idx_bytes(2049, labels.shape, labels.tobytes()))
    return images, labels


# --- synthetic datasets ---------------------------------------------------------------

@pytest.mark.parametrize("make", [datasets.circles, datasets.xor])
def test_classification_shapes_dtypes_and_seeds(make):
    X, y = make(n_samples=301, seed=7)
    assert X.shape == (301, 2) and X.dtype == np.float64
    assert y.shape == (301,) and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1}
    X2, y2 = make(n_samples=301, seed=7)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, make(n_samples=301, seed=8)[0])


def test_circles_radii_and_balance():
    X, y = datasets.circles(n_samples=1000, noise=0.0, factor=0.3, seed=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(radius[y == 0], 1.0)
    np.testing.assert_allclose(radius[y == 1], 0.3)
    assert np.bincount(y).tolist() == [500, 500]


def test_circles_noise_spreads_the_radii():
    X, y = datasets.circles(n_samples=2000, noise=0.1, seed=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    assert abs(radius[y == 0].mean() - 1.0) < 0.02
    assert abs(radius[y == 1].mean() - 0.5) < 0.02
    assert 0.05 < radius[y == 0].std() < 0.15


@pytest.mark.parametrize("kwargs, match", [
    ({"factor": 1.0}, "factor"), ({"factor": 0.0}, "factor"), ({"noise": -0.1}, "noise"),
    ({"noise": float("nan")}, "noise"), ({"n_samples": 0}, "n_samples"),
])
def test_circles_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.circles(**kwargs)


def test_xor_labels_follow_the_quadrants():
    X, y = datasets.xor(n_samples=500, noise=0.0, seed=1)
    assert np.abs(X).max() <= 1
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] < 0).astype(np.int64))
    assert abs(y.mean() - 0.5) < 0.1


def test_xor_truth_table():
    X, y = datasets.xor_truth_table()
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y, [0, 1, 1, 0])
    assert y.dtype == np.int64


def test_linear_slope_and_intercept_recovered_by_least_squares():
    X, y = datasets.linear(n_samples=2000, slope=-3.0, intercept=0.5, noise=0.1, seed=2)
    assert X.shape == (2000, 1) and y.shape == (2000,) and y.dtype == np.float64
    design = np.column_stack([X[:, 0], np.ones(len(X))])
    (slope, intercept), *_ = np.linalg.lstsq(design, y, rcond=None)
    assert slope == pytest.approx(-3.0, abs=0.02)
    assert intercept == pytest.approx(0.5, abs=0.01)
    exact_X, exact_y = datasets.linear(n_samples=10, slope=2.0, intercept=1.0, noise=0.0, seed=0)
    np.testing.assert_allclose(exact_y, 2 * exact_X[:, 0] + 1)


def test_digits():
    pytest.importorskip("sklearn")
    X, y = datasets.digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert X.min() == 0 and X.max() == 1
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))


def test_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        datasets.digits()


# --- MNIST on the real files ----------------------------------------------------------

@needs_mnist
def test_load_mnist_t10k():
    X, y = datasets.load_mnist(MNIST_DIR, kind="t10k")
    assert X.shape == (10000, 784) and X.dtype == np.float32
    assert X.min() == 0 and X.max() == 1
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == T10K_CLASS_COUNTS


@needs_mnist
def test_load_mnist_raw_files_match_gz(tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(MNIST_DIR / f"{name}.gz", "rb") as source:
            (tmp_path / name).write_bytes(source.read())
    X_raw, y_raw = datasets.load_mnist(tmp_path, kind="t10k")
    X_gz, y_gz = datasets.load_mnist(MNIST_DIR, kind="t10k")
    np.testing.assert_array_equal(X_raw, X_gz)
    np.testing.assert_array_equal(y_raw, y_gz)


# --- MNIST format on small written files ----------------------------------------------

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_load_mnist_reads_written_files(tmp_path, compress):
    images, labels = write_mnist(tmp_path, kind="train", compress=compress)
    X, y = datasets.load_mnist(tmp_path, kind="train")
    np.testing.assert_allclose(X, images.reshape(5, 784) / np.float32(255))
    assert X.dtype == np.float32
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_finds_the_mnist_subdirectory_via_the_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist")
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    X, _ = datasets.load_mnist(kind="t10k")
    assert X.shape == (5, 784)


def test_load_mnist_not_found_lists_every_place(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as caught:
        datasets.load_mnist(missing, kind="t10k")
    message = str(caught.value)
    for directory in (missing, missing / "mnist"):
        for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            assert str(directory / name) in message
            assert str(directory / f"{name}.gz") in message


def test_load_mnist_needs_both_files_in_one_place(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_load_mnist_without_a_directory(monkeypatch):
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="FASTNN_DATA"):
        datasets.load_mnist(kind="t10k")


def test_load_mnist_rejects_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind must be 'train' or 't10k'"):
        datasets.load_mnist(tmp_path, kind="test")


def test_truncated_image_payload(tmp_path):
    write_mnist(tmp_path)
    file = tmp_path / "t10k-images-idx3-ubyte"
    file.write_bytes(file.read_bytes()[:-100])
    message = r"t10k-images-idx3-ubyte is truncated: the header promises 3920 bytes .*found 3820"
    with pytest.raises(ValueError, match=message):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_truncated_header(tmp_path):
    write_mnist(tmp_path)
    file = tmp_path / "t10k-labels-idx1-ubyte"
    file.write_bytes(file.read_bytes()[:6])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte is truncated: 6 bytes"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_trailing_bytes(tmp_path):
    write_mnist(tmp_path)
    file = tmp_path / "t10k-labels-idx1-ubyte"
    file.write_bytes(file.read_bytes() + b"\0\0\0")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte has 3 bytes after"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_truncated_gzip(tmp_path):
    write_mnist(tmp_path, compress=True)
    file = tmp_path / "t10k-images-idx3-ubyte.gz"
    file.write_bytes(file.read_bytes()[:-50])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is not a complete gzip file"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_corrupt_gzip(tmp_path):
    write_mnist(tmp_path, compress=True)
    file = tmp_path / "t10k-labels-idx1-ubyte.gz"
    file.write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz is not a complete gzip file"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_bad_magic(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "t10k-images-idx3-ubyte"
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    images.write_bytes(labels.read_bytes())
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte has magic number 2049; expected 2051"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_gzipped_data_under_a_raw_name(tmp_path):
    write_mnist(tmp_path, compress=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").rename(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(ValueError, match="it looks gzipped"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_wrong_image_size(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(2051, (5, 27, 28), bytes(5 * 27 * 28)))
    with pytest.raises(ValueError, match="holds 27x28 images; expected 28x28"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_image_and_label_counts_must_agree(tmp_path):
    write_mnist(tmp_path, n_images=5, n_labels=4)
    with pytest.raises(ValueError, match="holds 5 images but .*t10k-labels-idx1-ubyte holds 4 labels"):
        datasets.load_mnist(tmp_path, kind="t10k")


def test_labels_above_nine(tmp_path):
    write_mnist(tmp_path, n_images=3)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(2049, (3,), [1, 12, 3]))
    with pytest.raises(ValueError, match="holds label 12; MNIST labels are 0-9"):
        datasets.load_mnist(tmp_path, kind="t10k")


# --- spirals, moons, blobs, the 10-point set --------------------------------------------

@pytest.mark.parametrize("make", [datasets.spirals, datasets.moons, datasets.blobs])
def test_new_generators_shapes_dtypes_and_seeds(make):
    X, y = make(n_samples=301, seed=7)
    assert X.shape == (301, 2) and X.dtype == np.float64
    assert y.shape == (301,) and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1}
    assert abs(np.bincount(y)[0] - np.bincount(y)[1]) <= 1
    X2, y2 = make(n_samples=301, seed=7)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, make(n_samples=301, seed=8)[0])


def test_spirals_arms_follow_their_angle():
    X, y = datasets.spirals(n_samples=900, noise=0.0, n_classes=3, turns=1.5, seed=0)
    assert np.bincount(y).tolist() == [300, 300, 300]
    t = np.hypot(X[:, 0], X[:, 1])
    assert t.max() <= 1
    expected = 2 * np.pi * (1.5 * t + y / 3)
    # The point's angle equals the arm's angle modulo a full turn.
    difference = np.angle(np.exp(1j * (np.arctan2(X[:, 1], X[:, 0]) - expected)))
    np.testing.assert_allclose(difference[t > 1e-6], 0, atol=1e-9)


def test_moons_lie_on_their_half_circles():
    X, y = datasets.moons(n_samples=500, noise=0.0, seed=3)
    upper, lower = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0)
    assert (upper[:, 1] >= 0).all()
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0)
    assert (lower[:, 1] <= 0.5).all()


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_blobs_are_separated_by_the_linear_nearest_centre_rule(n_classes):
    spread = 0.99 * np.sin(np.pi / n_classes)
    X, y = datasets.blobs(n_samples=2000, n_classes=n_classes, spread=spread, seed=1)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    centres = np.column_stack([np.cos(angles), np.sin(angles)])
    # Nearest centre: argmax of x.c_k - |c_k|^2 / 2, a linear score per class.
    scores = X @ centres.T - 0.5 * (centres ** 2).sum(1)
    np.testing.assert_array_equal(scores.argmax(1), y)
    assert np.linalg.norm(X - centres[y], axis=1).max() <= spread


@pytest.mark.parametrize("make, kwargs, match", [
    (datasets.spirals, {"n_classes": 1}, "n_classes"), (datasets.spirals, {"turns": 0}, "turns"),
    (datasets.spirals, {"noise": -1}, "noise"), (datasets.moons, {"noise": float("inf")}, "noise"),
    (datasets.moons, {"n_samples": 0}, "n_samples"), (datasets.blobs, {"spread": 1.0}, "spread"),
    (datasets.blobs, {"n_classes": 4, "spread": 0.75}, r"sin\(pi/n_classes\) = 0.7071"),
])
def test_new_generators_reject_bad_arguments(make, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_ten_points():
    X, y = datasets.ten_points()
    np.testing.assert_array_equal(X[:, 0], [0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7])
    np.testing.assert_array_equal(X[:, 1], [0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6])
    np.testing.assert_array_equal(y, [0] * 5 + [1] * 5)
    assert X.dtype == np.float64 and y.dtype == np.int64


# --- Fashion-MNIST through the same reader ----------------------------------------------

@pytest.mark.parametrize("subdirectory", ["", "fashion-mnist", "fashion_mnist", "fashion", "FashionMNIST"])
def test_load_fashion_mnist_directories(tmp_path, subdirectory):
    images, labels = write_mnist(tmp_path / subdirectory, kind="train", compress=True, seed=4)
    X, y = datasets.load_fashion_mnist(tmp_path, kind="train")
    np.testing.assert_allclose(X, images.reshape(5, 784) / np.float32(255))
    np.testing.assert_array_equal(y, labels)


def test_load_fashion_mnist_not_found_names_the_dataset_and_places(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist")  # MNIST files are not Fashion-MNIST files
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST 't10k' files not found") as caught:
        datasets.load_fashion_mnist(kind="t10k")
    assert str(tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz") in str(caught.value)


def test_load_fashion_mnist_checks_like_mnist(tmp_path):
    write_mnist(tmp_path / "fashion", n_images=3)
    (tmp_path / "fashion" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(2049, (3,), [1, 10, 3]))
    with pytest.raises(ValueError, match="holds label 10; Fashion-MNIST labels are 0-9"):
        datasets.load_fashion_mnist(tmp_path, kind="t10k")
    assert len(datasets.FASHION_CLASSES) == 10


# --- download with checksum verification (no network: file:// URLs and a fake opener) --

def make_mirror(directory, kind="t10k", seed=0):
    """Gzipped MNIST-format files in directory; returns ({name: md5}, images, labels)."""
    images, labels = write_mnist(directory, kind=kind, compress=True, seed=seed)
    checksums = {file.name: hashlib.md5(file.read_bytes()).hexdigest() for file in directory.iterdir()}
    return checksums, images, labels


@pytest.mark.parametrize("dataset, loader", [("MNIST", datasets.load_mnist),
                                              ("Fashion-MNIST", datasets.load_fashion_mnist)])
def test_download_from_a_file_url_then_load(tmp_path, monkeypatch, dataset, loader):
    checksums, images, labels = make_mirror(tmp_path / "mirror")
    monkeypatch.setitem(datasets.IDX_DATASETS[dataset], "md5", checksums)
    monkeypatch.setitem(datasets.IDX_DATASETS[dataset], "url", (tmp_path / "mirror").as_uri())
    data = tmp_path / "data"
    with pytest.raises(FileNotFoundError):
        loader(data, kind="t10k")
    X, y = loader(data, kind="t10k", download=True)
    np.testing.assert_allclose(X, images.reshape(5, 784) / np.float32(255))
    np.testing.assert_array_equal(y, labels)
    subdirectory = datasets.IDX_DATASETS[dataset]["subdirectories"][0]
    assert sorted(f.name for f in (data / subdirectory).iterdir()) == sorted(checksums)


def test_download_keeps_verified_files_and_replaces_bad_ones(tmp_path, monkeypatch):
    checksums, *_ = make_mirror(tmp_path / "mirror")
    monkeypatch.setitem(datasets.IDX_DATASETS["MNIST"], "md5", checksums)
    served = {name: (tmp_path / "mirror" / name).read_bytes() for name in checksums}
    requests = []

    def opener(url):
        requests.append(url.rsplit("/", 1)[1])
        return io.BytesIO(served[requests[-1]])

    directory = datasets.download("MNIST", tmp_path, kinds="t10k", url="https://example.invalid/x", opener=opener)
    assert directory == tmp_path / "mnist"
    assert sorted(requests) == sorted(checksums)
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(b"damaged")
    requests.clear()
    datasets.download("MNIST", tmp_path, kinds="t10k", url="https://example.invalid/x", opener=opener)
    assert requests == ["t10k-labels-idx1-ubyte.gz"]
    assert (directory / "t10k-labels-idx1-ubyte.gz").read_bytes() == served["t10k-labels-idx1-ubyte.gz"]


def test_download_with_a_wrong_checksum_raises_and_leaves_no_file(tmp_path, monkeypatch):
    checksums, *_ = make_mirror(tmp_path / "mirror")
    checksums["t10k-images-idx3-ubyte.gz"] = "0" * 32
    monkeypatch.setitem(datasets.IDX_DATASETS["MNIST"], "md5", checksums)
    data = tmp_path / "data"
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz has md5 [0-9a-f]{32}; expected 0{32}"):
        datasets.download("MNIST", data, kinds="t10k", url=(tmp_path / "mirror").as_uri())
    assert list((data / "mnist").iterdir()) == []


def test_download_interrupted_mid_file_leaves_no_file(tmp_path):
    class Broken(io.BytesIO):
        def read(self, *args):
            raise ConnectionResetError("connection lost")

    with pytest.raises(ConnectionResetError):
        datasets.download("Fashion-MNIST", tmp_path, kinds="train", opener=lambda url: Broken())
    assert list((tmp_path / "fashion-mnist").iterdir()) == []


def test_download_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        datasets.download("CIFAR", tmp_path)
    with pytest.raises(ValueError, match="kinds must be 'train' and/or 't10k'"):
        datasets.download("MNIST", tmp_path, kinds=["test"])

