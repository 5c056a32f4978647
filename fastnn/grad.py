"""Gradients of a model's loss with respect to its flat parameters: by backpropagation,
and naively by central finite differences (2 forward passes per parameter)."""
import numpy as np

from .losses import SoftmaxCrossEntropy, get_loss
from .validation import check_sample_weight


def forward_backward(model, X, targets, loss, sample_weight=None):
    """One forward and backward pass on prepared arrays: returns (mean loss, outputs)
    and leaves d(loss)/d(params) in model.grads. The input gradient is not computed."""
    outputs = model.forward(X)
    grad = np.empty_like(outputs)
    value = loss(outputs, targets, grad, sample_weight)
    model.backward(grad, input_grad=False)
    return value, outputs


def _prepare(model, X, y, loss, sample_weight):
    loss = get_loss(loss or model.loss or SoftmaxCrossEntropy())
    X = model.check_input(X)
    targets = loss.targets(y, model.n_outputs, model.dtype)
    if len(targets) != len(X):
        raise ValueError(f"X and y must have the same number of samples; got {len(X)} and {len(targets)}")
    return X, targets, loss, check_sample_weight(sample_weight, len(X), model.dtype)


def loss_and_grad(model, X, y, loss=None, sample_weight=None):
    """(mean loss, copy of the flat gradient) by backpropagation, with Dropout off."""
    X, targets, loss, weight = _prepare(model, X, y, loss, sample_weight)
    was_training = model.training
    model.train(False)
    try:
        value, _ = forward_backward(model, X, targets, loss, weight)
    finally:
        model.train(was_training)
    return value, model.grads.copy()


def numerical_grad(model, X, y, loss=None, eps=None, sample_weight=None):
    """The flat gradient by central finite differences, (L(p + eps) - L(p - eps)) / 2 eps
    for each parameter in turn: 2 forward passes per parameter, so its cost grows with the
    parameter count times the cost of a forward pass. Use a float64 model to compare with
    backpropagation; eps defaults to 1e-6 (float64) or 1e-2 (float32)."""
    X, targets, loss, weight = _prepare(model, X, y, loss, sample_weight)
    if eps is None:
        eps = 1e-6 if model.dtype == np.float64 else 1e-2
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0; got {eps}")
    scratch = np.empty((len(X), model.n_outputs), model.dtype)
    was_training = model.training
    model.train(False)
    try:
        return central_difference(lambda: loss(model.forward(X), targets, scratch, weight), model.params, eps)
    finally:
        model.train(was_training)


def central_difference(f, x, eps=1e-6):
    """d f() / d x as a float64 array of x's shape: (f() at x + eps - f() at x - eps) / 2 eps
    for each entry of the array x in turn, which is changed in place and restored."""
    gradient = np.empty(x.shape, np.float64)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + eps
        up = f()
        x[index] = saved - eps
        down = f()
        x[index] = saved
        gradient[index] = (up - down) / (2 * eps)
    return gradient
