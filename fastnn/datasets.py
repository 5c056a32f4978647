"""Small datasets: seeded synthetic ones, scikit-learn's 8x8 digits, and a reader for
MNIST-format IDX files (MNIST and Fashion-MNIST) with an optional verified download.

The synthetic sets return float64 features; digits, load_mnist and
load_fashion_mnist return float32 pixels scaled to [0, 1]. Labels are int64,
regression targets float64. scikit-learn is needed by ``digits`` alone and
imported only there.
"""
import gzip
import hashlib
import math
import os
import shutil
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from .atomic import replacing
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


def spirals(n_samples=1000, noise=0.1, n_classes=2, turns=1.0, seed=None):
    """Interleaved spiral arms, one per class: arm k is r = t, angle = 2*pi*(turns*t + k/n_classes)
    for t uniform in [0, 1], plus Gaussian noise of standard deviation ``noise``.
    Returns X (n, 2), y (n,) with labels 0..n_classes-1 in equal shares (up to one)."""
    n_samples = check_positive_int("n_samples", n_samples)
    noise = _non_negative("noise", noise)
    n_classes = check_positive_int("n_classes", n_classes)
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2; got {n_classes}")
    turns = float(turns)
    if not (math.isfinite(turns) and turns > 0):
        raise ValueError(f"turns must be a finite number > 0; got {turns}")
    rng = as_generator(seed)
    y = np.arange(n_samples, dtype=np.int64) % n_classes
    rng.shuffle(y)
    t = rng.uniform(0, 1, n_samples)
    angle = 2 * np.pi * (turns * t + y / n_classes)
    X = np.column_stack([t * np.cos(angle), t * np.sin(angle)])
    X += noise * rng.standard_normal(X.shape)
    return X, y


