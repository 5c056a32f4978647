"""Shared by the example scripts: where figures go and the fixed MNIST split."""
import argparse
import os
from pathlib import Path

from fastnn import datasets

OUTPUT = Path(__file__).resolve().parent / "output"


def figure_path(name):
    """examples/output/<name>; prints the path so a run lists the figures it wrote."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    print(f"figure: {path.relative_to(OUTPUT.parent.parent)}")
    return path


def data_dir():
    """The --data-dir argument, else $FASTNN_DATA: the directory that holds the MNIST
    IDX files or their mnist/ subdirectory. Exported as FASTNN_DATA for worker processes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=os.environ.get("FASTNN_DATA"),
                        help="directory with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    path = parser.parse_args().data_dir
    if path:
        os.environ["FASTNN_DATA"] = path
    return path


def mnist_split(path=None):
    """The real MNIST test set (10,000 digits) as a fixed split: the first 8,000 for
    training, the last 2,000 for testing. path defaults to data_dir()."""
    X, y = datasets.load_mnist(path or data_dir(), kind="t10k")
    return (X[:8000], y[:8000]), (X[8000:], y[8000:])
