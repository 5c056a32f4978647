"""fastnn: train multilayer perceptrons fast on the CPU."""
try:
    from .kernels import available_backends, get_backend, set_backend, use_backend
except ModuleNotFoundError as error:  # pragma: no cover - depends on how it is run
    if error.name != "fastnn.kernels":
        raise
    raise ImportError(
        "fastnn.kernels is missing: fastnn is being imported from its source tree, "
        "where the kernels live in kernels/, without an editable install that maps them. "
        "Run pip install -e . in the repository root (a plain pip install . installs a "
        "copy, which this tree's fastnn/ shadows when Python runs from the root)."
    ) from error
from . import blas
from .blas import blas_info, set_blas
from .config import config_info, show_config, warmup
from .conv import Conv2D, Flatten, MaxPool2D
from .grad import loss_and_grad, numerical_grad
from .history import History
from .io import ModelFileError, load
from .layers import Dense, Dropout, Identity, LeakyReLU, Module, ReLU, Sigmoid, Step, Tanh
from .losses import MSE, BCEWithLogits, SoftmaxCrossEntropy
from .model import Sequential, Stack, mlp
from .optim import SGD, Adam, CosineDecay, ExponentialDecay, StepDecay
from .sparse import SparseRows
from .train import EarlyStopping

__version__ = "0.1.0"

blas.choose()  # the BLAS provider: FASTNN_BLAS, else the faster on this machine (fastnn.blas)


_LAZY = {"MLPClassifier": "sklearn", "MLPRegressor": "sklearn", "MLPSpec": "sweeps", "sweep": "sweeps",
         "SweepResult": "sweeps"}
# Submodules not imported with fastnn (they load matplotlib, scikit-learn, joblib, ...),
# imported on first access as attributes.
_SUBMODULES = ("bench", "cli", "datasets", "plot", "sklearn", "sweeps")


def __getattr__(name):
    """The estimators, sweeps and the submodules above load on first use, not at import."""
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


__all__ = [
    "MSE", "SGD", "Adam", "BCEWithLogits", "Conv2D", "CosineDecay", "Dense", "Dropout", "EarlyStopping",
    "ExponentialDecay", "Flatten", "History", "Identity", "LeakyReLU", "MLPClassifier", "MLPRegressor", "MLPSpec", "MaxPool2D", "ModelFileError", "Module", "ReLU", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "SparseRows", "Stack", "Step", "StepDecay", "SweepResult", "Tanh", "available_backends", "blas_info", "config_info",
    "get_backend", "load", "loss_and_grad", "mlp", "numerical_grad", "set_backend", "set_blas", "show_config", "sweep",
    "use_backend", "warmup", "__version__",
]
