"""Losses on a model's raw outputs, each backed by one fused kernel.

A loss knows how to turn user targets into the array its kernel takes
(``targets``), computes (mean loss, gradient w.r.t. the outputs) in one call,
maps raw outputs to predictions (``transform``) and scores them (``score``).
"""
import numpy as np

from . import kernels
from .validation import as_array


class Loss:
    name = None
    kernel = None

    def targets(self, y, n_outputs, dtype):
        """y as the array the kernel expects for a model with n_outputs outputs."""
        raise NotImplementedError

    def __call__(self, outputs, targets, grad, sample_weight=None):
        """Mean loss of outputs against prepared targets; writes d(loss)/d(outputs) into grad."""
        return getattr(kernels.get_backend(), self.kernel)(outputs, targets, grad, sample_weight)

    def transform(self, outputs):
        """Raw outputs as predictions (probabilities for classification losses)."""
        return outputs

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

    def targets(self, y, n_outputs, dtype):
        return _float_targets(y, n_outputs, dtype, "MSE")

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

    def targets(self, y, n_outputs, dtype):
        y = _float_targets(y, n_outputs, dtype, "BCEWithLogits")
        if ((y < 0) | (y > 1)).any():
            raise ValueError("y must lie in [0, 1] for BCEWithLogits")
        return y

    def transform(self, outputs):
        probabilities = np.empty_like(outputs)
        kernels.get_backend().activation_forward(outputs, probabilities, "sigmoid", 0.0)
        return probabilities

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
