"""Losses on a model's raw outputs, each backed by one fused kernel.

A loss knows how to turn user targets into the array its kernel takes
(``targets``), computes (mean loss, gradient w.r.t. the outputs) in one call,
maps raw outputs to probabilities (``transform``) and to predictions
(``predict``), scores them (``score``, reported as ``metric_name``) and gives
the compiled engine its code (``engine_code``). The base class's defaults are
those of a classification loss over classes, one output each.
"""
import numpy as np

from . import kernels
from .kernels import abi
from .validation import as_array


class Loss:
    name = None
    kernel = None
    code = None  # the engine's code for this loss (kernels/abi.py); None: the engine has none
    metric_name = "accuracy"  # what score measures, as History and evaluate report it
    has_probabilities = True  # whether transform gives probabilities (predict_proba)

    def targets(self, y, n_outputs, dtype):
        """y as the array the kernel expects for a model with n_outputs outputs."""
        raise NotImplementedError

    def __call__(self, outputs, targets, grad, sample_weight=None):
        """Mean loss of outputs against prepared targets; writes d(loss)/d(outputs) into grad."""
        return getattr(kernels.get_backend(), self.kernel)(outputs, targets, grad, sample_weight)

    def transform(self, outputs):
        """Raw outputs as predictions (probabilities for classification losses)."""
        return outputs

    def predict(self, outputs):
        """Raw outputs as predictions: the index of the largest output of each row."""
        return outputs.argmax(axis=1)

    def predict_from_probabilities(self, probabilities):
        """Predictions from class probabilities (an ensemble's mean): the most probable class."""
        return probabilities.argmax(axis=1)

    def engine_code(self, targets):
        """The compiled engine's code for this loss on targets prepared by ``targets``."""
        return self.code

    def score(self, outputs, targets):
        """Accuracy for classification losses, R² for regression."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


def _float_targets(y, n_outputs, dtype, name):
    y = as_array(y, "y")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y must be numeric for {name}; got dtype {y.dtype}")
    if y.ndim == 1 and n_outputs == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ValueError(f"y must have shape (n_samples, {n_outputs}) for a model with {n_outputs} "
                         f"outputs; got {y.shape}")
    with np.errstate(over="ignore"):
        y = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(y).all():
        raise ValueError(f"y contains NaN or infinity, or values beyond the range of {np.dtype(dtype).name}")
    return y


class SoftmaxCrossEntropy(Loss):
    """Softmax over the outputs and cross-entropy against integer labels or one-hot/soft rows."""

    name = "softmax_cross_entropy"

    def targets(self, y, n_outputs, dtype):
        y = as_array(y, "y")
        if y.ndim == 2:
            return _float_targets(y, n_outputs, dtype, "one-hot targets")
        if y.ndim != 1 or y.dtype.kind not in "biuf":
            raise ValueError(f"y must be a 1-D array of integer labels or a 2-D one-hot array; "
                             f"got shape {y.shape} of dtype {y.dtype}")
        if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise ValueError("y holds non-integer values; labels must be integers")
        if y.size and (y.min() < 0 or y.max() >= n_outputs):  # before the cast, which would wrap them
            hint = ("; for 0/1 labels a one-output net needs loss=BCEWithLogits, or give it two "
                    "outputs" if n_outputs == 1 else "")
            raise ValueError(f"labels must lie in [0, {n_outputs}) for {n_outputs} outputs; "
                             f"got values from {y.min()} to {y.max()}{hint}")
        return y.astype(np.int64)

    def __call__(self, outputs, targets, grad, sample_weight=None):
        kernel = "softmax_cross_entropy" if np.ndim(targets) == 1 else "softmax_cross_entropy_soft"
        return getattr(kernels.get_backend(), kernel)(outputs, targets, grad, sample_weight)

    def engine_code(self, targets):
        return abi.CROSS_ENTROPY if np.ndim(targets) == 1 else abi.CROSS_ENTROPY_SOFT

    def transform(self, outputs):
        probabilities = np.empty_like(outputs)
        kernels.get_backend().softmax(outputs, probabilities)
        return probabilities

    def score(self, outputs, targets):
        labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
        return float((outputs.argmax(axis=1) == labels).mean())


class MSE(Loss):
    """Mean squared error over all outputs (PyTorch's MSELoss, reduction='mean')."""

    name = "mse"
    kernel = "mse"
    code = abi.MSE
    metric_name = "r2"
    has_probabilities = False

    def targets(self, y, n_outputs, dtype):
        return _float_targets(y, n_outputs, dtype, "MSE")

    def predict(self, outputs):
        """The outputs themselves."""
        return outputs

    def score(self, outputs, targets):
        """R² averaged uniformly over outputs, as scikit-learn's r2_score."""
        residual = ((targets - outputs) ** 2).sum(axis=0, dtype=np.float64)
        total = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(total > 0, 1 - residual / total, np.where(residual == 0, 1.0, 0.0))
        return float(r2.mean())


class BCEWithLogits(Loss):
    """Binary cross-entropy of sigmoid(outputs) against targets in [0, 1] (one column per label)."""

    name = "bce_with_logits"
    kernel = "bce_with_logits"
    code = abi.BCE

    def targets(self, y, n_outputs, dtype):
        y = _float_targets(y, n_outputs, dtype, "BCEWithLogits")
        if ((y < 0) | (y > 1)).any():
            raise ValueError("y must lie in [0, 1] for BCEWithLogits")
        return y

    def transform(self, outputs):
        probabilities = np.empty_like(outputs)
        kernels.get_backend().activation_forward(outputs, probabilities, "sigmoid", 0.0)
        return probabilities

    def predict(self, outputs):
        """0 or 1 per output: 1 where the probability exceeds one half."""
        return (outputs > 0).astype(np.int64)

    def predict_from_probabilities(self, probabilities):
        """0 or 1 per output from probabilities: 1 where they exceed one half."""
        return (probabilities > 0.5).astype(np.int64)

    def score(self, outputs, targets):
        return float(((outputs > 0) == (targets > 0.5)).mean())


LOSSES = {cls.name: cls for cls in (SoftmaxCrossEntropy, MSE, BCEWithLogits)}
ALIASES = {"cross_entropy": "softmax_cross_entropy", "mse": "mse", "bce": "bce_with_logits"}


def get_loss(loss):
    """A Loss instance from an instance, a class or a name."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, type) and issubclass(loss, Loss):
        return loss()
    name = ALIASES.get(loss, loss)
    if name in LOSSES:
        return LOSSES[name]()
    raise ValueError(f"loss must be a Loss or one of {sorted(set(LOSSES) | set(ALIASES))}; got {loss!r}")
