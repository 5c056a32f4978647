"""Small datasets: seeded synthetic ones, scikit-learn's 8x8 digits and an MNIST reader.

circles, xor and linear return float64 features; digits and load_mnist return
float32 pixels scaled to [0, 1]. Labels are int64, regression targets float64.
scikit-learn is needed by ``digits`` alone and imported only there.
"""
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .init import as_generator
from .validation import check_positive_int

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MNIST_SIDE = 28


def _non_negative(name, value):
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    return value


def circles(n_samples=1000, noise=0.1, factor=0.5, seed=None):
    """Two concentric circles: radius 1 (label 0) and radius ``factor`` (label 1), at
    random angles, plus Gaussian noise of standard deviation ``noise``. Returns X (n, 2), y (n,)."""
    n_samples = check_positive_int("n_samples", n_samples)
    noise = _non_negative("noise", noise)
    factor = float(factor)
    if not 0 < factor < 1:
        raise ValueError(f"factor (inner radius / outer radius) must be in (0, 1); got {factor}")
    rng = as_generator(seed)
    y = np.zeros(n_samples, np.int64)
    y[n_samples // 2:] = 1
    rng.shuffle(y)
    angle = rng.uniform(0, 2 * np.pi, n_samples)
    radius = np.where(y == 0, 1.0, factor)
    X = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    X += noise * rng.standard_normal(X.shape)
    return X, y


def xor(n_samples=1000, noise=0.1, seed=None):
    """Points uniform in [-1, 1]^2 labelled 1 where exactly one coordinate is positive
    (the XOR of the quadrant signs), then moved by Gaussian noise of standard deviation
    ``noise``. Returns X (n, 2), y (n,)."""
    n_samples = check_positive_int("n_samples", n_samples)
    noise = _non_negative("noise", noise)
    rng = as_generator(seed)
    X = rng.uniform(-1, 1, (n_samples, 2))
    y = ((X[:, 0] > 0) != (X[:, 1] > 0)).astype(np.int64)
    X += noise * rng.standard_normal(X.shape)
    return X, y


def xor_truth_table():
    """The four points of the XOR truth table: X (4, 2) of 0/1 and y = x0 XOR x1."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    y = np.array([0, 1, 1, 0], np.int64)
    return X, y


def linear(n_samples=100, slope=2.0, intercept=1.0, noise=0.1, seed=None):
    """1-D regression: x uniform in [-1, 1], y = slope * x + intercept + Gaussian noise of
    standard deviation ``noise``. Returns X (n, 1), y (n,)."""
    n_samples = check_positive_int("n_samples", n_samples)
    noise = _non_negative("noise", noise)
    rng = as_generator(seed)
    X = rng.uniform(-1, 1, (n_samples, 1))
    y = float(slope) * X[:, 0] + float(intercept) + noise * rng.standard_normal(n_samples)
    return X, y


def digits():
    """scikit-learn's bundled 8x8 handwritten digits: X (1797, 64) float32 in [0, 1]
    (pixel values 0-16 divided by 16), y (1797,) labels 0-9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("fastnn.datasets.digits needs scikit-learn: pip install scikit-learn") from error
    data = load_digits()
    return (data.data / 16).astype(np.float32), data.target.astype(np.int64)


def _mnist_directories(path):
    if path is None:
        path = os.environ.get("FASTNN_DATA")
        if not path:
            raise FileNotFoundError("no MNIST directory given: pass the directory that holds the IDX files "
                                    "(path=..., or --data-dir on the command line) or set FASTNN_DATA")
    return [Path(path), Path(path) / "mnist"]


def _find_mnist(path, kind):
    """(images file, labels file) from the first directory that holds both, raw or gzipped."""
    tried = []
    for directory in _mnist_directories(path):
        found = []
        for name in (f"{kind}-images-idx3-ubyte", f"{kind}-labels-idx1-ubyte"):
            candidates = [directory / name, directory / f"{name}.gz"]
            tried += candidates
            found.append(next((file for file in candidates if file.is_file()), None))
        if None not in found:
            return found
    places = "\n".join(f"  {file}" for file in tried)
    raise FileNotFoundError(f"MNIST {kind!r} files not found; looked for:\n{places}")


def _read_idx(file, magic):
    """The uint8 array stored in an IDX file (raw or .gz), after checking its magic
    number and that the payload length matches the dimensions in the header."""
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as stream:
            data = stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise ValueError(f"{file} is not a complete gzip file ({error})") from None
    if len(data) < 4:
        raise ValueError(f"{file} is truncated: {len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        hint = " (it looks gzipped: name it with a .gz suffix)" if data[:2] == b"\x1f\x8b" else ""
        raise ValueError(f"{file} has magic number {found}; expected {magic}{hint}")
    header = 4 + 4 * (magic & 0xFF)
    if len(data) < header:
        raise ValueError(f"{file} is truncated: {len(data)} bytes, shorter than its {header}-byte header")
    dims = tuple(int.from_bytes(data[i:i + 4], "big") for i in range(4, header, 4))
    expected, payload = math.prod(dims), len(data) - header
    if payload < expected:
        raise ValueError(f"{file} is truncated: the header promises {expected} bytes of data "
                         f"({' x '.join(map(str, dims))}), found {payload}")
    if payload > expected:
        raise ValueError(f"{file} has {payload - expected} bytes after the {expected} bytes "
                         f"its header promises ({' x '.join(map(str, dims))})")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def load_mnist(path=None, kind="train"):
    """The MNIST ``kind`` set ('train' or 't10k') from IDX files, gzipped or raw:
    ``{kind}-images-idx3-ubyte[.gz]`` and ``{kind}-labels-idx1-ubyte[.gz]``.

    They are looked for in ``path`` and ``path/mnist``, or when path is None in
    $FASTNN_DATA and $FASTNN_DATA/mnist. Returns X (n, 784) float32 in [0, 1] and
    y (n,) int64 labels. Missing files raise FileNotFoundError listing every place
    looked; truncated or corrupt files raise ValueError naming the file.
    """
    if kind not in ("train", "t10k"):
        raise ValueError(f"kind must be 'train' or 't10k'; got {kind!r}")
    images_file, labels_file = _find_mnist(path, kind)
    images = _read_idx(images_file, IMAGES_MAGIC)
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(f"{images_file} holds {images.shape[1]}x{images.shape[2]} images; "
                         f"expected {MNIST_SIDE}x{MNIST_SIDE}")
    labels = _read_idx(labels_file, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{images_file} holds {len(images)} images but {labels_file} "
                         f"holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_file} holds label {labels.max()}; MNIST labels are 0-9")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= 255
    return X, labels.astype(np.int64)