def moons(n_samples=1000, noise=0.1, seed=None):
    """Two interleaving half circles of radius 1: the upper one centred at (0, 0) (label 0),
    the lower one centred at (1, 0.5) (label 1), at random angles, plus Gaussian noise of
    standard deviation ``noise``. Returns X (n, 2), y (n,)."""
    n_samples = check_positive_int("n_samples", n_samples)
    noise = _non_negative("noise", noise)
    rng = as_generator(seed)
    y = np.zeros(n_samples, np.int64)
    y[n_samples // 2:] = 1
    rng.shuffle(y)
    angle = rng.uniform(0, np.pi, n_samples)
    X = np.where(y[:, None] == 0,
                 np.column_stack([np.cos(angle), np.sin(angle)]),
                 np.column_stack([1 - np.cos(angle), 0.5 - np.sin(angle)]))
    X += noise * rng.standard_normal(X.shape)
    return X, y


def blobs(n_samples=1000, n_classes=2, spread=0.5, seed=None):
    """Linearly separable blobs: class k is uniform in a disc of radius ``spread`` around the
    centre (cos 2*pi*k/n_classes, sin 2*pi*k/n_classes). spread must be below half the distance
    between neighbouring centres, sin(pi/n_classes), so every point is nearer its own centre
    than any other and the nearest-centre rule, a linear classifier, separates the classes
    exactly. Returns X (n, 2), y (n,)."""
    n_samples = check_positive_int("n_samples", n_samples)
    n_classes = check_positive_int("n_classes", n_classes)
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2; got {n_classes}")
    spread = _non_negative("spread", spread)
    limit = math.sin(math.pi / n_classes)
    if spread >= limit:
        raise ValueError(f"spread must be below sin(pi/n_classes) = {limit:.4g} for {n_classes} "
                         f"separable classes; got {spread}")
    rng = as_generator(seed)
    y = np.arange(n_samples, dtype=np.int64) % n_classes
    rng.shuffle(y)
    centre_angle = 2 * np.pi * y / n_classes
    radius = spread * np.sqrt(rng.uniform(0, 1, n_samples))
    angle = rng.uniform(0, 2 * np.pi, n_samples)
    X = np.column_stack([np.cos(centre_angle) + radius * np.cos(angle),
                         np.sin(centre_angle) + radius * np.sin(angle)])
    return X, y


def ten_points():
    """The 10-point two-class set of the 2-2-3-2 example: X (10, 2) in [0, 1]^2; the first
    five points are class A (label 0), the last five class B (label 1)."""
    x1 = [0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7]
    x2 = [0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6]
    X = np.column_stack([x1, x2]).astype(np.float64)
    y = np.repeat(np.array([0, 1], np.int64), 5)
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


# Per dataset: the subdirectories looked in (besides the directory itself; the first is
# where download writes), the mirror, and the md5 of each official gzipped file.
IDX_DATASETS = {
    "MNIST": {
        "subdirectories": ("mnist",),
        "url": "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "Fashion-MNIST": {
        "subdirectories": ("fashion-mnist", "fashion_mnist", "fashion", "FashionMNIST"),
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
}


def _data_root(path, dataset):
    if path is None:
        path = os.environ.get("FASTNN_DATA")
        if not path:
            raise FileNotFoundError(f"no {dataset} directory given: pass the directory that holds the IDX "
                                    "files (path=..., or --data-dir on the command line) or set FASTNN_DATA")
    return Path(path)


def _idx_directories(path, dataset):
    root = _data_root(path, dataset)
    return [root] + [root / name for name in IDX_DATASETS[dataset]["subdirectories"]]


def _find_idx(path, kind, dataset="MNIST"):
    """(images file, labels file) from the first directory that holds both, raw or gzipped."""
    tried = []
    for directory in _idx_directories(path, dataset):
        found = []
        for name in (f"{kind}-images-idx3-ubyte", f"{kind}-labels-idx1-ubyte"):
            candidates = [directory / name, directory / f"{name}.gz"]
            tried += candidates
            found.append(next((file for file in candidates if file.is_file()), None))
        if None not in found:
            return found
    places = "\n".join(f"  {file}" for file in tried)
    raise FileNotFoundError(f"{dataset} {kind!r} files not found; looked for:\n{places}")


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


def _md5(file):
    digest = hashlib.md5(usedforsecurity=False)
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(dataset="MNIST", path=None, kinds=("train", "t10k"), url=None, opener=urllib.request.urlopen):
    """Download the official gzipped IDX files of ``dataset`` ('MNIST' or 'Fashion-MNIST') for
    each of ``kinds`` into the dataset's subdirectory of ``path`` (or $FASTNN_DATA), checking
    each file's md5 against the published one. Returns that directory.

    url replaces the mirror (any URL ``opener`` accepts, e.g. file://). Files already present
    with the right checksum are kept. Each file is written to a temporary file beside its
    destination and renamed only once its checksum matches; a mismatch deletes it and raises
    ValueError, so no partial or wrong file is left under the final name.
    """
    if dataset not in IDX_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(IDX_DATASETS)}; got {dataset!r}")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for kind in kinds:
        if kind not in ("train", "t10k"):
            raise ValueError(f"kinds must be 'train' and/or 't10k'; got {kind!r}")
    spec = IDX_DATASETS[dataset]
    directory = _data_root(path, dataset) / spec["subdirectories"][0]
    directory.mkdir(parents=True, exist_ok=True)
    base = url or spec["url"]
    base = base if base.endswith("/") else base + "/"
    for kind in kinds:
        for name in (f"{kind}-images-idx3-ubyte.gz", f"{kind}-labels-idx1-ubyte.gz"):
            target, expected = directory / name, spec["md5"][name]
            if target.is_file() and _md5(target) == expected:
                continue
            with replacing(target, suffix=".part") as out:
                with opener(base + name) as response:
                    shutil.copyfileobj(response, out)
                out.flush()
                found = _md5(out.name)
                if found != expected:
                    raise ValueError(f"{base + name} has md5 {found}; expected {expected} "
                                     f"(the download is corrupt or not the official {dataset} file)")
    return directory


def _load_idx_pair(path, kind, dataset, download_missing):
    if kind not in ("train", "t10k"):
        raise ValueError(f"kind must be 'train' or 't10k'; got {kind!r}")
    try:
        images_file, labels_file = _find_idx(path, kind, dataset)
    except FileNotFoundError:
        if not download_missing:
            raise
        directory = download(dataset, path, kinds=kind)
        images_file, labels_file = _find_idx(directory, kind, dataset)
    images = _read_idx(images_file, IMAGES_MAGIC)
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(f"{images_file} holds {images.shape[1]}x{images.shape[2]} images; "
                         f"expected {MNIST_SIDE}x{MNIST_SIDE}")
    labels = _read_idx(labels_file, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{images_file} holds {len(images)} images but {labels_file} "
                         f"holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_file} holds label {labels.max()}; {dataset} labels are 0-9")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= 255
    return X, labels.astype(np.int64)


def load_mnist(path=None, kind="train", download=False):
    """The MNIST ``kind`` set ('train' or 't10k') from IDX files, gzipped or raw:
    ``{kind}-images-idx3-ubyte[.gz]`` and ``{kind}-labels-idx1-ubyte[.gz]``.

    They are looked for in ``path`` and ``path/mnist``, or when path is
    None in $FASTNN_DATA and $FASTNN_DATA/mnist. Returns X (n, 784) float32 in [0, 1] and
    y (n,) int64 labels. Missing files raise FileNotFoundError listing every place
    looked, unless download=True fetches them (see ``download``); truncated or corrupt
    files raise ValueError naming the file.
    """
    return _load_idx_pair(path, kind, "MNIST", download)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def load_fashion_mnist(path=None, kind="train", download=False):
    """The Fashion-MNIST ``kind`` set ('train' or 't10k'), in the same IDX format and with
    the same checks as ``load_mnist``. Files are looked for in ``path`` and its
    subdirectories fashion-mnist, fashion_mnist, fashion and FashionMNIST (or in
    $FASTNN_DATA and those). Labels 0-9 name FASHION_CLASSES."""
    return _load_idx_pair(path, kind, "Fashion-MNIST", download)
