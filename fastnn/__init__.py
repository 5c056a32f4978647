"""fastnn: train multilayer perceptrons fast on the CPU."""
try:
    from .kernels import available_backends, get_backend, set_backend, use_backend
except ModuleNotFoundError as error:  # pragma: no cover - depends on how it is run
    if error.name != "fastnn.kernels":
        raise
    raise ImportError(
        "fastnn.kernels is missing: fastnn is being imported from its source tree, "
        "where the kernels live in kernels/. Install it (pip install -e .) and run "
        "from another directory, or use pytest as configured in pyproject.toml."
    ) from error
from .config import config_info, show_config
from .engine import warmup
from .grad import loss_and_grad, numerical_grad
from .io import ModelFileError, load
from .layers import Dense, Dropout, Identity, LeakyReLU, Module, ReLU, Sigmoid, Step, Tanh
from .losses import MSE, BCEWithLogits, SoftmaxCrossEntropy
from .model import Sequential, mlp
from .optim import SGD, Adam, CosineDecay, ExponentialDecay, StepDecay
from .train import EarlyStopping, History

__version__ = "0.1.0"


_LAZY = {"MLPClassifier": "sklearn", "MLPRegressor": "sklearn", "sweep": "sweeps", "SweepResult": "sweeps"}


def __getattr__(name):
    """The estimators and sweeps load scikit-learn, joblib and scipy.stats on first use,
    not at import."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")

__all__ = [
    "MSE", "SGD", "Adam", "BCEWithLogits", "CosineDecay", "Dense", "Dropout", "EarlyStopping",
    "ExponentialDecay", "History", "Identity", "LeakyReLU", "MLPClassifier", "MLPRegressor", "ModelFileError", "Module", "ReLU", "Sequential", "Sigmoid",
    "SoftmaxCrossEntropy", "Step", "StepDecay", "SweepResult", "Tanh", "available_backends", "config_info",
    "get_backend", "load", "loss_and_grad", "mlp", "numerical_grad", "set_backend", "show_config", "sweep",
    "use_backend", "warmup", "__version__",
]
